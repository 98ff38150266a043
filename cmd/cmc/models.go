package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/internal/cpuinfo"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/pmmined/vocabfile"
	"github.com/cmc-dev/cmc/remote"
)

// Flags shared by the commands that run a user model with a delta.
func modelFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "the user LLM: a GGUF file llama.cpp can run, or http(s)://HOST:PORT/v1, a model served by an OpenAI-compatible engine (see --remote-top-k)", Required: true},
		&cli.StringFlag{Name: "delta", Aliases: []string{"d"}, Usage: "the trained delta model (GGUF written by cmc train); none: run the user model alone"},
		&cli.Float64Flag{Name: "alpha", Value: 1, Action: checkAlphaFlag,
			Usage: fmt.Sprintf("strength of the delta: score = log_softmax(user) + alpha × delta, between %d and %d; 0 gives the user model's own output", -control.MaxAlpha, control.MaxAlpha)},
		&cli.BoolFlag{Name: "no-delta", Usage: "ignore --delta and run the user model alone"},
		&cli.IntFlag{Name: "ctx", Value: 4096, Usage: "context length in tokens (KV cache size of the user model)"},
		&cli.IntFlag{Name: "threads", Value: cpuinfo.PhysicalCores(), Usage: "CPU threads of the user model (default: the physical cores; the delta decodes beside it on one more)"},
		&cli.IntFlag{Name: "gpu-layers", Value: 0, Usage: "layers of the user model to offload to a GPU backend (-1: all); see make cuda"},
		&cli.StringFlag{Name: "map-strategy", Value: string(pmmined.PMMinED), Usage: "token map between different vocabularies: pmmined, mined or exact"},
		&cli.StringFlag{Name: "map-cache", Value: defaultCacheDir("maps"), Usage: "directory of cached token maps (empty: do not cache)"},
		&cli.StringFlag{Name: "template", Value: "auto", Usage: "the user model's prompt template: auto (its chat template if it has one, else raw), chat, raw, open-instruct, qa, or a Go template using {{.Instruction}} {{.Input}} {{.Query}}"},
		&cli.StringFlag{Name: "delta-template", Value: data.TemplateOpenInstruct, Usage: "the delta's prompt template (the one it was trained with)"},
		&cli.StringFlag{Name: "system", Usage: "system message for chat templates"},
	}, remoteFlags()...)
}

// Flags shared by the commands that sample text.
func sampleFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 256, Usage: "most tokens to generate"},
		&cli.Float64Flag{Name: "temp", Value: 0.7, Usage: "sampling temperature; 0 is greedy"},
		&cli.IntFlag{Name: "top-k", Value: 40, Usage: "sample among the k most likely tokens (0: all)"},
		&cli.Float64Flag{Name: "top-p", Value: 0.95, Usage: "nucleus sampling mass (1: off)"},
		&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "random seed for sampling"},
		&cli.StringSliceFlag{Name: "stop", Usage: "stop before this string (repeatable)"},
	}
}

// checkAlphaFlag rejects a non-finite or out-of-range --alpha before any
// model is loaded.
func checkAlphaFlag(_ *cli.Context, alpha float64) error {
	if err := control.CheckAlpha(alpha); err != nil {
		return fmt.Errorf("--alpha: %w", err)
	}
	return nil
}

func defaultCacheDir(sub string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "cmc", sub)
}

// runtimeModels is a user LLM and, optionally, a delta with the token map
// between them: everything generation needs.
type runtimeModels struct {
	user    *llama.Model
	userCtx *llama.Context
	// userLM decodes into userCtx and records what it holds, so that each
	// request decodes only what its prompt does not share with the cache.
	// Every decode of the user model goes through it.
	userLM *control.Tracked

	delta      *delta.Model
	deltaVocab *llama.Model // the delta's tokenizer, loaded vocab-only
	deltaLM    *control.DeltaLM
	tokenMap   *control.TokenMap // nil when the vocabularies are the same
	mapStats   string

	// The prompt templates, resolved once at load: the user model's own
	// chat template (userChat) or a data template, and the delta's.
	userChat  *llama.Chat // nil: a data template
	userTmpl  data.Template
	deltaTmpl data.Template
	system    string
	alpha     float32
	pool      *kernels.Pool

	// remote is set instead of user and userCtx when --model is a URL: the
	// user model is served by another engine (remote.go).
	remote *remoteUser
}

