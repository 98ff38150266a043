package main

import (
	"bufio"
	"context"
	"errors"
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
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/pmmined/vocabfile"
	"github.com/cmc-dev/cmc/remote"
	"github.com/cmc-dev/cmc/server"
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

// remoteUser is a user model served elsewhere, behind an OpenAI-compatible
// API, and the loop that steers it with the local delta.
type remoteUser struct {
	client *remote.Client
	// gen is kept between generations: it remembers the delta token of
	// every candidate text it has seen.
	gen control.RemoteGenerator
}

// loadRemoteRuntime is loadRuntime for --model http(s)://HOST:PORT/v1: it
// connects to the engine and loads the delta with a map from candidate
// texts onto the delta's vocabulary.
func loadRemoteRuntime(c *cli.Context) (*runtimeModels, error) {
	k := c.Int("remote-top-k")
	if k < 1 {
		return nil, fmt.Errorf("--remote-top-k %d: want at least 1", k)
	}
	rm := &runtimeModels{system: c.String("system"), alpha: float32(c.Float64("alpha"))}
	// cmc cannot apply a served model's chat template: the engine does not
	// hand it out. The prompt is rendered here with a data template.
	tmpl := c.String("template")
	switch tmpl {
	case "auto":
		tmpl = data.TemplateRaw
	case "chat":
		return nil, errors.New("--template chat: a served model's chat template is not available to cmc; " +
			"give its prompt format as a Go template, e.g. --template '[INST] {{.Query}} [/INST]', or open-instruct, qa, raw")
	}
	var err error
	if rm.userTmpl, err = data.ParseTemplate(tmpl); err != nil {
		return nil, fmt.Errorf("--template: %w", err)
	}
	if rm.deltaTmpl, err = data.ParseTemplate(c.String("delta-template")); err != nil {
		return nil, fmt.Errorf("--delta-template: %w", err)
	}
	client, err := remote.New(c.Context, c.String("model"), c.String("remote-key"), c.String("remote-model"))
	if err != nil {
		return nil, err
	}
	rm.remote = &remoteUser{client: client, gen: control.RemoteGenerator{User: client, K: k, DeltaEOS: -1}}
	rm.mapStats = fmt.Sprintf("remote %s at %s, top %d candidates per token", client.Model, client.BaseURL, k)
	deltaPath := c.String("delta")
	if deltaPath == "" || deltaPath == "none" || c.Bool("no-delta") {
		return rm, nil
	}
	if err := rm.loadDeltaModel(deltaPath); err != nil {
		rm.close()
		return nil, err
	}
	dv, err := vocabfile.ReadGGUF(deltaPath)
	if err != nil {
		rm.close()
		return nil, fmt.Errorf("delta vocabulary: %w", err)
	}
	strategy, err := pmmined.ParseStrategy(c.String("map-strategy"))
	if err != nil {
		rm.close()
		return nil, err
	}
	tm, err := pmmined.NewTextMapper(dv, strategy)
	if err != nil {
		rm.close()
		return nil, fmt.Errorf("map onto %s: %w", deltaPath, err)
	}
	rm.remote.gen.Map = func(text string) (int32, bool) {
		d, kind := tm.Map(text)
		return d, d >= 0 && (kind == pmmined.KindExact || kind == pmmined.KindByte)
	}
	rm.remote.gen.DeltaEOS = rm.deltaVocab.Vocab().EOS()
	rm.mapStats += fmt.Sprintf(", candidates mapped onto the delta by text (%s)", strategy)
	return rm, nil
}

// remotePrompts renders a conversation for a served user model, as text
// in its data template, and for the delta, as ids in the delta's template.
// A last assistant message is a prefill that both continue. As with a local
// model under a data template, --system does not apply.
func (rm *runtimeModels) remotePrompts(msgs []llama.Message) (text string, deltaIDs []int32, err error) {
	if len(msgs) == 0 {
		return "", nil, errors.New("no messages")
	}
	text = renderTurns(rm.userTmpl, msgs)
	deltaIDs, err = rm.remoteDeltaPrompt(renderTurns(rm.deltaTmpl, msgs))
	return text, deltaIDs, err
}

// remoteDeltaPrompt tokenises the delta's prompt text; nil without a delta.
func (rm *runtimeModels) remoteDeltaPrompt(text string) ([]int32, error) {
	if rm.delta == nil {
		return nil, nil
	}
	ids, err := rm.deltaVocab.Vocab().Tokenize(text, true, false)
	if err != nil {
		return nil, fmt.Errorf("tokenise the delta's prompt: %w", err)
	}
	return ids, nil
}

// remoteGenerate continues text on the served model with the delta at
// strength alpha (0: the served model alone).
func (rm *runtimeModels) remoteGenerate(ctx context.Context, text string, deltaIDs []int32, alpha float32, opt control.Options, emit func(string) error) (control.RemoteResult, error) {
	g := &rm.remote.gen
	g.Delta, g.DeltaTok, g.Alpha = nil, nil, 0
	if rm.delta != nil && alpha != 0 {
		rm.deltaLM.Trim(0)
		g.Delta, g.DeltaTok, g.Alpha = rm.deltaLM, rm.deltaVocab.Vocab(), alpha
	}
	return g.Generate(ctx, text, deltaIDs, opt, emit)
}

// runRemoteGenerate is cmc generate with a served user model.
func runRemoteGenerate(c *cli.Context, rm *runtimeModels) error {
	text, deltaIDs, err := rm.remotePrompts([]llama.Message{{Role: "user", Content: c.String("prompt")}})
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	if _, raw := rm.userTmpl.(data.Raw); c.Bool("echo") && raw {
		fmt.Fprint(out, text)
	}
	start := time.Now()
	res, err := rm.remoteGenerate(c.Context, text, deltaIDs, rm.alpha, sampleOptions(c), func(piece string) error {
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
			"not_the_engines_first_choice", changed, "delta_retokenised", res.DeltaRetokenised, "map", rm.mapStats)
	}
	return nil
}

// remoteChatTurn is one turn of cmc chat with a served user model.
func (rm *runtimeModels) remoteChatTurn(ctx context.Context, history []llama.Message, line string, alpha float32, opt control.Options, out *bufio.Writer) (string, error) {
	text, deltaIDs, err := rm.remotePrompts(append(history[:len(history):len(history)], llama.Message{Role: "user", Content: line}))
	if err != nil {
		return "", err
	}
	res, err := rm.remoteGenerate(ctx, text, deltaIDs, alpha, opt, func(piece string) error {
		if _, err := io.WriteString(out, piece); err != nil {
			return err
		}
		return out.Flush()
	})
	fmt.Fprintln(out)
	return res.Text, err
}

// serveRemote answers one request of cmc serve with a served user model;
// alpha has been resolved from the request already.
func (rm *runtimeModels) serveRemote(ctx context.Context, req server.Request, alpha float32, emit func(string) error) (server.Result, error) {
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
		text, deltaIDs, err = rm.remotePrompts(msgs)
	} else {
		// A completion continues the text as it is; the delta still sees
		// its own template.
		text = req.Prompt
		deltaIDs, err = rm.remoteDeltaPrompt(rm.deltaTmpl.Prompt(data.Example{Instruction: req.Prompt}))
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
	}
	res, err := rm.remoteGenerate(ctx, text, deltaIDs, alpha, opt, emit)
	// The served model's prompt tokens are not known here: PromptTokens
	// stays 0.
	return server.Result{Text: res.Text, FinishReason: res.FinishReason, CompletionTokens: len(res.Pieces)}, err
}

