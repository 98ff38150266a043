package evaluate

import (
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/metrics"
)

func (e *evaluator) tofu(s Set) (File, []Result, error) {
	f := File{File: s.path, Set: s.set, Skipped: []string{}}
	bar := newProgress(e.progress, "tofu "+filepath.Base(s.path), len(s.examples))
	defer bar.done()
	for _, ex := range s.examples {
		bar.tick()
		it, err := e.tofuItem(s.scoring, ex)
		if skip(err, ex, &f) {
			continue
		}
		if err != nil {
			return f, nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		f.Items = append(f.Items, it)
	}
	f.Examples = len(f.Items)
	user, delta := summarise(s.scoring, f.Items)
	row := func(metric string, u, d float64) Result {
		return Result{File: s.path, Metric: metric, User: Float(u), Delta: Float(d), Examples: f.Examples, Skipped: len(f.Skipped)}
	}
	// The names of the rows that meant the same before stay as they were:
	// scripts read them.
	prob := "answer probability"
	if s.scoring == metrics.TOFURealAuthors || s.scoring == metrics.TOFUWorldFacts {
		prob = "answer probability, normalised over answer + perturbed"
	}
	rs := []Result{row(prob, user.Prob, delta.Prob), row("ROUGE-L recall (greedy)", user.RougeL, delta.RougeL)}
	if !math.IsNaN(user.TruthRatio) {
		summary := "truth ratio, retain summary mean(max(0,1-R))"
		if s.scoring == metrics.TOFUForget {
			summary = "truth ratio, forget summary mean(min(R,1/R))"
		}
		rs = append(rs, row(summary, user.TruthRatio, delta.TruthRatio))
	}
	return f, rs, nil
}

// tofuItem measures one question: greedy answers and the per-token
// log-probs of its answer, paraphrase and perturbed answers, alone and
// with the delta, all after one decoded prompt.
func (e *evaluator) tofuItem(set metrics.TOFUSet, ex data.Example) (Item, error) {
	if e.rm.Remote != nil {
		return e.remoteTOFUItem(set, ex)
	}
	it := Item{Source: ex.Source, Question: ex.Query(), Answer: ex.Output}
	p, err := e.prompt(ex.Query())
	if err != nil {
		return it, err
	}
	answers := scoredAnswers(ex)
	prompts, deltaPrompts, targets := make([][]int32, len(answers)), make([][]int32, len(answers)), make([][]int32, len(answers))
	for i, a := range answers {
		if prompts[i], deltaPrompts[i], targets[i], err = e.answer(p, a); err != nil {
			return it, err
		}
		if err := e.fits(prompts[i], targets[i]); err != nil {
			return it, err
		}
	}
	// A greedy answer stops at the end of the context rather than failing.
	size := e.ctxLimit
	if len(p.user) >= size {
		return it, overLongError{len(p.user) + 1, size}
	}
	opt := control.Options{MaxTokens: min(e.maxTokens, size-len(p.user)), Stop: e.stop, Heal: true}

	return e.measure(it, set, ex, len(answers), answerer{
		generate: func(alone bool) (string, string, error) {
			g, err := e.sc.Generate(e.ctx, p.user, p.delta, opt, alone)
			return g.Text, g.FinishReason, err
		},
		score: func(i int) ([]float64, []float64, error) {
			return e.sc.Score(e.ctx, prompts[i], deltaPrompts[i], targets[i])
		},
	})
}

// answerer is how a TOFU question reaches the user model, run here or
// served: a greedy answer, alone or with the delta, and the per-token
// log-probs of the i-th of scoredAnswers, alone and controlled.
type answerer struct {
	generate func(alone bool) (text, finish string, err error)
	score    func(i int) (alone, controlled []float64, err error)
}

// measure records both greedy answers in it (one, when there is no delta)
// and the mean log-probs of the n scored answers.
func (e *evaluator) measure(it Item, set metrics.TOFUSet, ex data.Example, n int, a answerer) (Item, error) {
	textA, finishA, err := a.generate(true)
	if err != nil {
		return it, err
	}
	textC, finishC := textA, finishA
	if e.withDelta {
		if textC, finishC, err = a.generate(false); err != nil {
			return it, err
		}
	}
	meanA, meanC := make([]float64, n), make([]float64, n)
	for i := range n {
		alone, controlled, err := a.score(i)
		if err != nil {
			return it, err
		}
		meanA[i], meanC[i] = metrics.MeanLogProb(alone), metrics.MeanLogProb(controlled)
	}
	it.User = newTOFUScores(set, ex, textA, finishA, meanA)
	it.Delta = newTOFUScores(set, ex, textC, finishC, meanC)
	return it, nil
}

// scoredAnswers are the texts a TOFU question scores, in the order
// newTOFUScores reads their log-probs: the answer, the paraphrase (when
// there is one) and the perturbed answers.
func scoredAnswers(ex data.Example) []string {
	answers := []string{ex.Output}
	if ex.Paraphrased != "" {
		answers = append(answers, ex.Paraphrased)
	}
	return append(answers, ex.Perturbed...)
}

// newTOFUScores fills one model's record of ex from its greedy answer and
// the mean log-probs of the answer, paraphrase (when ex has one) and
// perturbed answers, in that order.
func newTOFUScores(set metrics.TOFUSet, ex data.Example, generation, finish string, meanLogProbs []float64) Scores {
	it := metrics.TOFUItem{Answer: meanLogProbs[0], Paraphrased: math.NaN(), RougeL: metrics.RougeLRecall(ex.Output, generation)}
	rest := meanLogProbs[1:]
	if ex.Paraphrased != "" {
		it.Paraphrased, rest = rest[0], rest[1:]
	}
	it.Perturbed = rest
	s := Scores{
		Generation:         generation,
		FinishReason:       finish,
		RougeL:             Float(it.RougeL),
		AnswerLogProb:      Float(it.Answer),
		ParaphrasedLogProb: Float(it.Paraphrased),
		PerturbedLogProbs:  []Float{},
		Prob:               Float(set.Prob(it)),
		TruthRatio:         Float(set.TruthRatio(it)),
	}
	for _, lp := range rest {
		s.PerturbedLogProbs = append(s.PerturbedLogProbs, Float(lp))
	}
	return s
}

// summarise is a set's three TOFU numbers for each column.
func summarise(set metrics.TOFUSet, items []Item) (user, delta metrics.TOFUScores) {
	var a, c []metrics.TOFUItem
	for _, it := range items {
		a, c = append(a, it.User.item()), append(c, it.Delta.item())
	}
	return set.Summarise(a), set.Summarise(c)
}

// tofuSummary is TOFU's two headline numbers over the files: model utility
// when the retain, real-author and world-fact sets are there, forget
// quality when the forget set is and a reference was given.
func tofuSummary(files []File, reference []float64) []Result {
	bySet := map[metrics.TOFUSet]File{}
	for _, f := range files {
		if f.Set != "" {
			bySet[f.Set] = f
		}
	}
	var rs []Result
	var missing []string
	for _, s := range []metrics.TOFUSet{metrics.TOFURetain, metrics.TOFURealAuthors, metrics.TOFUWorldFacts} {
		if _, ok := bySet[s]; !ok {
			missing = append(missing, string(s))
		}
	}
	if len(missing) == 0 {
		var user, delta [3]metrics.TOFUScores
		examples, skipped := 0, 0
		for i, s := range []metrics.TOFUSet{metrics.TOFURetain, metrics.TOFURealAuthors, metrics.TOFUWorldFacts} {
			user[i], delta[i] = summarise(s, bySet[s].Items)
			examples += bySet[s].Examples
			skipped += len(bySet[s].Skipped)
		}
		rs = append(rs, Result{Metric: "model utility (hmean of the 9)",
			User:     Float(metrics.ModelUtility(user[0], user[1], user[2])),
			Delta:    Float(metrics.ModelUtility(delta[0], delta[1], delta[2])),
			Examples: examples, Skipped: skipped})
	} else if len(missing) < 3 {
		slog.Info("no model utility: it needs the retain, real-authors and world-facts sets", "missing", strings.Join(missing, ", "))
	}
	if forget, ok := bySet[metrics.TOFUForget]; ok && reference != nil {
		var user, delta []float64
		for _, it := range forget.Items {
			if r := float64(it.User.TruthRatio); !math.IsNaN(r) {
				user = append(user, r)
			}
			if r := float64(it.Delta.TruthRatio); !math.IsNaN(r) {
				delta = append(delta, r)
			}
		}
		rs = append(rs, Result{Metric: "forget quality (KS p-value vs reference)",
			User: Float(metrics.ForgetQuality(user, reference)), Delta: Float(metrics.ForgetQuality(delta, reference)),
			Examples: forget.Examples, Skipped: len(forget.Skipped)})
	}
	return rs
}
