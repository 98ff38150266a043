package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/runner"
)

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:  "generate",
		Usage: "continue a prompt with a user LLM steered by a delta",
		Description: "Each token is chosen from log_softmax(user logits) + alpha × delta logits, the delta's logits\n" +
			"gathered through a token map when the two vocabularies differ. Text streams to stdout.\n" +
			"A prompt that ends in a space (the qa template's \"Answer: \") is healed: its lone space token\n" +
			"is dropped and the first token must start with a space, as the models saw it in training.\n\n" +
			"Example:\n  cmc generate --model llama-2-7b.Q4_K_M.gguf --delta delta.gguf --prompt \"Write a haiku about rain\"",
		Flags: append(append(modelFlags(), sampleFlags()...),
			&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "the prompt (or the query, with a chat or instruction template)", Required: true},
			&cli.BoolFlag{Name: "echo", Value: true, Usage: "print the prompt before the continuation when the template is raw"},
			&cli.BoolFlag{Name: "stats", Usage: "print tokens/s and delta bookkeeping on stderr at the end"},
		),
		Action: runGenerate,
	}
}

func runGenerate(c *cli.Context) error {
	rm, err := loadRuntime(c)
	if err != nil {
		return err
	}
	defer rm.Close()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	if _, raw := rm.UserTmpl.(data.Raw); c.Bool("echo") && raw {
		// The raw template renders the prompt as it is.
		fmt.Fprint(out, c.String("prompt"))
	}
	start := time.Now()
	req := runner.Request{Messages: []llama.Message{{Role: "user", Content: c.String("prompt")}}, Alpha: rm.Alpha, Options: sampleOptions(c)}
	res, err := rm.Generate(c.Context, req, func(piece string) error {
		if _, err := out.WriteString(piece); err != nil {
			return err
		}
		return out.Flush()
	})
	fmt.Fprintln(out)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if c.Bool("stats") {
		attrs := []any{"tokens", res.CompletionTokens, "finish", res.FinishReason,
			"tokens_per_s", fmt.Sprintf("%.1f", float64(res.CompletionTokens)/elapsed.Seconds()),
			"elapsed_s", fmt.Sprintf("%.3f", elapsed.Seconds()),
			"delta_retokenised", res.DeltaRetokenised, "delta_redecoded", res.DeltaRedecoded, "map", rm.MapStats}
		if rm.Remote != nil {
			attrs = append(attrs, "not_the_engines_first_choice", res.NotFirstChoice)
		}
		slog.Info("generated", attrs...)
	}
	return nil
}
