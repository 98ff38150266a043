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
