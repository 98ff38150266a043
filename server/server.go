// Package server puts a cmc Backend (a user LLM steered by a delta model)
// behind an OpenAI-compatible HTTP API, so that the OpenAI clients people
// already use (SDKs, chat UIs, curl scripts) work with cmc unchanged.
//
// Endpoints:
//
//	GET  /health                liveness; never needs the API key
//	GET  /v1/models             the backend's models, in OpenAI's list format
//	GET  /v1/models/{model}     one model
//	POST /v1/completions        text completion, optionally streamed
//	POST /v1/chat/completions   chat completion, optionally streamed
//
// Streaming ("stream": true) answers with Server-Sent Events: one
// "data: {chunk}" event per piece of text, flushed as the backend produces
// it, then "data: [DONE]". Besides OpenAI's fields the request bodies accept
// "top_k", llama.cpp's "repeat_penalty" and "repeat_last_n", and two cmc
// fields: "delta" (which delta to apply; "none" for none) and "alpha" (its
// strength, between -control.MaxAlpha and control.MaxAlpha).
//
// Log-probs ("logprobs"/"top_logprobs" on chat, "logprobs" and "echo" on
// completions, in OpenAI's shapes) are those of the steered distribution,
// log_softmax(log_softmax(user) + alpha × delta), at temperature 1 and
// before penalties and logit_bias, which shift the choice only. A stream
// carries them in its last chunk. Completions take a string, strings, token
// ids or arrays of token ids (one choice each), and max_tokens 0 with echo
// scores the prompt alone: what lm-eval-harness's local-completions model
// sends for loglikelihood tasks. Chat messages may be tool turns (role
// "tool", assistant "tool_calls"); they reach the backend as text.
//
// Requests for more than Config.MaxTokens tokens are clamped, not rejected:
// many clients send a large fixed max_tokens, and finish_reason "length"
// tells them honestly where the answer was cut.
//
// At most Config.Concurrency generations run at once and at most
// Config.QueueSize more wait for a slot; anything beyond that is answered
// 429 at once, so memory stays bounded however many clients connect.
//
// Errors come in OpenAI's shape, {"error":{"message","type","param","code"}}:
// 400 for a body that is not valid JSON or asks for something cmc cannot do
// (n > 1, image parts, naming the part), 401 for a missing or wrong key,
// 404 model_not_found, 405 for a wrong method, 413 for a body over
// Config.MaxBodyBytes, 429 queue_full with Retry-After, 503 shutting_down,
// 504 timeout past Config.RequestTimeout, 500 when the backend fails. A
// stream that fails after its first event ends with an error event instead
// of [DONE]. Fields that stock clients send but cmc does not use (user,
// tools, tool_choice, ...) are ignored.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Message is one turn of a chat.
type Message struct {
	Role    string // "system", "user" or "assistant"; tool turns arrive as text (see parseMessages)
	Content string
}

// Request is one validated generation request, as the backend sees it.
type Request struct {
	Model        string
	Prompt       string    // completions: a text prompt
	PromptTokens []int32   // completions: a prompt of token ids, used instead of Prompt when set
	Messages     []Message // chat completions (the backend applies the chat template)
	MaxTokens    int       // at most Config.MaxTokens; at least 1, or 0 with Echo (score the prompt only)
	Temperature  float64   // 0 means greedy
	TopP         float64
	TopK         int      // 0 means no top-k cut
	Seed         *int64   // nil: a fresh seed per request
	Stop         []string // end the text before the earliest of these, with finish reason "stop"
	Delta        string   // which delta to apply: "" = server default; "none" = no delta
	Alpha        *float64 // delta strength; nil = server default

	// Logprobs asks for each generated token's log-probability under the
	// steered distribution, with the TopLogprobs most likely tokens of its
	// step (0 to 20).
	Logprobs    bool
	TopLogprobs int
	// Echo (completions) returns the prompt before the completion; with
	// Logprobs its tokens are scored too.
	Echo bool

	// Penalties, applied to the steered scores before each choice.
	LogitBias        map[int32]float64 // token id -> bias, -100 to 100
	FrequencyPenalty float64           // -2 to 2
	PresencePenalty  float64           // -2 to 2
	RepeatPenalty    float64           // llama.cpp's repeat_penalty; 0 or 1: off
	RepeatLastN      int               // tokens repeat_penalty looks back over; 0: 64
}

// Result is what a finished generation produced.
type Result struct {
	Text             string // the whole completion: every piece passed to emit, in order
	FinishReason     string // "stop" or "length"
	PromptTokens     int
	CompletionTokens int
	// CachedTokens is how many prompt tokens the model's KV cache already
	// held from an earlier request (usage.prompt_tokens_details).
	CachedTokens int

	// Logprobs are the generated tokens', with Request.Logprobs; the end
	// token that stopped generation comes last, marked End.
	Logprobs []TokenLogprob
	// PromptText is, with Request.Echo, the prompt as the returned text
	// starts with it; PromptLogprobs are its tokens, with Request.Logprobs
	// too (the first, which nothing predicts, has a NaN Logprob).
	PromptText     string
	PromptLogprobs []TokenLogprob
}

