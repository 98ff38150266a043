package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/runner"
	"github.com/cmc-dev/cmc/server"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve a user LLM steered by a delta over an OpenAI-compatible HTTP API",
		Description: "Endpoints: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions\n" +
			"(streamed with \"stream\": true). Besides OpenAI's fields a request may set \"alpha\" (the delta's\n" +
			"strength, -10 to 10) and \"delta\": \"none\" to run the user model alone.\n" +
			"Log-probs (chat logprobs/top_logprobs; completions logprobs and echo, as lm-eval-harness asks) are\n" +
			"those of the steered distribution, log_softmax(log_softmax(user) + alpha × delta), before penalties\n" +
			"(logit_bias, frequency_penalty, presence_penalty, repeat_penalty).\n\n" +
			"Example:\n  cmc serve --model mistral-7b.gguf --delta delta.gguf --addr 127.0.0.1:8080\n" +
			"  curl http://127.0.0.1:8080/v1/chat/completions -d '{\"model\":\"mistral-7b\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'",
		Flags: append(modelFlags(),
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "address to listen on (loopback by default)"},
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"CMC_API_KEY"}, Usage: "require \"Authorization: Bearer KEY\" on /v1 requests"},
			&cli.IntFlag{Name: "max-tokens", Value: 2048, Usage: "most tokens one request may generate (larger requests are clamped)"},
			&cli.IntFlag{Name: "queue", Value: 16, Usage: "requests that may wait for the model; more are answered 429"},
			&cli.Int64Flag{Name: "max-body", Value: 1 << 20, Usage: "largest request body in bytes (larger: 413)"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "longest time a request may wait plus generate"},
		),
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	rm, err := loadRuntime(c)
	if err != nil {
		return err
	}
	defer rm.Close()
	name, deltaName := modelName(c, "model"), ""
	if rm.Remote != nil {
		name = rm.Remote.Client.Model
	}
	if rm.Delta != nil {
		deltaName = modelName(c, "delta")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := server.New(runner.NewBackend(rm, name, deltaName), server.Config{
		Addr: c.String("addr"), APIKey: c.String("api-key"), MaxBodyBytes: c.Int64("max-body"),
		MaxTokens: c.Int("max-tokens"), Concurrency: 1, QueueSize: c.Int("queue"), RequestTimeout: c.Duration("timeout"),
	}, log)
	log.Info("serving", "addr", c.String("addr"), "model", name, "delta", deltaName, "alpha", rm.Alpha, "map", rm.MapStats)
	return srv.ListenAndServe(c.Context)
}
