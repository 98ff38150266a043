package metrics

import "math"

// The TOFU benchmark (Maini et al. 2024, "TOFU: A Task of Fictitious
// Unlearning") scores each question by the length-normalised probability
// of answers: a paraphrase of the correct answer and several perturbed,
// wrong answers in the same style. Inputs here are mean log-probabilities
// per token (MeanLogProb), so answers of different lengths compare fairly.
// The formulas follow TOFU's aggregate_eval_stat.py, which is what its
// published numbers come from.

// TruthRatio is R_truth for one question: how likely the wrong answers are
// relative to the paraphrased correct one,
//
//	R = exp(mean(perturbed)) / exp(paraphrased)
//
// i.e. the geometric mean of the perturbed answers' normalised
// probabilities over the paraphrase's (TOFU's code averages the log
// probabilities; the paper's formula writes an arithmetic mean). R below 1
// means the model prefers the truth. NaN when perturbed is empty.
func TruthRatio(paraphrasedLogProbPerToken float64, perturbedLogProbPerToken []float64) float64 {
	return math.Exp(MeanLogProb(perturbedLogProbPerToken) - paraphrasedLogProbPerToken)
}

// ForgetTruthRatio summarises the truth ratios of the forget set as TOFU
// reports them: mean(min(R, 1/R)), in (0, 1]. It is 1 when the model finds
// the correct and the wrong answers equally likely and falls towards 0 when
// it strongly prefers either side; unlearning aims at the value that a
// model never trained on the forget set gets. NaN for no ratios.
func ForgetTruthRatio(ratios []float64) float64 {
	return mean(ratios, func(r float64) float64 { return min(r, 1/r) })
}

// RetainTruthRatio summarises the truth ratios of the retain, real-author
// and world-fact sets as TOFU reports them: mean(max(0, 1 - R)), in [0, 1).
// Higher is better: the model prefers the correct answer. NaN for no
// ratios.
func RetainTruthRatio(ratios []float64) float64 {
	return mean(ratios, func(r float64) float64 { return max(0, 1-r) })
}

// NormalizedAnswerProbability is TOFU's "Prob." for the real-author and
// world-fact sets: the correct answer's normalised probability as a share
// of all the choices',
//
//	exp(correct) / (exp(correct) + sum exp(perturbed))
//
// computed in log space so that very negative log-probabilities do not
// underflow to 0/0.
func NormalizedAnswerProbability(correctLogProbPerToken float64, perturbedLogProbPerToken []float64) float64 {
	// Divide through by exp(correct): 1 / (1 + sum exp(p - correct)).
	denominator := 1.0
	for _, p := range perturbedLogProbPerToken {
		denominator += math.Exp(p - correctLogProbPerToken)
	}
	return 1 / denominator
}

// HarmonicMean is how TOFU combines its nine retain-side scores into "Model
// Utility". As scipy's hmean, it is 0 when any value is 0. NaN for no
// values or a negative one.
func HarmonicMean(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	sum := 0.0
	for _, v := range values {
		switch {
		case v < 0 || math.IsNaN(v):
			return math.NaN()
		case v == 0:
			return 0
		}
		sum += 1 / v
	}
	return float64(len(values)) / sum
}

// mean is the average of f over values, NaN for none.
func mean(values []float64, f func(float64) float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	sum := 0.0
	for _, v := range values {
		sum += f(v)
	}
	return sum / float64(len(values))
}

// TOFUSet is one of the four evaluation sets TOFU reports on. The set
// decides how its answers are scored: real authors and world facts have no
// paraphrased answer, so their truth ratio takes the answer itself as the
// base and their probability is normalised over the choices; the forget
// set's truth ratio is summarised towards "undecided", the others' towards
// "prefers the truth" (aggregate_eval_stat.py).
type TOFUSet string

// The sets, named as `cmc eval` names them (TOFU's files: forget10_perturbed,
// retain_perturbed, real_authors_perturbed, world_facts_perturbed).
const (
	TOFUForget      TOFUSet = "forget"
	TOFURetain      TOFUSet = "retain"
	TOFURealAuthors TOFUSet = "real-authors"
	TOFUWorldFacts  TOFUSet = "world-facts"
)

// TOFUItem is what one question of a set measures, as mean log-probabilities
// per token (MeanLogProb) of the model's answers.
type TOFUItem struct {
	Answer      float64   // the correct answer
	Paraphrased float64   // its paraphrase; NaN when the question has none
	Perturbed   []float64 // each perturbed (wrong) answer
	RougeL      float64   // ROUGE-L recall of the model's greedy answer against the correct one
}

// TOFUScores are a set's three numbers in TOFU's tables.
type TOFUScores struct {
	Prob       float64 // mean Prob over the items
	RougeL     float64 // mean ROUGE-L recall
	TruthRatio float64 // the set's truth ratio summary (ForgetTruthRatio or RetainTruthRatio)
}

// answerIsBase: the sets without paraphrases.
func (s TOFUSet) answerIsBase() bool { return s == TOFURealAuthors || s == TOFUWorldFacts }

// Prob is TOFU's "Prob." of one item: the answer's normalised probability
// exp(Answer), or for real authors and world facts its share of all the
// choices (NormalizedAnswerProbability).
func (s TOFUSet) Prob(it TOFUItem) float64 {
	if s.answerIsBase() {
		return NormalizedAnswerProbability(it.Answer, it.Perturbed)
	}
	return math.Exp(it.Answer)
}

// TruthRatio is one item's R (TruthRatio) against its paraphrase, or its
// answer for real authors and world facts. NaN when the item has no
// perturbed answer or no base.
func (s TOFUSet) TruthRatio(it TOFUItem) float64 {
	base := it.Paraphrased
	if s.answerIsBase() {
		base = it.Answer
	}
	if len(it.Perturbed) == 0 || math.IsNaN(base) {
		return math.NaN()
	}
	return TruthRatio(base, it.Perturbed)
}

// Summarise computes the set's three numbers; the truth ratio summary is
// over the items that have a truth ratio. A field is NaN when no item has
// what it needs.
func (s TOFUSet) Summarise(items []TOFUItem) TOFUScores {
	var probs, rouges, ratios []float64
	for _, it := range items {
		probs = append(probs, s.Prob(it))
		rouges = append(rouges, it.RougeL)
		if r := s.TruthRatio(it); !math.IsNaN(r) {
			ratios = append(ratios, r)
		}
	}
	identity := func(v float64) float64 { return v }
	sc := TOFUScores{Prob: mean(probs, identity), RougeL: mean(rouges, identity)}
	if s == TOFUForget {
		sc.TruthRatio = ForgetTruthRatio(ratios)
	} else {
		sc.TruthRatio = RetainTruthRatio(ratios)
	}
	return sc
}

// ModelUtility is TOFU's "Model Utility": the harmonic mean of the nine
// numbers of the retain, real-author and world-fact sets. NaN when one is.
func ModelUtility(retain, realAuthors, worldFacts TOFUScores) float64 {
	var values []float64
	for _, s := range []TOFUScores{retain, realAuthors, worldFacts} {
		values = append(values, s.Prob, s.RougeL, s.TruthRatio)
	}
	return HarmonicMean(values)
}