func loadRuntime(c *cli.Context) (*runtimeModels, error) {
	if remote.IsURL(c.String("model")) {
		return loadRemoteRuntime(c)
	}
	threads := c.Int("threads")
	rm := &runtimeModels{
		system: c.String("system"),
		alpha:  float32(c.Float64("alpha")),
	}
	var err error
	rm.user, err = llama.LoadModel(c.String("model"), llama.ModelParams{GPULayers: c.Int("gpu-layers")})
	if err != nil {
		return nil, err
	}
	if err := rm.resolveTemplates(c.String("template"), c.String("delta-template")); err != nil {
		rm.close()
		return nil, err
	}
	if err := rm.openUserContext(llama.ContextParams{Size: c.Int("ctx"), Threads: threads}); err != nil {
		rm.close()
		return nil, err
	}
	deltaPath := c.String("delta")
	if deltaPath == "" || deltaPath == "none" || c.Bool("no-delta") {
		return rm, nil
	}
	if err := rm.loadDelta(deltaPath, c.String("model"), pmmined.Strategy(c.String("map-strategy")), c.String("map-cache")); err != nil {
		rm.close()
		return nil, err
	}
	return rm, nil
}

func (rm *runtimeModels) loadDelta(deltaPath, userPath string, strategy pmmined.Strategy, cacheDir string) error {
	if err := rm.loadDeltaModel(deltaPath); err != nil {
		return err
	}
	uv, err := vocabfile.ReadGGUF(userPath)
	if err != nil {
		return fmt.Errorf("user vocabulary: %w", err)
	}
	dv, err := vocabfile.ReadGGUF(deltaPath)
	if err != nil {
		return fmt.Errorf("delta vocabulary: %w", err)
	}
	if slices.Equal(uv.Pieces, dv.Pieces) {
		rm.mapStats = "same vocabulary: identity map"
		return nil
	}
	if _, err := pmmined.ParseStrategy(string(strategy)); err != nil {
		return err
	}
	m, err := pmmined.LoadOrBuild(cacheDir, uv, dv, strategy)
	if err != nil {
		return fmt.Errorf("map %s onto %s: %w", userPath, deltaPath, err)
	}
	rm.tokenMap = &control.TokenMap{ToDelta: m.ToDelta, Same: make([]bool, len(m.ToDelta))}
	for u := range m.ToDelta {
		rm.tokenMap.Same[u] = m.Exact(int32(u))
	}
	st := m.Stats()
	rm.mapStats = fmt.Sprintf("token map %s: %+v", strategy, st)
	slog.Debug("token map", "user", userPath, "delta", deltaPath, "stats", st)
	return nil
}

// loadDeltaModel loads the delta, its tokenizer and an inference session.
func (rm *runtimeModels) loadDeltaModel(deltaPath string) error {
	var err error
	if rm.delta, err = delta.LoadGGUF(deltaPath); err != nil {
		return fmt.Errorf("load delta: %w", err)
	}
	// One thread: the delta decodes beside llama.cpp, whose threads take the
	// cores, and its matrix-vector products are faster unsplit (BENCHMARKS.md).
	rm.pool = kernels.NewPool(1)
	rm.delta.Pool = rm.pool
	if rm.deltaVocab, err = llama.LoadModel(deltaPath, llama.ModelParams{VocabOnly: true}); err != nil {
		return fmt.Errorf("load the delta's tokenizer: %w", err)
	}
	rm.deltaLM = control.NewDeltaLM(rm.delta, 1024)
	return nil
}

func (rm *runtimeModels) close() {
	if rm.userCtx != nil {
		rm.userCtx.Close()
	}
	if rm.user != nil {
		rm.user.Close()
	}
	if rm.deltaVocab != nil {
		rm.deltaVocab.Close()
	}
	if rm.pool != nil {
		rm.pool.Close()
	}
}