// TokenLogprob is one token with its log-probability and the most likely
// tokens at its position.
type TokenLogprob struct {
	Token   string // the token's bytes (part of a UTF-8 character, maybe)
	Logprob float64
	Top     []TopLogprob
	// Offset is where the token starts in the returned text (the prompt's,
	// with Echo, then the completion's).
	Offset int
	End    bool // the end-of-generation token: it adds no text
}

// TopLogprob is one of the most likely tokens at a position.
type TopLogprob struct {
	Token   string
	Logprob float64
}

// Backend generates text. The server calls Generate from the request's
// goroutine, up to Config.Concurrency calls at once; emit must not be called
// concurrently, nor after Generate returns.
type Backend interface {
	Models() []string
	// Generate streams text pieces through emit as they are produced (emit
	// returns an error if the client went away: stop then) and returns the
	// totals. It must honour ctx cancellation: shutdown waits for it.
	Generate(ctx context.Context, req Request, emit func(piece string) error) (Result, error)
}

// RequestError is what a Backend returns for a request it cannot serve as
// asked, such as an unknown delta or a prompt longer than the context; the
// client gets 400 with this message instead of a 500.
type RequestError struct {
	Param   string // the request field at fault, e.g. "delta"; may be empty
	Message string
}

func (e *RequestError) Error() string { return e.Message }

// Config tunes the server; zero values mean the defaults below.
type Config struct {
	Addr         string // default "127.0.0.1:8080": loopback unless told otherwise
	APIKey       string // when set, every /v1 request needs "Authorization: Bearer KEY"
	MaxBodyBytes int64  // default 1 MiB; larger bodies get 413
	MaxTokens    int    // per-request cap, default 2048; larger requests are clamped
	Concurrency  int    // generations running at once, default 1 (one model, one context)
	QueueSize    int    // requests waiting for a slot, default 16; negative: none wait
	// RequestTimeout bounds queueing plus generation, default 10 minutes;
	// negative: no bound.
	RequestTimeout time.Duration
	// ShutdownGrace is how long running generations may take to finish once
	// shutdown begins, default 8s: under Docker's 10s stop timeout, so that a
	// container still exits cleanly rather than being killed.
	ShutdownGrace time.Duration
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxTokens <= 0 {
		c.MaxTokens = 2048
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	switch {
	case c.QueueSize == 0:
		c.QueueSize = 16
	case c.QueueSize < 0:
		c.QueueSize = 0
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Minute
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 8 * time.Second
	}
	return c
}

// Server is the HTTP front of one Backend. Its Handler may be used on its
// own; Serve or ListenAndServe add graceful shutdown and may be called once.
type Server struct {
	backend Backend
	cfg     Config
	log     *slog.Logger
	gate    *gate
	started time.Time // reported as every model's "created"
	handler http.Handler
	// eventWriteTimeout bounds the write of one streamed event. A client
	// that stops reading without hanging up would otherwise block its
	// generation in emit forever, holding a slot that no context can free.
	eventWriteTimeout time.Duration
}

// New returns a server for b. A nil log discards log output.
func New(b Backend, cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	s := &Server{
		backend: b,
		cfg:     cfg,
		log:     log,
		gate:    newGate(cfg.Concurrency, cfg.QueueSize),
		started: time.Now(),

		eventWriteTimeout: 30 * time.Second,
	}
	s.handler = s.routes()
	return s
}

// Handler returns the HTTP handler serving every endpoint.
func (s *Server) Handler() http.Handler { return s.handler }

// ListenAndServe listens on Config.Addr and serves until ctx is cancelled,
// then shuts down as Serve does.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled, then shuts down: it stops
// accepting, answers waiting requests 503, lets running generations finish
// within Config.ShutdownGrace, cancels those still running after that, and
// returns once the backend is idle, so the caller may free the model.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.APIKey == "" && !isLoopback(ln.Addr()) {
		s.log.Warn("serving beyond loopback without an API key: anyone who can reach this address can use the model", "addr", ln.Addr().String())
	}
	// Every request context derives from base, so that cancelling it with
	// errShuttingDown reaches generations still running after the grace period.
	base, cancelBase := context.WithCancelCause(context.Background())
	defer cancelBase(nil)
	hs := &http.Server{
		Handler:           s.handler,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		// Bodies are read whole before generating, so this bounds only slow
		// uploads; there is no WriteTimeout because streams last as long as
		// generation does (RequestTimeout bounds that).
		ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	s.log.Info("serving", "addr", ln.Addr().String(), "concurrency", s.cfg.Concurrency, "queue", s.cfg.QueueSize)

	select {
	case err := <-served:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	s.log.Info("shutting down", "grace", s.cfg.ShutdownGrace)
	s.gate.close()
	grace, cancelGrace := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancelGrace()
	if err := hs.Shutdown(grace); err != nil {
		s.log.Warn("grace period over: cancelling running generations", "err", err)
		cancelBase(errShuttingDown)
		// Closing the connections before waiting also frees a generation
		// blocked writing to a client that stopped reading.
		closeErr := hs.Close()
		s.gate.drain()
		if closeErr != nil {
			return fmt.Errorf("close connections: %w", closeErr)
		}
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	}
	s.log.Info("shut down")
	return nil
}

// isLoopback reports whether addr can only be reached from this machine.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
