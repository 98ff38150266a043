package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/metrics"
	"github.com/cmc-dev/cmc/runner"
)

// remoteTopKUsage is said in --help and the README: it is the one thing a
// remote user model cannot do as a local one does.
const remoteTopKUsage = "with --model http(s)://HOST:PORT/v1: candidates asked of the served model per token; " +
	"the delta re-ranks only these, so only they can be chosen (at alpha 0 with --temp 0 the served model's own greedy text)"

// Flags for a user model served by another engine (--model http(s)://...).
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "remote-key", EnvVars: []string{"CMC_REMOTE_KEY"}, Usage: "with a served --model: its API key, sent as \"Authorization: Bearer KEY\""},
		&cli.StringFlag{Name: "remote-model", Usage: "with a served --model: the model name the engine serves (empty: the only one its /v1/models lists)"},
		&cli.IntFlag{Name: "remote-top-k", Value: 20, Usage: remoteTopKUsage},
	}
}

// runRemoteGenerate is cmc generate with a served user model.
func runRemoteGenerate(c *cli.Context, rm *runner.Runner) error {
	text, deltaIDs, err := rm.RemotePrompts([]llama.Message{{Role: "user", Content: c.String("prompt")}})
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	if _, raw := rm.UserTmpl.(data.Raw); c.Bool("echo") && raw {
		fmt.Fprint(out, text)
	}
	start := time.Now()
	res, err := rm.RemoteGenerate(c.Context, text, deltaIDs, rm.Alpha, sampleOptions(c), func(piece string) error {
		if _, err := out.WriteString(piece); err != nil {
			return err
		}
		return out.Flush()
	})
	fmt.Fprintln(out)
	if err != nil {
		return err
	}
	if c.Bool("stats") {
		elapsed := time.Since(start)
		changed := 0
		for _, r := range res.Ranks {
			if r > 0 {
				changed++
			}
		}
		slog.Info("generated", "tokens", len(res.Pieces), "finish", res.FinishReason,
			"tokens_per_s", fmt.Sprintf("%.1f", float64(len(res.Pieces))/elapsed.Seconds()),
			"not_the_engines_first_choice", changed, "delta_retokenised", res.DeltaRetokenised, "map", rm.MapStats)
	}
	return nil
}

// remoteChatTurn is one turn of cmc chat with a served user model.
func remoteChatTurn(ctx context.Context, rm *runner.Runner, history []llama.Message, line string, alpha float32, opt control.Options, out *bufio.Writer) (string, error) {
	text, deltaIDs, err := rm.RemotePrompts(append(history[:len(history):len(history)], llama.Message{Role: "user", Content: line}))
	if err != nil {
		return "", err
	}
	res, err := rm.RemoteGenerate(ctx, text, deltaIDs, alpha, opt, func(piece string) error {
		if _, err := io.WriteString(out, piece); err != nil {
			return err
		}
		return out.Flush()
	})
	fmt.Fprintln(out)
	return res.Text, err
}

// remoteScore is evaluator.score with a served user model: the engine
// echoes the prompt and the response joined (TOFU's tokenisation), and
// control.RemoteScore steers its top candidates at each response token.
// The end of the response is not scored: the engine echoes no end token.
func (e *evaluator) remoteScore(query, response string) (alone, controlled []float64, err error) {
	text, deltaIDs, err := e.rm.RemotePrompts([]llama.Message{{Role: "user", Content: query}})
	if err != nil {
		return nil, nil, err
	}
	return e.rm.RemoteScoreAfter(e.ctx, text, response, deltaIDs)
}

// remoteTOFUItem is evaluator.tofuItem with a served user model: greedy
// answers over the engine's top-k candidates, log-probs from its echo.
func (e *evaluator) remoteTOFUItem(set metrics.TOFUSet, ex data.Example) (tofuItem, error) {
	it := tofuItem{Source: ex.Source, Question: ex.Query(), Answer: ex.Output}
	text, deltaIDs, err := e.rm.RemotePrompts([]llama.Message{{Role: "user", Content: ex.Query()}})
	if err != nil {
		return it, err
	}
	answers := []string{ex.Output}
	if ex.Paraphrased != "" {
		answers = append(answers, ex.Paraphrased)
	}
	answers = append(answers, ex.Perturbed...)
	opt := control.Options{MaxTokens: e.maxTokens, Stop: e.stop}
	genA, err := e.rm.RemoteGenerate(e.ctx, text, deltaIDs, 0, opt, nil)
	if err != nil {
		return it, err
	}
	genC := genA
	if e.withDelta {
		if genC, err = e.rm.RemoteGenerate(e.ctx, text, deltaIDs, e.rm.Alpha, opt, nil); err != nil {
			return it, err
		}
	}
	meanA, meanC := make([]float64, len(answers)), make([]float64, len(answers))
	for i, a := range answers {
		alone, controlled, err := e.rm.RemoteScoreAfter(e.ctx, text, a, deltaIDs)
		if err != nil {
			return it, err
		}
		meanA[i], meanC[i] = metrics.MeanLogProb(alone), metrics.MeanLogProb(controlled)
	}
	it.User = newTOFUScores(set, ex, genA.Text, meanA)
	it.Delta = newTOFUScores(set, ex, genC.Text, meanC)
	return it, nil
}
