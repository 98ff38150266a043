// Package metrics holds the text and likelihood metrics that cmc eval
// reports: ROUGE-L as Google's rouge_score computes it (with NLTK's Porter
// stemmer, as TOFU uses it), TOFU's truth ratio and answer probabilities,
// and negative log-likelihood and perplexity. All functions are pure: the
// caller gets log-probabilities from a model and passes them in.
package metrics

import "strings"

// Score is a precision, recall and F-measure triple.
type Score struct {
	Precision, Recall, F float64
}

// Tokenize splits text into ROUGE tokens the way rouge_score's default
// tokenizer does: lowercase, every run of characters other than a-z and
// 0-9 is a separator (so "don't" is "don" and "t", and letters with
// accents separate words), and with stem set, words longer than three
// letters are Porter-stemmed.
func Tokenize(text string, stem bool) []string {
	tokens := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	})
	if stem {
		for i, t := range tokens {
			if len(t) > 3 {
				tokens[i] = Stem(t)
			}
		}
	}
	return tokens
}

// RougeL is ROUGE-L between a reference text and a candidate (a model's
// output): with L the length of their longest common token subsequence,
// precision is L over the candidate's tokens, recall L over the
// reference's, F their harmonic mean. Either text without tokens scores 0.
func RougeL(reference, candidate string, stem bool) Score {
	ref, cand := Tokenize(reference, stem), Tokenize(candidate, stem)
	if len(ref) == 0 || len(cand) == 0 {
		return Score{}
	}
	lcs := float64(lcsLength(ref, cand))
	s := Score{Precision: lcs / float64(len(cand)), Recall: lcs / float64(len(ref))}
	if s.Precision+s.Recall > 0 {
		s.F = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
	}
	return s
}

// RougeLRecall is TOFU's ROUGE score: ROUGE-L recall with stemming, the
// share of the reference answer that the generated answer reproduces in
// order.
func RougeLRecall(reference, candidate string) float64 {
	return RougeL(reference, candidate, true).Recall
}

// lcsLength is the length of the longest common subsequence of a and b, by
// dynamic programming over two rows.
func lcsLength(a, b []string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
