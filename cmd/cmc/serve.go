package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/server"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve a user LLM steered by a delta over an OpenAI-compatible HTTP API",
		Description: "Endpoints: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions\n" +
			"(streamed with \"stream\": true). Besides OpenAI's fields a request may set \"alpha\" (the delta's\n" +
			"strength) and \"delta\": \"none\" to run the user model alone.\n\n" +
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
	defer rm.close()
	b := &backend{rm: rm, name: strings.TrimSuffix(filepath.Base(c.String("model")), ".gguf")}
	if rm.delta != nil {
		b.deltaName = strings.TrimSuffix(filepath.Base(c.String("delta")), ".gguf")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := server.New(b, server.Config{
		Addr: c.String("addr"), APIKey: c.String("api-key"), MaxBodyBytes: c.Int64("max-body"),
		MaxTokens: c.Int("max-tokens"), Concurrency: 1, QueueSize: c.Int("queue"), RequestTimeout: c.Duration("timeout"),
	}, log)
	log.Info("serving", "addr", c.String("addr"), "model", b.name, "delta", b.deltaName, "alpha", rm.alpha, "map", rm.mapStats)
	return srv.ListenAndServe(c.Context)
}

// backend serves requests with one user model context and one delta
// session, one request at a time.
type backend struct {
	mu        sync.Mutex
	rm        *runtimeModels
	name      string
	deltaName string
}

func (b *backend) Models() []string { return []string{b.name} }

func (b *backend) Generate(ctx context.Context, req server.Request, emit func(string) error) (server.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	alpha := b.rm.alpha
	if req.Alpha != nil {
		alpha = float32(*req.Alpha)
	}
	switch req.Delta {
	case "", b.deltaName:
	case "none":
		alpha = 0
	default:
		return server.Result{}, &server.RequestError{Param: "delta", Message: fmt.Sprintf("unknown delta %q: this server has %q (or \"none\")", req.Delta, b.deltaName)}
	}
	if b.rm.delta == nil && alpha != 0 && req.Alpha != nil {
		return server.Result{}, &server.RequestError{Param: "alpha", Message: "this server runs without a delta; alpha has no effect"}
	}

	var userIDs, deltaIDs []int32
	var err error
	if req.Messages != nil {
		history := make([]llama.Message, 0, len(req.Messages))
		for _, m := range req.Messages[:len(req.Messages)-1] {
			history = append(history, llama.Message{Role: m.Role, Content: m.Content})
		}
		userIDs, deltaIDs, _, err = b.rm.prompts(history, req.Messages[len(req.Messages)-1].Content)
	} else {
		userIDs, deltaIDs, err = b.rm.completionPrompts(req.Prompt)
	}
	if err != nil {
		return server.Result{}, &server.RequestError{Message: err.Error()}
	}
	if free := b.rm.userCtx.Size() - len(userIDs); free < 1 {
		return server.Result{}, &server.RequestError{Param: "messages", Message: fmt.Sprintf("the prompt has %d tokens; the context holds %d", len(userIDs), b.rm.userCtx.Size())}
	}
	seed := uint64(time.Now().UnixNano())
	if req.Seed != nil {
		seed = uint64(*req.Seed)
	}
	opt := control.Options{
		MaxTokens: min(req.MaxTokens, b.rm.userCtx.Size()-len(userIDs)),
		Stop:      req.Stop,
		Sample:    control.SampleOptions{Temperature: req.Temperature, TopK: req.TopK, TopP: req.TopP, Seed: seed},
	}
	res, err := b.rm.generator(alpha).Generate(ctx, userIDs, deltaIDs, opt, emit)
	out := server.Result{Text: res.Text, FinishReason: res.FinishReason, PromptTokens: len(userIDs), CompletionTokens: len(res.Tokens)}
	if errors.Is(err, llama.ErrContextFull) {
		out.FinishReason = "length"
		return out, nil
	}
	return out, err
}
