// Package evaluate measures what a delta does to a user LLM: the
// negative log-likelihood of reference responses, or TOFU's unlearning
// numbers (Maini et al. 2024), each for the user model alone and with the
// delta, through a runner.Runner. cmc eval parses its flags and calls Run.
package evaluate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/metrics"
	"github.com/cmc-dev/cmc/runner"
)

// Options are the settings of one evaluation.
type Options struct {
	Task      string   // TaskNLL or TaskTOFU
	MaxTokens int      // tofu: most new tokens of a greedy answer
	Stop      []string // tofu: greedy answers stop before these strings
	// ContextLimit is the most tokens an example may take in the user's
	// context (0: the context's size).
	ContextLimit int
	// Reference is the forget set's truth ratios of a model never trained
	// on it (ReadReference); nil: no forget quality.
	Reference []float64
	// Progress receives a line now and then on long sets (nil: silence).
	Progress io.Writer
}

// The tasks.
const (
	TaskNLL  = "nll"
	TaskTOFU = "tofu"
)

// Run evaluates every set with rm's user model alone and with its delta,
// and summarises: one result table per set, then, for TOFU, model utility
// and forget quality where the sets allow them.
func Run(ctx context.Context, rm *runner.Runner, sets []Set, opt Options) (Doc, error) {
	e := newEvaluator(ctx, rm, opt)
	if rm.UserCtx != nil {
		// llama.cpp pads the context past --ctx but caps its batch at
		// --ctx: a decode longer than --ctx would abort inside it.
		e.ctxLimit = rm.UserCtx.Size()
		if opt.ContextLimit > 0 {
			e.ctxLimit = min(e.ctxLimit, opt.ContextLimit)
		}
	}
	doc := Doc{Alpha: rm.Alpha, Task: opt.Task}
	for _, s := range sets {
		var f File
		var rs []Result
		var err error
		if opt.Task == TaskNLL {
			f, rs, err = e.nll(s)
		} else {
			f, rs, err = e.tofu(s)
		}
		if err != nil {
			return doc, fmt.Errorf("%s: %w", s.path, err)
		}
		doc.Files = append(doc.Files, f)
		doc.Results = append(doc.Results, rs...)
	}
	if opt.Task == TaskTOFU {
		doc.Results = append(doc.Results, tofuSummary(doc.Files, opt.Reference)...)
	}
	return doc, nil
}

// evaluator scores examples with the user model alone and with the delta.
type evaluator struct {
	ctx       context.Context
	rm        *runner.Runner
	sc        *control.Scorer
	withDelta bool // a delta at alpha != 0: the second column is measured, not copied
	ctxLimit  int  // most tokens an example may take in the user's context
	maxTokens int
	stop      []string
	progress  io.Writer // nil: no progress lines
}

func newEvaluator(ctx context.Context, rm *runner.Runner, opt Options) *evaluator {
	e := &evaluator{ctx: ctx, rm: rm, maxTokens: opt.MaxTokens, stop: opt.Stop, progress: opt.Progress}
	if rm.Remote != nil {
		e.withDelta = rm.Delta != nil && rm.Alpha != 0
		return e
	}
	g := rm.Generator(rm.Alpha)
	e.sc, e.withDelta = &control.Scorer{G: g}, g.Delta != nil
	return e
}

// evalPrompt is one question rendered for both models.
type evalPrompt struct {
	text      string  // the user model's prompt text
	chat      bool    // rendered by the model's chat template
	user      []int32 // its tokens, BOS included: the prompt of a generation
	delta     []int32 // the delta's prompt (nil without a delta)
	deltaText string  // its text
}

func (e *evaluator) prompt(query string) (evalPrompt, error) {
	user, delta, text, err := e.rm.Prompts(nil, query)
	if err != nil {
		return evalPrompt{}, err
	}
	// Without a data template the user model's chat template renders.
	p := evalPrompt{text: text, chat: e.rm.UserTmpl == nil, user: user, delta: delta}
	if e.withDelta {
		p.deltaText = e.rm.DeltaTmpl.Prompt(data.Example{Instruction: query})
	}
	return p, nil
}

