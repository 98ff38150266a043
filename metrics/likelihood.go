package metrics

import "math"

// MeanNLL is the average negative log-likelihood per token (in nats), or
// NaN when there are no tokens.
func MeanNLL(sumNLL float64, tokens int) float64 {
	if tokens <= 0 {
		return math.NaN()
	}
	return sumNLL / float64(tokens)
}

// Perplexity is exp of the mean negative log-likelihood per token, or NaN
// when there are no tokens.
func Perplexity(sumNLL float64, tokens int) float64 {
	return math.Exp(MeanNLL(sumNLL, tokens))
}

// MeanLogProb is the length-normalised log-probability of an answer: the
// mean of its tokens' log-probabilities, or NaN for no tokens. TOFU
// compares answers of different lengths by this number (the negative of its
// "avg loss").
func MeanLogProb(logProbs []float64) float64 {
	if len(logProbs) == 0 {
		return math.NaN()
	}
	sum := 0.0
	for _, lp := range logProbs {
		sum += lp
	}
	return sum / float64(len(logProbs))
}

// AnswerProbability is the length-normalised probability of an answer,
// P(answer)^(1/tokens) = exp(mean log-prob): TOFU's "Prob." for the forget
// and retain sets. NaN for no tokens.
func AnswerProbability(logProbs []float64) float64 {
	return math.Exp(MeanLogProb(logProbs))
}
