package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
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
	defer rm.close()
	b := &backend{rm: rm, name: modelName(c, "model")}
	if rm.remote != nil {
		b.name = rm.remote.client.Model
	}
	if rm.delta != nil {
		b.deltaName = modelName(c, "delta")
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
		// The server checked the range already; a backend used on its own
		// must not trust it.
		if err := control.CheckAlpha(*req.Alpha); err != nil {
			return server.Result{}, &server.RequestError{Param: "alpha", Message: err.Error()}
		}
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
	if b.rm.remote != nil {
		if param := remoteUnsupported(req); param != "" {
			return server.Result{}, &server.RequestError{Param: param, Message: fmt.Sprintf("%s is not supported when the user model is served by another engine (--model URL)", param)}
		}
		return b.rm.serveRemote(ctx, req, alpha, emit)
	}

	p, err := b.prompt(req)
	if err != nil {
		return server.Result{}, err
	}
	if len(p.user) >= b.rm.userCtx.Size() {
		return server.Result{}, &server.RequestError{Param: p.param, Message: fmt.Sprintf("the prompt has %d tokens; the context holds %d", len(p.user), b.rm.userCtx.Size())}
	}
	opt, err := b.options(req, len(p.user))
	if err != nil {
		return server.Result{}, err
	}
	if opt.ScorePrompt && b.rm.delta != nil {
		// Every prompt token is scored, so the delta reads the prompt as
		// plain text, token by token as it reads generated text, after the
		// first token's own text (its BOS).
		first := b.rm.user.Vocab().Piece(p.user[0], false)
		if p.delta, err = b.rm.deltaVocab.Vocab().Tokenize(first, true, false); err != nil || len(p.delta) == 0 {
			return server.Result{}, &server.RequestError{Param: "echo", Message: fmt.Sprintf("the delta's tokenizer gives no prompt for the text %q of the first prompt token (%v)", first, err)}
		}
	}
	res, err := b.rm.generate(ctx, p.user, p.delta, alpha, opt, emit)
	out := server.Result{Text: res.Text, FinishReason: res.FinishReason, PromptTokens: len(p.user), CompletionTokens: len(res.Tokens), CachedTokens: res.CachedTokens}
	if err != nil {
		return out, err
	}
	if req.Echo {
		out.PromptText = p.text
	}
	b.logprobs(&out, req, p, res)
	return out, nil
}

// servedPrompt is one request's prompt, rendered and tokenised for both
// models.
type servedPrompt struct {
	user, delta []int32
	text        string // the prompt's text: what an echo returns
	param       string // the request field it came from, for errors
}

func (b *backend) prompt(req server.Request) (servedPrompt, error) {
	p := servedPrompt{param: "prompt"}
	var err error
	switch {
	case req.Messages != nil:
		// Every message keeps its role: a last assistant message is a
		// prefill the model continues, a trailing system message stays one.
		msgs := make([]llama.Message, len(req.Messages))
		for i, m := range req.Messages {
			msgs[i] = llama.Message{Role: m.Role, Content: m.Content}
		}
		p.param = "messages"
		p.user, p.delta, p.text, err = b.rm.chatPrompts(msgs)
	case req.PromptTokens != nil:
		v := b.rm.user.Vocab()
		for i, id := range req.PromptTokens {
			if id < 0 || int(id) >= v.Size() {
				return p, &server.RequestError{Param: "prompt", Message: fmt.Sprintf("prompt token %d at index %d is outside the vocabulary of %d tokens", id, i, v.Size())}
			}
		}
		p.user = req.PromptTokens
		if p.text, err = v.Detokenize(p.user, false, false); err == nil {
			p.delta, err = b.rm.deltaPrompt(p.text)
		}
	default:
		p.text = req.Prompt
		p.user, p.delta, err = b.rm.completionPrompts(req.Prompt)
	}
	if err != nil {
		return p, &server.RequestError{Param: p.param, Message: err.Error()}
	}
	return p, nil
}

