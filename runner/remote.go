package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/remote"
	"github.com/cmc-dev/cmc/server"
)

// Remote is a user model served elsewhere, behind an OpenAI-compatible
// API, and the loop that steers it with the local delta.
type Remote struct {
	Client *remote.Client
	// Gen is kept between generations: it remembers the delta token of
	// every candidate text it has seen.
	Gen control.RemoteGenerator
}

// RemotePrompts renders a conversation for a served user model, as text
// in its data template, and for the delta, as ids in the delta's template.
// A last assistant message is a prefill that both continue. As with a local
// model under a data template, --system does not apply.
func (r *Runner) RemotePrompts(msgs []llama.Message) (text string, deltaIDs []int32, err error) {
	if len(msgs) == 0 {
		return "", nil, errors.New("no messages")
	}
	text = renderTurns(r.UserTmpl, msgs)
	deltaIDs, err = r.remoteDeltaPrompt(renderTurns(r.DeltaTmpl, msgs))
	return text, deltaIDs, err
}

// remoteDeltaPrompt tokenises the delta's prompt text; nil without a delta.
func (r *Runner) remoteDeltaPrompt(text string) ([]int32, error) {
	if r.Delta == nil {
		return nil, nil
	}
	ids, err := r.DeltaVocab.Vocab().Tokenize(text, true, false)
	if err != nil {
		return nil, fmt.Errorf("tokenise the delta's prompt: %w", err)
	}
	return ids, nil
}

// RemoteGenerate continues text on the served model with the delta at
// strength alpha (0: the served model alone).
func (r *Runner) RemoteGenerate(ctx context.Context, text string, deltaIDs []int32, alpha float32, opt control.Options, emit func(string) error) (control.RemoteResult, error) {
	return r.steerRemote(alpha).Generate(ctx, text, deltaIDs, opt, emit)
}

// steerRemote readies the remote loop for one request: the delta at
// strength alpha from an empty context, or none at alpha 0.
func (r *Runner) steerRemote(alpha float32) *control.RemoteGenerator {
	g := &r.Remote.Gen
	g.Delta, g.DeltaTok, g.Alpha = nil, nil, 0
	if r.Delta != nil && alpha != 0 {
		r.deltaLM.Trim(0)
		g.Delta, g.DeltaTok, g.Alpha = r.deltaLM, r.DeltaVocab.Vocab(), alpha
	}
	return g
}

// serveRemote answers one request of cmc serve with a served user model;
// alpha has been resolved from the request already.
func (r *Runner) serveRemote(ctx context.Context, req server.Request, alpha float32, emit func(string) error) (server.Result, error) {
	var text string
	var deltaIDs []int32
	var err error
	param := "prompt"
	if req.Messages != nil {
		param = "messages"
		msgs := make([]llama.Message, len(req.Messages))
		for i, m := range req.Messages {
			msgs[i] = llama.Message{Role: m.Role, Content: m.Content}
		}
		text, deltaIDs, err = r.RemotePrompts(msgs)
	} else {
		// A completion continues the text as it is; the delta still sees
		// its own template.
		text = req.Prompt
		deltaIDs, err = r.remoteDeltaPrompt(r.DeltaTmpl.Prompt(data.Example{Instruction: req.Prompt}))
	}
	if err != nil {
		return server.Result{}, &server.RequestError{Param: param, Message: err.Error()}
	}
	seed := uint64(time.Now().UnixNano())
	if req.Seed != nil {
		seed = uint64(*req.Seed)
	}
	opt := control.Options{
		MaxTokens: req.MaxTokens,
		Stop:      req.Stop,
		Sample:    control.SampleOptions{Temperature: req.Temperature, TopK: req.TopK, TopP: req.TopP, Seed: seed},
		Heal:      heals(req),
	}
	res, err := r.RemoteGenerate(ctx, text, deltaIDs, alpha, opt, emit)
	// The served model's prompt tokens are not known here: PromptTokens
	// stays 0.
	return server.Result{Text: res.Text, FinishReason: res.FinishReason, CompletionTokens: len(res.Pieces)}, err
}

// RemoteScoreAfter scores response after prompt on the served model: the
// engine echoes their joined text with its top candidates, and the delta
// steers those at each response token (control.RemoteScore).
func (r *Runner) RemoteScoreAfter(ctx context.Context, prompt, response string, deltaIDs []int32) (alone, controlled []float64, err error) {
	echo, err := r.Remote.Client.Echo(ctx, prompt+response, r.Remote.Gen.K)
	if err != nil {
		return nil, nil, err
	}
	alone, controlled, err = r.steerRemote(r.Alpha).RemoteScore(ctx, prompt, response, deltaIDs, echo)
	if err == nil && len(alone) == 0 {
		err = fmt.Errorf("the engine's echo of %q has no token after the prompt", prompt+response)
	}
	return alone, controlled, err
}

// loadRemote is Load for a served user model (http(s)://HOST:PORT/v1): it
// connects to the engine and loads the delta with a map from candidate
// texts onto the delta's vocabulary.
func loadRemote(ctx context.Context, cfg Config) (*Runner, error) {
	k := cfg.Remote.TopK
	if k < 1 {
		return nil, fmt.Errorf("--remote-top-k %d: want at least 1", k)
	}
	r := &Runner{system: cfg.System, Alpha: cfg.Alpha}
	// cmc cannot apply a served model's chat template: the engine does not
	// hand it out. The prompt is rendered here with a data template.
	tmpl := cfg.Template
	switch tmpl {
	case "auto":
		tmpl = data.TemplateRaw
	case "chat":
		return nil, errors.New("--template chat: a served model's chat template is not available to cmc; " +
			"give its prompt format as a Go template, e.g. --template '[INST] {{.Query}} [/INST]', or open-instruct, qa, raw")
	}
	var err error
	if r.UserTmpl, err = data.ParseTemplate(tmpl); err != nil {
		return nil, fmt.Errorf("--template: %w", err)
	}
	if r.DeltaTmpl, err = data.ParseTemplate(cfg.DeltaTemplate); err != nil {
		return nil, fmt.Errorf("--delta-template: %w", err)
	}
	client, err := remote.New(ctx, cfg.Model, cfg.Remote.Key, cfg.Remote.Model)
	if err != nil {
		return nil, err
	}
	r.Remote = &Remote{Client: client, Gen: control.RemoteGenerator{User: client, K: k, DeltaEOS: -1}}
	r.MapStats = fmt.Sprintf("remote %s at %s, top %d candidates per token", client.Model, client.BaseURL, k)
	deltaPath := cfg.Delta
	if deltaPath == "" || deltaPath == "none" {
		return r, nil
	}
	if err := r.loadDeltaModel(deltaPath); err != nil {
		r.Close()
		return nil, err
	}
	dv, err := r.DeltaVocab.FileVocab()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("delta vocabulary: %w", err)
	}
	strategy, err := pmmined.ParseStrategy(string(cfg.MapStrategy))
	if err != nil {
		r.Close()
		return nil, err
	}
	tm, err := pmmined.NewTextMapper(dv, strategy)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("map onto %s: %w", deltaPath, err)
	}
	r.Remote.Gen.Map = func(text string) (int32, bool) {
		d, kind := tm.Map(text)
		return d, d >= 0 && (kind == pmmined.KindExact || kind == pmmined.KindByte)
	}
	r.Remote.Gen.DeltaEOS = r.DeltaVocab.Vocab().EOS()
	r.MapStats += fmt.Sprintf(", candidates mapped onto the delta by text (%s)", strategy)
	return r, nil
}
