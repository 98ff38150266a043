package delta

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/llama"
)

const tinyStories = fixtures + "datasets/tinystories/tinystories_val_sample.txt"

// storyTokens tokenizes the stories (one per line) of the TinyStories sample
// with stories260K's vocabulary, as llama.cpp does it, into two streams:
// the first nTrain stories and the last nHeld, each story after a BOS.
func storyTokens(t *testing.T, nTrain, nHeld int) (train, held []int32) {
	t.Helper()
	needFile(t, stories260KGGUF)
	vm, err := llama.LoadModel(stories260KGGUF, llama.ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	needFile(t, tinyStories)
	b, err := os.ReadFile(tinyStories)
	if err != nil {
		t.Fatal(err)
	}
	var stories []string
	for _, s := range strings.Split(string(b), "\n") {
		if s = strings.TrimSpace(s); s != "" {
			stories = append(stories, s)
		}
	}
	if len(stories) < nTrain+nHeld {
		t.Fatalf("%s: %d stories, want %d", tinyStories, len(stories), nTrain+nHeld)
	}
	for _, s := range stories[:nTrain] {
		if train, err = vm.Vocab().AppendTokens(train, s, true, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stories[len(stories)-nHeld:] {
		if held, err = vm.Vocab().AppendTokens(held, s, true, false); err != nil {
			t.Fatal(err)
		}
	}
	return train, held
}

// heldOutLoss is the mean next-token loss over consecutive windows of T+1 tokens.
func heldOutLoss(m *Model, tokens []int32, T int) float64 {
	var sum float64
	n := 0
	for i := 0; i+T+1 <= len(tokens); i += T {
		logits := m.Forward(tokens[i:i+T], 1, T)
		sum += CrossEntropy(m.Pool, logits, tokens[i+1:i+T+1], m.Config.VocabSize)
		n++
	}
	return sum / float64(n)
}

// unigramEntropy is the cross-entropy of the held-out tokens under the
// (add-one smoothed) token frequencies of the training tokens: the best a
// model that ignores context can do.
func unigramEntropy(train, held []int32, vocab int) float64 {
	counts := make([]float64, vocab)
	for _, id := range train {
		counts[id]++
	}
	total := float64(len(train) + vocab)
	var h float64
	for _, id := range held {
		h -= math.Log((counts[id] + 1) / total)
	}
	return h / float64(len(held))
}

// A few hundred AdamW steps on TinyStories take a small random model from
// chance level (ln 512) to well below what any context-free model can reach
// on held-out stories.
func TestTrainingLowersHeldOutLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for a few seconds; skipped with -short")
	}
	train, held := storyTokens(t, 600, 40)
	cfg := Config{Dim: 64, HiddenDim: 128, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 512, SeqLen: 64, SharedClassifier: true}
	m, err := New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	m.Pool = kernels.NewPool(0)
	defer m.Pool.Close()

	const B, T, steps = 4, 64, 200
	before := heldOutLoss(m, held, T)
	o := NewAdamW(m, AdamWConfig{LR: 3e-3, MinLR: 3e-4, WarmupSteps: 20, DecaySteps: steps, WeightDecay: 0.1, ClipNorm: 1})
	rng := rand.New(rand.NewPCG(1, 1))
	ids, targets := make([]int32, B*T), make([]int32, B*T)
	for range steps {
		for b := range B {
			i := rng.IntN(len(train) - T - 1)
			copy(ids[b*T:(b+1)*T], train[i:i+T])
			copy(targets[b*T:(b+1)*T], train[i+1:i+T+1])
		}
		m.ZeroGrad()
		logits := m.Forward(ids, B, T)
		CrossEntropy(m.Pool, logits, targets, cfg.VocabSize)
		m.Backward(logits)
		o.Update(m, 1)
	}
	after := heldOutLoss(m, held, T)
	unigram := unigramEntropy(train, held, cfg.VocabSize)
	t.Logf("held-out loss %.3f → %.3f after %d steps; unigram %.3f", before, after, steps, unigram)
	if math.Abs(before-math.Log(512)) > 0.1 {
		t.Errorf("initial loss %.3f, want ≈ ln 512 = %.3f", before, math.Log(512))
	}
	if after > unigram-0.3 {
		t.Errorf("held-out loss %.3f after training, want below the unigram entropy %.3f by 0.3", after, unigram)
	}
}
