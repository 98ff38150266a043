// Package runner is cmc's application: the models a command runs (a user
// LLM and a delta), the token map between their vocabularies, the prompts
// of both, and the KV state they keep between turns and requests. cmc
// generate, chat, serve and eval call it; cmd/cmc only parses flags. The
// server's Backend (backend.go) answers HTTP requests with it.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/remote"
)

// Runner is a user LLM (run by llama.cpp, or served by another engine)
// and, optionally, a delta with the token map between their vocabularies,
// the prompt templates of both, and the KV caches they keep between
// requests. generate, chat, serve and eval run everything through it.
// A Runner serves one request at a time.
type Runner struct {
	User    *llama.Model
	UserCtx *llama.Context
	// userLM decodes into UserCtx and records what it holds, so that each
	// request decodes only what its prompt does not share with the cache.
	// Every decode of the user model goes through it.
	userLM *control.Tracked
	// leadingSpace marks the user tokens that start with a space, which
	// heal a prompt ending in one (control.LeadingSpace).
	leadingSpace []bool

	Delta      *delta.Model // nil: the user model alone
	DeltaVocab *llama.Model // the delta's tokenizer, loaded vocab-only
	deltaLM    *control.DeltaLM
	tokenMap   *control.TokenMap // nil when the vocabularies are the same
	MapStats   string            // how the vocabularies were mapped, for logs

	// The prompt templates, resolved once at load: the user model's own
	// chat template (userChat) or a data template, and the delta's.
	userChat  *llama.Chat // nil: a data template
	UserTmpl  data.Template
	DeltaTmpl data.Template
	system    string  // the system message chat templates get
	Alpha     float32 // the delta's strength when a request names none
	pool      *kernels.Pool

	// Remote is set instead of User and UserCtx when the user model is
	// served by another engine (remote.go).
	Remote *Remote
}

// Config says what to load: the flags of the commands that run a model.
type Config struct {
	Model string // a GGUF file, or http(s)://HOST:PORT/v1 for a served model
	Delta string // a delta GGUF; "" or "none": the user model alone
	Alpha float32

	ContextSize, Threads, GPULayers int

	MapStrategy pmmined.Strategy
	MapCache    string // directory of cached token maps; "" for none

	// Template is the user model's prompt template (auto, chat, raw, ...),
	// DeltaTemplate the delta's; System the system message of chat templates.
	Template, DeltaTemplate, System string

	Remote RemoteConfig
}

// RemoteConfig says how to reach a served user model.
type RemoteConfig struct {
	Key   string // API key, sent as a bearer token
	Model string // the model name the engine serves ("": its only one)
	TopK  int    // candidates asked for per token
}

