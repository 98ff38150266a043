package metrics

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*max(1, math.Abs(b)) }

func TestLikelihood(t *testing.T) {
	// Two tokens with probabilities 1/2 and 1/8: mean log-prob
	// (ln 1/2 + ln 1/8)/2 = ln(1/4), so the normalised probability is 1/4.
	lp := []float64{math.Log(0.5), math.Log(0.125)}
	if got := MeanLogProb(lp); !near(got, math.Log(0.25)) {
		t.Errorf("MeanLogProb = %v, want ln 1/4", got)
	}
	if got := AnswerProbability(lp); !near(got, 0.25) {
		t.Errorf("AnswerProbability = %v, want 0.25", got)
	}
	// NLL 2 ln 4 over 2 tokens: mean ln 4, perplexity 4.
	if got := MeanNLL(2*math.Log(4), 2); !near(got, math.Log(4)) {
		t.Errorf("MeanNLL = %v", got)
	}
	if got := Perplexity(2*math.Log(4), 2); !near(got, 4) {
		t.Errorf("Perplexity = %v, want 4", got)
	}
	// A uniform model over 32000 tokens has perplexity 32000.
	if got := Perplexity(100*math.Log(32000), 100); !near(got, 32000) {
		t.Errorf("uniform Perplexity = %v, want 32000", got)
	}
	for name, v := range map[string]float64{
		"MeanNLL":           MeanNLL(1, 0),
		"Perplexity":        Perplexity(1, 0),
		"MeanLogProb":       MeanLogProb(nil),
		"AnswerProbability": AnswerProbability(nil),
	} {
		if !math.IsNaN(v) {
			t.Errorf("%s of no tokens = %v, want NaN", name, v)
		}
	}
}

func TestTruthRatio(t *testing.T) {
	// Paraphrase normalised probability 1/2; perturbed 1/4 and 1/16, whose
	// geometric mean is 1/8: R = (1/8)/(1/2) = 1/4.
	r := TruthRatio(math.Log(0.5), []float64{math.Log(0.25), math.Log(1.0 / 16)})
	if !near(r, 0.25) {
		t.Fatalf("TruthRatio = %v, want 0.25", r)
	}
	// The arithmetic mean (the paper's formula) would give (5/32)/(1/2).
	if near(r, 5.0/16) {
		t.Fatal("TruthRatio uses the arithmetic mean, TOFU's code the geometric one")
	}
	if got := TruthRatio(-1.5, []float64{-1.5, -1.5}); !near(got, 1) {
		t.Errorf("equal likelihoods: R = %v, want 1", got)
	}
	if got := TruthRatio(-1, nil); !math.IsNaN(got) {
		t.Errorf("no perturbed answers: R = %v, want NaN", got)
	}

	ratios := []float64{0.25, 1, 4, 0.5}
	// min(R, 1/R): 0.25, 1, 0.25, 0.5 -> mean 0.5.
	if got := ForgetTruthRatio(ratios); !near(got, 0.5) {
		t.Errorf("ForgetTruthRatio = %v, want 0.5", got)
	}
	// max(0, 1-R): 0.75, 0, 0, 0.5 -> mean 0.3125.
	if got := RetainTruthRatio(ratios); !near(got, 0.3125) {
		t.Errorf("RetainTruthRatio = %v, want 0.3125", got)
	}
	if !math.IsNaN(ForgetTruthRatio(nil)) || !math.IsNaN(RetainTruthRatio(nil)) {
		t.Error("summaries of no ratios are not NaN")
	}
}

func TestNormalizedAnswerProbability(t *testing.T) {
	// Correct 1/2, wrong 1/4 and 1/4: share 0.5/(0.5+0.25+0.25) = 1/2.
	got := NormalizedAnswerProbability(math.Log(0.5), []float64{math.Log(0.25), math.Log(0.25)})
	if !near(got, 0.5) {
		t.Errorf("got %v, want 0.5", got)
	}
	// Log-probabilities far below exp's range still give the right share:
	// exp(-1000) underflows to 0, the ratio exp(-1000)/exp(-1001) does not.
	got = NormalizedAnswerProbability(-1000, []float64{-1000 - math.Log(3)})
	if !near(got, 0.75) {
		t.Errorf("tiny probabilities: got %v, want 0.75", got)
	}
	if got := NormalizedAnswerProbability(-2, nil); got != 1 {
		t.Errorf("no wrong answers: got %v, want 1", got)
	}
}

