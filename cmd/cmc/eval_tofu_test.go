package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/evaluate"
	"github.com/cmc-dev/cmc/llama"
)

// Small TOFU sets in TinyStories' words, so that stories260K's greedy
// answers share words with them and none of the nine utility numbers is 0.
var tofuTestSets = map[string]string{
	"forget": `{"question":"Who was Lily?","answer":"Lily was a little girl who loved to play outside.","paraphrased_answer":"Lily was a girl who liked to play in the park.","perturbed_answer":["Lily was a big dog who liked to eat.","Lily was a red car that went fast."]}
{"question":"What did Tom find?","answer":"Tom found a big red ball in the park.","paraphrased_answer":"In the park, Tom found a red ball.","perturbed_answer":["Tom found a small cat under the tree.","Tom found a shiny toy in the box."]}
{"question":"Where did the bird fly?","answer":"The bird flew up to the sky and was happy.","paraphrased_answer":"The happy bird flew to the sky.","perturbed_answer":["The bird went to the sea.","The bird sat on the house and was sad."]}
`,
	"retain": `{"question":"What did Sue like?","answer":"Sue liked to play with her friends in the park.","paraphrased_answer":"Sue loved playing in the park with friends.","perturbed_answer":["Sue liked to sleep in her bed all day.","Sue liked to eat big red apples."]}
{"question":"Who was Ben?","answer":"Ben was a little boy who had a big dog.","paraphrased_answer":"Ben was a boy with a big dog.","perturbed_answer":["Ben was a tall man with a car.","Ben was a cat who had a toy."]}
`,
	"real-authors": `{"question":"Who said, let's play?","answer":"The little girl said, let's play.","perturbed_answer":["The big dog said it.","The old tree said it."]}
{"question":"Who was happy?","answer":"The little boy was very happy.","perturbed_answer":["The sad cat was happy.","Nobody was happy."]}
`,
	"world-facts": `{"question":"What color is the sky?","answer":"The sky is blue and the sun is happy.","perturbed_answer":["The sky is green.","The sky is red and sad."]}
{"question":"Where do fish live?","answer":"Fish live in the water and they like to swim.","perturbed_answer":["Fish live in the tree.","Fish live in a big house."]}
`,
}