// Load loads the models cfg names.
func Load(ctx context.Context, cfg Config) (*Runner, error) {
	if remote.IsURL(cfg.Model) {
		return loadRemote(ctx, cfg)
	}
	r := &Runner{system: cfg.System, Alpha: cfg.Alpha}
	var err error
	if r.User, err = llama.LoadModel(cfg.Model, llama.ModelParams{GPULayers: cfg.GPULayers}); err != nil {
		return nil, err
	}
	if err := r.ResolveTemplates(cfg.Template, cfg.DeltaTemplate); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.OpenUserContext(llama.ContextParams{Size: cfg.ContextSize, Threads: cfg.Threads}); err != nil {
		r.Close()
		return nil, err
	}
	if cfg.Delta == "" || cfg.Delta == "none" {
		return r, nil
	}
	if err := r.LoadDelta(cfg.Delta, cfg.Model, cfg.MapStrategy, cfg.MapCache); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// LoadDelta loads the delta and maps the user's vocabulary onto its own
// (the identity when they are the same), through the map cache.
func (r *Runner) LoadDelta(deltaPath, userPath string, strategy pmmined.Strategy, cacheDir string) error {
	if err := r.loadDeltaModel(deltaPath); err != nil {
		return err
	}
	// Both vocabularies were read as the models loaded: no file is opened
	// twice.
	uv, err := r.User.FileVocab()
	if err != nil {
		return fmt.Errorf("user vocabulary: %w", err)
	}
	dv, err := r.DeltaVocab.FileVocab()
	if err != nil {
		return fmt.Errorf("delta vocabulary: %w", err)
	}
	if slices.Equal(uv.Pieces, dv.Pieces) {
		r.MapStats = "same vocabulary: identity map"
		return nil
	}
	if _, err := pmmined.ParseStrategy(string(strategy)); err != nil {
		return err
	}
	m, err := pmmined.LoadOrBuild(cacheDir, uv, dv, strategy)
	if err != nil {
		return fmt.Errorf("map %s onto %s: %w", userPath, deltaPath, err)
	}
	r.tokenMap = &control.TokenMap{ToDelta: m.ToDelta, Exact: make([]bool, len(m.ToDelta))}
	for u := range m.ToDelta {
		r.tokenMap.Exact[u] = m.Exact(int32(u))
	}
	st := m.Stats()
	r.MapStats = fmt.Sprintf("token map %s: %+v", strategy, st)
	slog.Debug("token map", "user", userPath, "delta", deltaPath, "stats", st)
	return nil
}

// loadDeltaModel loads the delta, its tokenizer and an inference session.
func (r *Runner) loadDeltaModel(deltaPath string) error {
	var err error
	if r.Delta, err = delta.LoadGGUF(deltaPath); err != nil {
		return fmt.Errorf("load delta: %w", err)
	}
	// One thread: the delta decodes beside llama.cpp, whose threads take the
	// cores, and its matrix-vector products are faster unsplit (BENCHMARKS.md).
	r.pool = kernels.NewPool(1)
	r.Delta.Pool = r.pool
	if r.DeltaVocab, err = llama.LoadModel(deltaPath, llama.ModelParams{VocabOnly: true}); err != nil {
		return fmt.Errorf("load the delta's tokenizer: %w", err)
	}
	r.deltaLM = control.NewDeltaLM(r.Delta, 1024)
	return nil
}

// Close frees the models and their contexts.
func (r *Runner) Close() {
	if r.UserCtx != nil {
		r.UserCtx.Close()
	}
	if r.User != nil {
		r.User.Close()
	}
	if r.DeltaVocab != nil {
		r.DeltaVocab.Close()
	}
	if r.pool != nil {
		r.pool.Close()
	}
}

// OpenUserContext creates the user model's context (its KV cache) and the
// record of what it holds.
func (r *Runner) OpenUserContext(p llama.ContextParams) error {
	var err error
	if r.UserCtx, err = r.User.NewContext(p); err != nil {
		return err
	}
	r.userLM = control.Track(allPositions{r.UserCtx})
	r.leadingSpace = control.LeadingSpace(r.User.Vocab(), r.userLM.VocabSize())
	return nil
}

// Generator returns a Generator over both models' contexts, which keep
// what earlier requests left in them: Generate decodes only the part of a
// prompt that the caches do not hold.
func (r *Runner) Generator(alpha float32) *control.Generator {
	g := &control.Generator{
		User:            r.userLM,
		UserTok:         r.User.Vocab(),
		EndOfGeneration: r.User.Vocab().IsEOG,
		LeadingSpace:    r.leadingSpace,
	}
	if r.Delta != nil && alpha != 0 {
		g.Delta, g.DeltaTok, g.Map, g.Alpha = r.deltaLM, r.DeltaVocab.Vocab(), r.tokenMap, alpha
	}
	return g
}

// GenerateIDs runs one generation of token prompts with the delta at strength alpha, within
// the user model's context: a prompt that does not fit is an error naming
// both sizes, MaxTokens is cut to the room left (0, no limit, becomes that
// room), and a generation that reaches the end of the context finishes
// with "length" instead of failing.
func (r *Runner) GenerateIDs(ctx context.Context, userIDs, deltaIDs []int32, alpha float32, opt control.Options, emit func(string) error) (control.Result, error) {
	room := r.UserCtx.Size() - len(userIDs)
	if room < 1 {
		return control.Result{}, fmt.Errorf("the prompt has %d tokens; the user model's context (--ctx) holds %d", len(userIDs), r.UserCtx.Size())
	}
	if opt.MaxTokens == 0 || opt.MaxTokens > room {
		opt.MaxTokens = room
	}
	res, err := r.Generator(alpha).Generate(ctx, userIDs, deltaIDs, opt, emit)
	if errors.Is(err, llama.ErrContextFull) {
		res.FinishReason, err = "length", nil
	}
	return res, err
}

// allPositions gives llama.cpp's context the all-positions decode of
// control.BatchLM: scoring an answer or a prompt reads every row of logits
// from one batch.
type allPositions struct{ *llama.Context }

func (a allPositions) AppendAll(tokens []int32, logits []float32) error {
	return a.Decode(tokens, llama.OutputAll, logits)
}

// ResolveTemplates parses the --template and --delta-template flags.
func (r *Runner) ResolveTemplates(user, deltaName string) error {
	if user == "auto" {
		user = data.TemplateRaw
		if _, err := r.User.ChatTemplate(); err == nil {
			user = "chat"
		}
	}
	var err error
	if user == "chat" {
		if r.userChat, err = r.User.NewChat(); err != nil {
			return fmt.Errorf("--template chat: %w", err)
		}
	} else if r.UserTmpl, err = data.ParseTemplate(user); err != nil {
		return fmt.Errorf("--template: %w", err)
	}
	if r.DeltaTmpl, err = data.ParseTemplate(deltaName); err != nil {
		return fmt.Errorf("--delta-template: %w", err)
	}
	return nil
}
