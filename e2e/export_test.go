package e2e

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/llama"
)

// TestExportedStoriesRunsInLlamaCpp exports the delta engine's copy of
// stories260K (imported from the llama2.c checkpoint) to GGUF and runs it
// through llama.cpp: the logits must match the Go forward pass within
// llama.cpp's own tolerance, and greedy decoding must agree.
func TestExportedStoriesRunsInLlamaCpp(t *testing.T) {
	m, err := delta.LoadLlama2C(fixture(t, "models/stories260K/stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := gguf.Open(fixture(t, "models/stories260K/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	path := filepath.Join(t.TempDir(), "stories260K-export.gguf")
	if err := m.ExportGGUF(path, delta.ExportOptions{Tokenizer: tok}); err != nil {
		t.Fatal(err)
	}
	lm, err := llama.LoadModel(path, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Close()
	ctx, err := lm.NewContext(llama.ContextParams{Size: 128, Threads: 1, KVF32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()

	ids, err := lm.Vocab().Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	// Both sides generate 40 greedy tokens from the prompt; every step's
	// logits are compared.
	s := m.NewSession(128)
	goLogits := s.Decode(ids)
	cLogits, err := ctx.Append(ids)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for step := 0; step < 40; step++ {
		for i := range goLogits {
			worst = math.Max(worst, math.Abs(float64(goLogits[i]-cLogits[i])))
		}
		a, b := argmax(goLogits), argmax(cLogits)
		if a != b {
			t.Fatalf("step %d: Go picks %d, llama.cpp %d", step, a, b)
		}
		goLogits = s.Decode([]int32{a})
		if cLogits, err = ctx.Append([]int32{a}); err != nil {
			t.Fatal(err)
		}
	}
	if worst > 1e-2 {
		t.Fatalf("max |logit difference| %g, want <= 1e-2", worst)
	}
	t.Logf("max |Go - llama.cpp| over 41 positions: %.2g", worst)
}

// TestRandomLlama2VocabModelLoads writes a tiny random Llama model with the
// real Llama-2 vocabulary through gguf/ and runs it in llama.cpp.
func TestRandomLlama2VocabModelLoads(t *testing.T) {
	vf, err := gguf.Open(fixture(t, "gguf-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	m, err := delta.New(delta.Config{Dim: 32, HiddenDim: 64, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 32000, SeqLen: 128, SharedClassifier: false}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, f16 := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "random.gguf")
		if err := m.ExportGGUF(path, delta.ExportOptions{Tokenizer: vf, F16: f16}); err != nil {
			t.Fatal(err)
		}
		lm, err := llama.LoadModel(path, llama.ModelParams{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, err := lm.NewContext(llama.ContextParams{Size: 64, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := lm.Vocab().Tokenize("Hello world, this is a test.", true, false)
		logits := make([]float32, len(ids)*ctx.VocabSize())
		if err := ctx.Decode(ids, llama.OutputAll, logits); err != nil {
			t.Fatal(err)
		}
		if ctx.VocabSize() != 32000 {
			t.Fatalf("logits width %d, want 32000", ctx.VocabSize())
		}
		var spread float64
		for _, v := range logits {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("f16=%v: non-finite logit %v", f16, v)
			}
			spread = math.Max(spread, math.Abs(float64(v)))
		}
		if spread == 0 {
			t.Fatalf("f16=%v: all logits are zero", f16)
		}
		// The Go engine agrees on the last position.
		want := m.NewSession(64).Decode(ids)
		got := logits[(len(ids)-1)*32000:]
		tol := 1e-3
		if f16 {
			tol = 2e-2
		}
		for i := range want {
			if d := math.Abs(float64(want[i] - got[i])); d > tol {
				t.Fatalf("f16=%v: logit %d differs by %g", f16, i, d)
			}
		}
		ctx.Close()
		lm.Close()
	}
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}