// remoteScore is evaluator.score with a served user model: the engine
// echoes the prompt and the response joined (TOFU's tokenisation), and
// control.RemoteScore steers its top candidates at each response token.
// The end of the response is not scored: the engine echoes no end token.
func (e *evaluator) remoteScore(query, response string) (alone, controlled []float64, err error) {
	text, deltaIDs, err := e.rm.remotePrompts([]llama.Message{{Role: "user", Content: query}})
	if err != nil {
		return nil, nil, err
	}
	return e.rm.remoteScoreAfter(e.ctx, text, response, deltaIDs)
}

func (rm *runtimeModels) remoteScoreAfter(ctx context.Context, prompt, response string, deltaIDs []int32) (alone, controlled []float64, err error) {
	r := rm.remote
	echo, err := r.client.Echo(ctx, prompt+response, r.gen.K)
	if err != nil {
		return nil, nil, err
	}
	g := &r.gen
	g.Delta, g.DeltaTok, g.Alpha = nil, nil, 0
	if rm.delta != nil && rm.alpha != 0 {
		rm.deltaLM.Trim(0)
		g.Delta, g.DeltaTok, g.Alpha = rm.deltaLM, rm.deltaVocab.Vocab(), rm.alpha
	}
	alone, controlled, err = g.RemoteScore(ctx, prompt, response, deltaIDs, echo)
	if err == nil && len(alone) == 0 {
		err = fmt.Errorf("the engine's echo of %q has no token after the prompt", prompt+response)
	}
	return alone, controlled, err
}

// remoteTOFUItem is evaluator.tofuItem with a served user model: greedy
// answers over the engine's top-k candidates, log-probs from its echo.
func (e *evaluator) remoteTOFUItem(set metrics.TOFUSet, ex data.Example) (tofuItem, error) {
	it := tofuItem{Source: ex.Source, Question: ex.Query(), Answer: ex.Output}
	text, deltaIDs, err := e.rm.remotePrompts([]llama.Message{{Role: "user", Content: ex.Query()}})
	if err != nil {
		return it, err
	}
	answers := []string{ex.Output}
	if ex.Paraphrased != "" {
		answers = append(answers, ex.Paraphrased)
	}
	answers = append(answers, ex.Perturbed...)
	opt := control.Options{MaxTokens: e.maxTokens, Stop: e.stop}
	genA, err := e.rm.remoteGenerate(e.ctx, text, deltaIDs, 0, opt, nil)
	if err != nil {
		return it, err
	}
	genC := genA
	if e.withDelta {
		if genC, err = e.rm.remoteGenerate(e.ctx, text, deltaIDs, e.rm.alpha, opt, nil); err != nil {
			return it, err
		}
	}
	meanA, meanC := make([]float64, len(answers)), make([]float64, len(answers))
	for i, a := range answers {
		alone, controlled, err := e.rm.remoteScoreAfter(e.ctx, text, a, deltaIDs)
		if err != nil {
			return it, err
		}
		meanA[i], meanC[i] = metrics.MeanLogProb(alone), metrics.MeanLogProb(controlled)
	}
	it.User = newTOFUScores(set, ex, genA.Text, meanA)
	it.Delta = newTOFUScores(set, ex, genC.Text, meanC)
	return it, nil
}