func TestHarmonicMean(t *testing.T) {
	// 3 / (1/1 + 1/0.5 + 1/0.25) = 3 / 7.
	if got := HarmonicMean([]float64{1, 0.5, 0.25}); !near(got, 3.0/7) {
		t.Errorf("got %v, want 3/7", got)
	}
	if got := HarmonicMean([]float64{0.9, 0, 0.5}); got != 0 {
		t.Errorf("with a zero: got %v, want 0", got)
	}
	if !math.IsNaN(HarmonicMean(nil)) || !math.IsNaN(HarmonicMean([]float64{0.5, -1})) {
		t.Error("no values or a negative one: not NaN")
	}
}

// TestTOFUSets works TOFU's per-set numbers and Model Utility out by hand.
func TestTOFUSets(t *testing.T) {
	ln := math.Log
	retain := []TOFUItem{
		// Prob e^-1; R = exp(-2 - -1) = e^-1, summary 1 - e^-1.
		{Answer: -1, Paraphrased: -1, Perturbed: []float64{-2, -2}, RougeL: 0.5},
		// Prob e^-0.5; R = exp(mean(-1, -3) - -2) = 1, summary 0.
		{Answer: -0.5, Paraphrased: -2, Perturbed: []float64{-1, -3}, RougeL: 1},
		// No perturbed answers: no truth ratio, still a Prob and a ROUGE.
		{Answer: -0.5, Paraphrased: math.NaN(), RougeL: 0.75},
	}
	got := TOFURetain.Summarise(retain)
	want := TOFUScores{Prob: (math.Exp(-1) + 2*math.Exp(-0.5)) / 3, RougeL: 0.75, TruthRatio: (1 - math.Exp(-1)) / 2}
	if !near(got.Prob, want.Prob) || !near(got.RougeL, want.RougeL) || !near(got.TruthRatio, want.TruthRatio) {
		t.Errorf("retain: %+v, want %+v", got, want)
	}

	// The answer is the base: Prob 0.5/(0.5+0.25+0.25) = 0.5; R = 0.25/0.5.
	realAuthors := []TOFUItem{{Answer: ln(0.5), Paraphrased: math.NaN(), Perturbed: []float64{ln(0.25), ln(0.25)}, RougeL: 0.4}}
	ra := TOFURealAuthors.Summarise(realAuthors)
	if !near(ra.Prob, 0.5) || !near(ra.RougeL, 0.4) || !near(ra.TruthRatio, 0.5) {
		t.Errorf("real authors: %+v, want {0.5 0.4 0.5}", ra)
	}
	// Prob 0.2/(0.2+0.05+0.2) = 4/9; R = sqrt(0.05·0.2)/0.2 = 0.5. A
	// paraphrase, if a file had one, is not the base here.
	worldFacts := []TOFUItem{{Answer: ln(0.2), Paraphrased: ln(0.9), Perturbed: []float64{ln(0.05), ln(0.2)}, RougeL: 0.8}}
	wf := TOFUWorldFacts.Summarise(worldFacts)
	if !near(wf.Prob, 4.0/9) || !near(wf.RougeL, 0.8) || !near(wf.TruthRatio, 0.5) {
		t.Errorf("world facts: %+v, want {4/9 0.8 0.5}", wf)
	}

	// 9 / (1/p + 1/0.75 + 1/tr + 2 + 2.5 + 2 + 2.25 + 1.25 + 2).
	p, tr := want.Prob, want.TruthRatio
	wantMU := 9 / (1/p + 1/0.75 + 1/tr + 2 + 2.5 + 2 + 2.25 + 1.25 + 2)
	if mu := ModelUtility(got, ra, wf); !near(mu, wantMU) {
		t.Errorf("model utility %v, want %v", mu, wantMU)
	}
	if mu := ModelUtility(got, ra, TOFUScores{Prob: 1, RougeL: 1, TruthRatio: math.NaN()}); !math.IsNaN(mu) {
		t.Errorf("model utility with a missing truth ratio: %v, want NaN", mu)
	}

	// The forget set: R = 2 and 0.25 give min(R, 1/R) = 0.5 and 0.25.
	forget := []TOFUItem{
		{Answer: -1, Paraphrased: ln(0.1), Perturbed: []float64{ln(0.2)}},
		{Answer: -1, Paraphrased: ln(0.4), Perturbed: []float64{ln(0.1)}},
	}
	if fs := TOFUForget.Summarise(forget); !near(fs.TruthRatio, 0.375) {
		t.Errorf("forget truth ratio %v, want 0.375", fs.TruthRatio)
	}
	// Forget quality of ratios all below the reference's: D = 1, and 2 of
	// the C(6,3) = 20 orderings of 3 + 3 values reach it.
	if fq := ForgetQuality([]float64{0.1, 0.2, 0.3}, []float64{1, 2, 3}); !near(fq, 0.1) {
		t.Errorf("forget quality %v, want 2/20", fq)
	}
}