// options turns a request's sampling, penalty and log-prob fields into the
// generator's, for a prompt of n tokens.
func (b *backend) options(req server.Request, n int) (control.Options, error) {
	seed := uint64(time.Now().UnixNano())
	if req.Seed != nil {
		seed = uint64(*req.Seed)
	}
	opt := control.Options{
		MaxTokens: min(req.MaxTokens, b.rm.userCtx.Size()-n),
		Stop:      req.Stop,
		Sample:    control.SampleOptions{Temperature: req.Temperature, TopK: req.TopK, TopP: req.TopP, Seed: seed},
		Penalties: control.Penalties{
			Frequency:   float32(req.FrequencyPenalty),
			Presence:    float32(req.PresencePenalty),
			Repeat:      float32(req.RepeatPenalty),
			RepeatLastN: req.RepeatLastN,
		},
		Logprobs:    req.Logprobs,
		TopLogprobs: req.TopLogprobs,
		ScorePrompt: req.Echo && req.Logprobs,
	}
	if req.MaxTokens == 0 {
		opt.MaxTokens = -1 // echo only: score the prompt, generate nothing
	}
	if len(req.LogitBias) > 0 {
		size := b.rm.user.Vocab().Size()
		opt.Penalties.LogitBias = make(map[int32]float32, len(req.LogitBias))
		for id, bias := range req.LogitBias {
			if int(id) >= size {
				return opt, &server.RequestError{Param: "logit_bias", Message: fmt.Sprintf("logit_bias names token %d; the vocabulary has %d tokens", id, size)}
			}
			opt.Penalties.LogitBias[id] = float32(bias)
		}
	}
	return opt, nil
}

// logprobs fills out's log-probs from the generator's, with each token's
// text and where it starts in the returned text.
func (b *backend) logprobs(out *server.Result, req server.Request, p servedPrompt, res control.Result) {
	if !req.Logprobs {
		return
	}
	v := b.rm.user.Vocab()
	token := func(id int32) string { return v.Piece(id, true) }
	tops := func(l *control.Logprobs, i int) []server.TopLogprob {
		ids, lps := l.Top(i)
		top := make([]server.TopLogprob, len(ids))
		for j, id := range ids {
			top[j] = server.TopLogprob{Token: token(id), Logprob: float64(lps[j])}
		}
		return top
	}
	offset := 0
	if req.Echo {
		// Offsets count the tokens' text; a SentencePiece tokenizer spells
		// a space before the first word that the prompt does not have.
		var spelled []byte
		for _, id := range p.user {
			spelled = v.AppendPiece(spelled, id, false)
		}
		shift := 0
		if len(spelled) > 0 && spelled[0] == ' ' && !strings.HasPrefix(p.text, " ") {
			shift = 1
		}
		at := 0
		for i, id := range p.user {
			t := server.TokenLogprob{Token: token(id), Logprob: math.NaN(), Offset: min(max(at-shift, 0), len(p.text))}
			if i > 0 && i-1 < res.PromptLogprobs.Len() {
				t.Logprob, t.Top = float64(res.PromptLogprobs.Logprob[i-1]), tops(&res.PromptLogprobs, i-1)
			}
			out.PromptLogprobs = append(out.PromptLogprobs, t)
			at += len(v.AppendPiece(nil, id, false))
		}
		offset = len(p.text)
	}
	for i, id := range res.Logprobs.IDs {
		end := i >= len(res.Tokens) // the end token, which added no text
		out.Logprobs = append(out.Logprobs, server.TokenLogprob{Token: token(id), Logprob: float64(res.Logprobs.Logprob[i]),
			Top: tops(&res.Logprobs, i), Offset: min(offset, len(out.PromptText)+len(out.Text)), End: end})
		if !end {
			offset += len(v.AppendPiece(nil, id, false))
		}
	}
}

// remoteUnsupported names a field of req that the top-k loop over a served
// user model cannot honour, or returns "".
func remoteUnsupported(req server.Request) string {
	switch {
	case req.Logprobs:
		return "logprobs"
	case req.Echo:
		return "echo"
	case req.PromptTokens != nil:
		return "prompt"
	case len(req.LogitBias) > 0:
		return "logit_bias"
	case req.FrequencyPenalty != 0:
		return "frequency_penalty"
	case req.PresencePenalty != 0:
		return "presence_penalty"
	case req.RepeatPenalty != 0 && req.RepeatPenalty != 1:
		return "repeat_penalty"
	}
	return ""
}