// answer returns the tokens for scoring answer after p: the user's prompt
// and target, prompt and answer tokenised as one text and split where the
// answer starts (data.TokenizeJoined), the answer followed by EOS; and the
// delta's prompt. After a chat template, which ends in its own markup, the
// answer is tokenised on its own, so that special tokens are parsed in the
// template's text only.
func (e *evaluator) answer(p evalPrompt, answer string) (prompt, deltaPrompt, target []int32, err error) {
	v := e.rm.User.Vocab()
	deltaPrompt = p.delta
	if p.chat {
		prompt = p.user
		if target, err = v.Tokenize(answer, false, false); err != nil {
			return nil, nil, nil, fmt.Errorf("tokenise an answer: %w", err)
		}
	} else {
		joined, split, err := data.TokenizeJoined(v, p.text, answer)
		if err != nil {
			return nil, nil, nil, err
		}
		if v.AddBOS() {
			prompt = append(prompt, v.BOS())
		}
		prompt = append(prompt, joined[:split]...)
		target = joined[split:]
		// The prompt's last token may carry the answer's first characters
		// ("▁The" after "Answer: "): the delta reads them in its prompt too,
		// so that both models condition on the same text.
		if carried := textAfter(v, p.text, joined[:split]); carried != "" && e.withDelta {
			if deltaPrompt, err = e.rm.DeltaVocab.Vocab().Tokenize(p.deltaText+carried, true, false); err != nil {
				return nil, nil, nil, fmt.Errorf("tokenise the delta's prompt: %w", err)
			}
		}
	}
	if eos := v.EOS(); eos >= 0 {
		target = append(target, eos)
	}
	return prompt, deltaPrompt, target, nil
}

// textAfter is what tokens spell beyond prompt: the part of an answer that
// a token straddling the boundary carries ("" when they spell no more, or
// not the prompt). A leading space that the tokenizer added (SentencePiece)
// is not part of the text.
func textAfter(v *llama.Vocab, prompt string, tokens []int32) string {
	var b []byte
	for _, id := range tokens {
		b = v.AppendPiece(b, id, false)
	}
	spelled := string(b)
	if strings.HasPrefix(spelled, " ") && !strings.HasPrefix(prompt, " ") {
		spelled = spelled[1:]
	}
	after, _ := strings.CutPrefix(spelled, prompt)
	if len(after) == len(spelled) {
		return ""
	}
	return after
}

// overLongError marks an example that does not fit the user model's
// context: it is skipped and counted, not fatal.
type overLongError struct{ tokens, size int }

func (e overLongError) Error() string {
	return fmt.Sprintf("%d tokens do not fit the context of %d (--ctx)", e.tokens, e.size)
}

// fits reports whether scoring target after prompt fits the context: the
// decode holds every token but the target's last.
func (e *evaluator) fits(prompt, target []int32) error {
	if n := len(prompt) + len(target) - 1; n > e.ctxLimit {
		return overLongError{n, e.ctxLimit}
	}
	return nil
}

// skip reports whether err means the example is to be skipped, and warns.
func skip(err error, ex data.Example, f *File) bool {
	var long overLongError
	if !errors.As(err, &long) && !errors.Is(err, llama.ErrContextFull) {
		return false
	}
	slog.Warn("example skipped: it does not fit the context", "example", ex.Source, "reason", err)
	f.Skipped = append(f.Skipped, ex.Source)
	return true
}

func (e *evaluator) nll(s Set) (File, []Result, error) {
	f := File{File: s.path, Set: s.set, Skipped: []string{}}
	var sumA, sumC float64
	var n int
	bar := newProgress(e.progress, "nll "+filepath.Base(s.path), len(s.examples))
	defer bar.done()
	for _, ex := range s.examples {
		bar.tick()
		a, c, err := e.score(ex.Query(), ex.Output)
		if skip(err, ex, &f) {
			continue
		}
		if err != nil {
			return f, nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		for i := range a {
			sumA -= a[i]
			sumC -= c[i]
		}
		n += len(a)
		f.Examples++
	}
	row := func(metric string, user, delta float64) Result {
		return Result{File: s.path, Metric: metric, User: Float(user), Delta: Float(delta), Examples: f.Examples, Skipped: len(f.Skipped)}
	}
	return f, []Result{
		row("NLL per token", metrics.MeanNLL(sumA, n), metrics.MeanNLL(sumC, n)),
		row("perplexity", metrics.Perplexity(sumA, n), metrics.Perplexity(sumC, n)),
		row("response tokens", float64(n), float64(n)),
	}, nil
}

// score is the log-probs of response's tokens after query's prompt.
func (e *evaluator) score(query, response string) (alone, controlled []float64, err error) {
	if e.rm.Remote != nil {
		return e.remoteScore(query, response)
	}
	p, err := e.prompt(query)
	if err != nil {
		return nil, nil, err
	}
	prompt, deltaPrompt, target, err := e.answer(p, response)
	if err != nil {
		return nil, nil, err
	}
	if err := e.fits(prompt, target); err != nil {
		return nil, nil, err
	}
	return e.sc.Score(e.ctx, prompt, deltaPrompt, target)
}