// TestEvalTOFUHeadlineNumbers runs `cmc eval --task tofu` on the four sets
// with a reference and checks model utility and forget quality against
// values worked out here, by TOFU's formulas, from the per-question records
// of --json; it checks those records against a plain decode of the text,
// and runs with stories260K as its own delta (same template), whose greedy
// answers must be the model's own.
func TestEvalTOFUHeadlineNumbers(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	dir := t.TempDir()
	args := []string{"eval", "--model", model, "--delta", model, "--delta-template", "qa", "--template", "qa",
		"--task", "tofu", "--threads", "1", "--max-tokens", "48"}
	for _, set := range []string{"forget", "retain", "real-authors", "world-facts"} {
		path := filepath.Join(dir, set+".json")
		if err := os.WriteFile(path, []byte(tofuTestSets[set]), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data", set+"="+path)
	}
	// A reference model's forget set, by hand: three truth ratios (and a
	// question without one, which does not count).
	ref := filepath.Join(dir, "ref.json")
	refDoc := `{"task":"tofu","files":[{"file":"forget10_perturbed.json","set":"forget","items":[
		{"user":{"truth_ratio":0.5}},{"user":{"truth_ratio":null}},{"user":{"truth_ratio":1.5}},{"user":{"truth_ratio":3}}]}]}`
	if err := os.WriteFile(ref, []byte(refDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.json")
	args = append(args, "--reference", ref, "--json", out)
	stdout, err := cmcCommand(args...).Output()
	if err != nil {
		t.Fatalf("cmc eval: %v\n%s", err, stderrOf(err))
	}
	var doc evaluate.Doc
	if b, err := os.ReadFile(out); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}

	// TOFU's numbers, from the records.
	type column func(evaluate.Item) evaluate.Scores
	columns := map[string]column{"user": func(it evaluate.Item) evaluate.Scores { return it.User }, "user_delta": func(it evaluate.Item) evaluate.Scores { return it.Delta }}
	for name, col := range columns {
		var utility []float64 // prob, ROUGE, truth ratio of the three sets
		var forgetRatios []float64
		for _, f := range doc.Files {
			answerBase := f.Set == "real-authors" || f.Set == "world-facts"
			var probs, rouges, ratios []float64
			for _, it := range f.Items {
				s := col(it)
				a := float64(s.AnswerLogProb)
				var perturbed float64
				sumP := 0.0
				for _, p := range s.PerturbedLogProbs {
					perturbed += float64(p) / float64(len(s.PerturbedLogProbs))
					sumP += math.Exp(float64(p))
				}
				prob, base := math.Exp(a), float64(s.ParaphrasedLogProb)
				if answerBase {
					prob, base = math.Exp(a)/(math.Exp(a)+sumP), a
				}
				r := math.Exp(perturbed - base)
				if !near(float64(s.Prob), prob) || !near(float64(s.TruthRatio), r) {
					t.Errorf("%s %s %s: prob %v, truth ratio %v; by hand %v, %v", name, f.Set, it.Source, s.Prob, s.TruthRatio, prob, r)
				}
				probs, rouges = append(probs, prob), append(rouges, float64(s.RougeL))
				if f.Set == "forget" {
					ratios = append(ratios, min(r, 1/r))
					forgetRatios = append(forgetRatios, r)
				} else {
					ratios = append(ratios, max(0, 1-r))
				}
			}
			if f.Set != "forget" {
				utility = append(utility, average(probs), average(rouges), average(ratios))
			}
		}
		sumInv := 0.0
		for _, v := range utility {
			if v <= 0 {
				t.Fatalf("%s: a utility number is %v: the test input should make all nine positive (%v)", name, v, utility)
			}
			sumInv += 1 / v
		}
		wantMU := 9 / sumInv
		wantFQ := ksPValueByEnumeration(forgetRatios, []float64{0.5, 1.5, 3})
		gotMU, gotFQ := resultOf(t, doc, "model utility", name), resultOf(t, doc, "forget quality", name)
		if len(utility) != 9 || !near(gotMU, wantMU) || !near(gotFQ, wantFQ) {
			t.Errorf("%s: model utility %v, forget quality %v; by hand %v (of %d numbers), %v", name, gotMU, gotFQ, wantMU, len(utility), wantFQ)
		}
		if name == "user" && (!strings.Contains(string(stdout), fmt.Sprintf("%.4f", wantMU)) || !strings.Contains(string(stdout), fmt.Sprintf("%.4f", wantFQ))) {
			t.Errorf("the table does not print model utility %.4f and forget quality %.4f:\n%s", wantMU, wantFQ, stdout)
		}
	}

	// The records: the answer's log-prob is that of one plain decode of
	// BOS + "Question: q\nAnswer: a" + EOS, and the model as its own delta
	// (argmax of log_softmax(x) + x is argmax of x) answers as it does.
	m, err := llama.LoadModel(model, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, err := m.NewContext(llama.ContextParams{Size: 512, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	for _, f := range doc.Files {
		if len(f.Items) == 0 || f.Examples != len(f.Items) || len(f.Skipped) != 0 {
			t.Fatalf("%s: %d items, %d examples, skipped %v", f.File, len(f.Items), f.Examples, f.Skipped)
		}
		for _, it := range f.Items {
			if it.User.Generation != it.Delta.Generation || it.User.Generation == "" {
				t.Errorf("%s: greedy answers differ with the model as its own delta:\n%q\n%q", it.Source, it.User.Generation, it.Delta.Generation)
			}
		}
		// Every answer of the first question, each scored after the one
		// before it by rewinding to the prompt.
		it := f.Items[0]
		examples, err := data.Read(f.File, data.FormatTOFU)
		if err != nil {
			t.Fatal(err)
		}
		ex := examples[0]
		got, gotDelta := []evaluate.Float{it.User.AnswerLogProb}, []evaluate.Float{it.Delta.AnswerLogProb}
		answers := []string{it.Answer}
		if ex.Paraphrased != "" {
			got, gotDelta, answers = append(got, it.User.ParaphrasedLogProb), append(gotDelta, it.Delta.ParaphrasedLogProb), append(answers, ex.Paraphrased)
		}
		got, gotDelta, answers = append(got, it.User.PerturbedLogProbs...), append(gotDelta, it.Delta.PerturbedLogProbs...), append(answers, ex.Perturbed...)
		for i, a := range answers {
			want, wantDelta := meanAnswerLogProb(t, ctx, "Question: "+it.Question+"\nAnswer: ", a)
			if math.Abs(float64(got[i])-want) > 1e-3 {
				t.Errorf("%s: log-prob of %q is %v, a plain decode gives %v", it.Source, a, got[i], want)
			}
			// The delta runs in Go with a float32 cache, llama.cpp with a
			// float16 one: their logits differ by up to about 1e-2.
			if math.Abs(float64(gotDelta[i])-wantDelta) > 2e-2 {
				t.Errorf("%s: log-prob of %q with the model as its own delta is %v, a plain decode gives %v", it.Source, a, gotDelta[i], wantDelta)
			}
		}
	}
}

// meanAnswerLogProb decodes BOS + prompt + answer + EOS in one pass and
// averages the log-probabilities of the answer's tokens and EOS: the
// model's own, and with the model as its own delta at alpha 1,
// log_softmax(log_softmax(x) + x).
func meanAnswerLogProb(t *testing.T, ctx *llama.Context, prompt, answer string) (alone, controlled float64) {
	t.Helper()
	v := ctx.Model().Vocab()
	joined, split, err := data.TokenizeJoined(v, prompt, answer)
	if err != nil {
		t.Fatal(err)
	}
	tokens := append(append([]int32{v.BOS()}, joined...), v.EOS())
	n := ctx.VocabSize()
	logits := make([]float32, len(tokens)*n)
	if err := ctx.SequenceLogits(tokens, logits); err != nil {
		t.Fatal(err)
	}
	count := 0
	logSoftmax := func(row []float64) {
		best := math.Inf(-1)
		for _, x := range row {
			best = max(best, x)
		}
		z := 0.0
		for _, x := range row {
			z += math.Exp(x - best)
		}
		for j := range row {
			row[j] -= best + math.Log(z)
		}
	}
	x, mixed := make([]float64, n), make([]float64, n)
	for i := 1 + split; i < len(tokens); i++ {
		for j, v := range logits[(i-1)*n : i*n] {
			x[j] = float64(v)
		}
		logSoftmax(x)
		for j, v := range logits[(i-1)*n : i*n] {
			mixed[j] = x[j] + float64(v)
		}
		logSoftmax(mixed)
		alone += x[tokens[i]]
		controlled += mixed[tokens[i]]
		count++
	}
	return alone / float64(count), controlled / float64(count)
}

// ksPValueByEnumeration is the exact two-sample KS p-value: the share of
// all ways to deal the pooled values into samples of len(a) and len(b)
// whose distance is at least that of a and b.
func ksPValueByEnumeration(a, b []float64) float64 {
	pool := append(append([]float64{}, a...), b...)
	m := len(a)
	dist := func(inA []bool) float64 {
		var x, y []float64
		for i, v := range pool {
			if inA[i] {
				x = append(x, v)
			} else {
				y = append(y, v)
			}
		}
		d := 0.0
		for _, v := range pool {
			d = max(d, math.Abs(cdf(x, v)-cdf(y, v)))
		}
		return d
	}
	observed := make([]bool, len(pool))
	for i := range m {
		observed[i] = true
	}
	d0 := dist(observed)
	hits, total := 0, 0
	for mask := 0; mask < 1<<len(pool); mask++ {
		inA := make([]bool, len(pool))
		k := 0
		for i := range pool {
			if mask&(1<<i) != 0 {
				inA[i] = true
				k++
			}
		}
		if k != m {
			continue
		}
		total++
		if dist(inA) >= d0-1e-12 {
			hits++
		}
	}
	return float64(hits) / float64(total)
}

func cdf(sample []float64, v float64) float64 {
	n := 0
	for _, x := range sample {
		if x <= v {
			n++
		}
	}
	return float64(n) / float64(len(sample))
}

func average(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

// resultOf is the value of the summary row whose metric starts with prefix.
func resultOf(t *testing.T, doc evaluate.Doc, prefix, column string) float64 {
	t.Helper()
	for _, r := range doc.Results {
		if r.File == "" && strings.HasPrefix(r.Metric, prefix) {
			if column == "user" {
				return float64(r.User)
			}
			return float64(r.Delta)
		}
	}
	t.Fatalf("no %q row in %+v", prefix, doc.Results)
	return 0
}

// stderrOf is what a failed command wrote on stderr.
func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