// openUserContext creates the user model's context (its KV cache) and the
// record of what it holds.
func (rm *runtimeModels) openUserContext(p llama.ContextParams) error {
	var err error
	if rm.userCtx, err = rm.user.NewContext(p); err != nil {
		return err
	}
	rm.userLM = control.Track(allPositions{rm.userCtx})
	return nil
}

// generator returns a Generator over both models' contexts, which keep
// what earlier requests left in them: Generate decodes only the part of a
// prompt that the caches do not hold.
func (rm *runtimeModels) generator(alpha float32) *control.Generator {
	g := &control.Generator{
		User:            rm.userLM,
		UserTok:         rm.user.Vocab(),
		EndOfGeneration: rm.user.Vocab().IsEOG,
	}
	if rm.delta != nil && alpha != 0 {
		g.Delta, g.DeltaTok, g.Map, g.Alpha = rm.deltaLM, rm.deltaVocab.Vocab(), rm.tokenMap, alpha
	}
	return g
}

// generate runs one generation with the delta at strength alpha, within
// the user model's context: a prompt that does not fit is an error naming
// both sizes, MaxTokens is cut to the room left (0, no limit, becomes that
// room), and a generation that reaches the end of the context finishes
// with "length" instead of failing.
func (rm *runtimeModels) generate(ctx context.Context, userIDs, deltaIDs []int32, alpha float32, opt control.Options, emit func(string) error) (control.Result, error) {
	room := rm.userCtx.Size() - len(userIDs)
	if room < 1 {
		return control.Result{}, fmt.Errorf("the prompt has %d tokens; the user model's context (--ctx) holds %d", len(userIDs), rm.userCtx.Size())
	}
	if opt.MaxTokens == 0 || opt.MaxTokens > room {
		opt.MaxTokens = room
	}
	res, err := rm.generator(alpha).Generate(ctx, userIDs, deltaIDs, opt, emit)
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

// resolveTemplates parses the --template and --delta-template flags.
func (rm *runtimeModels) resolveTemplates(user, deltaName string) error {
	if user == "auto" {
		user = data.TemplateRaw
		if _, err := rm.user.ChatTemplate(); err == nil {
			user = "chat"
		}
	}
	var err error
	if user == "chat" {
		if rm.userChat, err = rm.user.NewChat(); err != nil {
			return fmt.Errorf("--template chat: %w", err)
		}
	} else if rm.userTmpl, err = data.ParseTemplate(user); err != nil {
		return fmt.Errorf("--template: %w", err)
	}
	if rm.deltaTmpl, err = data.ParseTemplate(deltaName); err != nil {
		return fmt.Errorf("--delta-template: %w", err)
	}
	return nil
}

// prompts renders one request for both models and tokenises it: the user
// model's prompt with its template, the delta's with the one it was trained
// with. history holds earlier turns (chat).
func (rm *runtimeModels) prompts(history []llama.Message, query string) (userIDs, deltaIDs []int32, userText string, err error) {
	msgs := append(slices.Clip(history), llama.Message{Role: "user", Content: query})
	return rm.chatPrompts(msgs)
}

// chatPrompts is prompts for a conversation given whole, each message with
// its own role. A last assistant message is a prefill: both models
// continue its text, in the user's template and in the delta's.
func (rm *runtimeModels) chatPrompts(msgs []llama.Message) (userIDs, deltaIDs []int32, userText string, err error) {
	if len(msgs) == 0 {
		return nil, nil, "", errors.New("no messages")
	}
	if rm.userChat != nil {
		if rm.system != "" && msgs[0].Role != "system" {
			msgs = append([]llama.Message{{Role: "system", Content: rm.system}}, msgs...)
		}
		// Special tokens come from the template's text only: a message
		// that spells "<|im_end|>" must not end its turn.
		userIDs, userText, err = rm.userChat.Tokenize(msgs, true)
		if err != nil {
			return nil, nil, "", err
		}
	} else {
		userText = renderTurns(rm.userTmpl, msgs)
		if userIDs, err = rm.user.Vocab().Tokenize(userText, true, false); err != nil {
			return nil, nil, "", fmt.Errorf("tokenise the prompt: %w", err)
		}
	}
	if rm.delta == nil {
		return userIDs, nil, userText, nil
	}
	// The delta sees the conversation in the template it was trained with,
	// turn by turn, so that its prompt for the next turn extends this one.
	deltaText := renderTurns(rm.deltaTmpl, msgs)
	deltaIDs, err = rm.deltaVocab.Vocab().Tokenize(deltaText, true, false)
	if err != nil {
		return nil, nil, "", fmt.Errorf("tokenise the delta's prompt: %w", err)
	}
	return userIDs, deltaIDs, userText, nil
}

// renderUser renders a query after history in the user's template, for
// callers that tokenise the text themselves; special reports a chat
// template's text. Tokenising that text with special tokens parsed would
// let the query inject control tokens: chatPrompts does not.
func (rm *runtimeModels) renderUser(chat *llama.Chat, tmpl data.Template, history []llama.Message, query string) (text string, special bool, err error) {
	msgs := append(slices.Clip(history), llama.Message{Role: "user", Content: query})
	if chat == nil {
		return renderTurns(tmpl, msgs), false, nil
	}
	if rm.system != "" && msgs[0].Role != "system" {
		msgs = append([]llama.Message{{Role: "system", Content: rm.system}}, msgs...)
	}
	_, text, err = chat.Tokenize(msgs, false)
	return text, true, err
}

// completionPrompts is prompts for a plain completion: the user model
// continues the text as it is; the delta still sees its own template.
func (rm *runtimeModels) completionPrompts(text string) (userIDs, deltaIDs []int32, err error) {
	if userIDs, err = rm.user.Vocab().Tokenize(text, true, false); err != nil {
		return nil, nil, fmt.Errorf("tokenise the prompt: %w", err)
	}
	deltaIDs, err = rm.deltaPrompt(text)
	return userIDs, deltaIDs, err
}

// deltaPrompt is the delta's prompt for a query (nil without a delta).
func (rm *runtimeModels) deltaPrompt(query string) ([]int32, error) {
	if rm.delta == nil {
		return nil, nil
	}
	ids, err := rm.deltaVocab.Vocab().Tokenize(rm.deltaTmpl.Prompt(data.Example{Instruction: query}), true, false)
	if err != nil {
		return nil, fmt.Errorf("tokenise the delta's prompt: %w", err)
	}
	return ids, nil
}

// renderTurns writes a conversation in a data template, which knows one
// query and its response, turn by turn: each assistant message is the
// response to the messages before it (since the previous one), closed by a
// newline, and the messages after the last one make the open query. A last
// assistant message is a prefill, left open. So the text of a conversation
// starts with the text of every earlier state of it, and a KV cache that
// holds turn N is reused for turn N+1.
func renderTurns(tmpl data.Template, msgs []llama.Message) string {
	var b strings.Builder
	start := 0
	for i, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		if start < i {
			b.WriteString(tmpl.Prompt(data.Example{Instruction: flatten(msgs[start:i])}))
		}
		b.WriteString(m.Content)
		if i < len(msgs)-1 {
			b.WriteByte('\n')
		}
		start = i + 1
	}
	if start < len(msgs) {
		b.WriteString(tmpl.Prompt(data.Example{Instruction: flatten(msgs[start:])}))
	}
	return b.String()
}

// flatten writes the messages of one turn as one query: a lone user
// message as it is, more messages one "role: content" line each, a last
// user message bare.
func flatten(msgs []llama.Message) string {
	var b strings.Builder
	for i, m := range msgs {
		if i == len(msgs)-1 && m.Role == "user" {
			b.WriteString(m.Content)
			break
		}
		fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func sampleOptions(c *cli.Context) control.Options {
	return control.Options{
		MaxTokens: c.Int("max-tokens"),
		Stop:      c.StringSlice("stop"),
		Sample: control.SampleOptions{
			Temperature: c.Float64("temp"),
			TopK:        c.Int("top-k"),
			TopP:        c.Float64("top-p"),
			Seed:        c.Uint64("seed"),
		},
	}
}
