package llama_test

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/llama"
)

// randomF32Model writes a small random Llama model in F32 with the
// stories260K vocabulary. Every matrix row is a multiple of 256 long
// (dim 256, hidden 512), as K-quants need.
func randomF32Model(t *testing.T, dir string) string {
	t.Helper()
	vocab := filepath.Join("../../shared/fixtures", "models/stories260K/stories260K.gguf")
	if _, err := os.Stat(vocab); err != nil {
		testfixture.Missing(t, "fixture %s: %v", vocab, err)
	}
	tok, err := gguf.Open(vocab)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	m, err := delta.New(delta.Config{Dim: 256, HiddenDim: 512, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 512, SeqLen: 128}, 7)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "random-f32.gguf")
	if err := m.ExportGGUF(path, delta.ExportOptions{Tokenizer: tok, Name: "random"}); err != nil {
		t.Fatal(err)
	}
	return path
}

// logits runs path in llama.cpp on a fixed prompt and returns the logits
// of every position.
func logits(t *testing.T, path string) []float32 {
	t.Helper()
	m, err := llama.LoadModel(path, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, err := m.NewContext(llama.ContextParams{Size: 64, Threads: 1, KVF32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	ids, err := m.Vocab().Tokenize("Once upon a time there was a girl", true, false)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(ids)*ctx.VocabSize())
	if err := ctx.Decode(ids, llama.OutputAll, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQuantize quantizes a random F32 model with llama.cpp's quantizer,
// checks the tensor types written, loads the result and compares its
// logits with the F32 model's.
func TestQuantize(t *testing.T) {
	dir := t.TempDir()
	in := randomF32Model(t, dir)
	ref := logits(t, in)
	var spread float64
	for _, v := range ref {
		spread = max(spread, math.Abs(float64(v)))
	}
	worst := map[string]float64{}
	for _, tc := range []struct {
		typ string
		// matrices: the types llama.cpp gives the weight matrices (at least
		// the first must occur); maxRel bounds the largest logit error
		// relative to the largest |logit|.
		matrices []gguf.TensorType
		maxRel   float64
	}{
		{"Q8_0", []gguf.TensorType{gguf.TypeQ8_0}, 0.05},
		{"Q4_K_M", []gguf.TensorType{gguf.TypeQ4_K, gguf.TypeQ6_K}, 0.3},
		{"IQ4_XS", []gguf.TensorType{gguf.TypeIQ4_XS, gguf.TypeQ6_K, gguf.TypeQ4_K, gguf.TypeQ5_K}, 0.3},
		{"Q4_0", []gguf.TensorType{gguf.TypeQ4_0, gguf.TypeQ6_K}, 0.3},
		{"Q5_K_M", []gguf.TensorType{gguf.TypeQ5_K, gguf.TypeQ6_K}, 0.2},
		{"Q6_K", []gguf.TensorType{gguf.TypeQ6_K}, 0.1},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			ft, err := llama.ParseFileType(strings.ToLower(tc.typ))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, tc.typ+".gguf")
			var last, total int
			err = llama.Quantize(in, out, ft, llama.QuantizeOptions{Threads: 1, Progress: func(d, n int) { last, total = d, n }})
			if err != nil {
				t.Fatal(err)
			}
			if total == 0 || last != total {
				t.Errorf("progress ended at %d of %d tensors", last, total)
			}
			f, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[gguf.TensorType]bool{}
			for _, ti := range f.Tensors {
				switch {
				case len(ti.Shape) == 1 || ti.Shape[1] == 1:
					if ti.Type != gguf.TypeF32 {
						t.Errorf("vector %s is %s, want F32", ti.Name, ti.Type)
					}
				case !slices.Contains(tc.matrices, ti.Type):
					t.Errorf("matrix %s is %s, want one of %v", ti.Name, ti.Type, tc.matrices)
				default:
					seen[ti.Type] = true
				}
			}
			f.Close()
			if !seen[tc.matrices[0]] {
				t.Errorf("no matrix is %s; types %v", tc.matrices[0], seen)
			}
			got := logits(t, out)
			var w float64
			for i := range ref {
				w = max(w, math.Abs(float64(got[i]-ref[i])))
			}
			worst[tc.typ] = w
			t.Logf("%s: max |logit - F32 logit| %.3g (largest |logit| %.3g)", tc.typ, w, spread)
			if w > tc.maxRel*spread || w == 0 {
				t.Errorf("%s: max logit difference %.3g against F32, want in (0, %.3g]", tc.typ, w, tc.maxRel*spread)
			}
		})
	}
	// Eight bits per weight are closer to F32 than four and a half.
	if !(worst["Q8_0"] < worst["Q4_K_M"]) {
		t.Errorf("Q8_0 differs from F32 by %.3g, Q4_K_M by %.3g: want Q8_0 closer", worst["Q8_0"], worst["Q4_K_M"])
	}
}

// TestQuantizeErrors: what llama.cpp refuses, and what cmc refuses before
// it, ends in an error that says why, and leaves no file behind.
func TestQuantizeErrors(t *testing.T) {
	dir := t.TempDir()
	in := randomF32Model(t, dir)
	q8, _ := llama.ParseFileType("Q8_0")
	q4, _ := llama.ParseFileType("Q4_K_M")
	once := filepath.Join(dir, "q8.gguf")
	if err := llama.Quantize(in, once, q8, llama.QuantizeOptions{Threads: 1}); err != nil {
		t.Fatal(err)
	}
	notGGUF := filepath.Join(dir, "text.gguf")
	if err := os.WriteFile(notGGUF, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		in, out string
		typ     llama.FileType
		want    string
	}{
		"requantize": {once, filepath.Join(dir, "q4.gguf"), q4, "requantizing from type q8_0 is disabled"},
		"not gguf":   {notGGUF, filepath.Join(dir, "x.gguf"), q8, notGGUF},
		"in place":   {in, in, q8, "would overwrite the input"},
		"no type":    {in, filepath.Join(dir, "y.gguf"), llama.FileType{}, "no file type"},
	} {
		err := llama.Quantize(tc.in, tc.out, tc.typ, llama.QuantizeOptions{Threads: 1})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.want)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"q8.gguf", "random-f32.gguf", "text.gguf"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %v after the failures, want %v", names, want)
	}
	if err := llama.Quantize(once, filepath.Join(dir, "q4.gguf"), q4, llama.QuantizeOptions{Threads: 1, AllowRequantize: true}); err != nil {
		t.Errorf("requantize allowed: %v", err)
	}

	for name, want := range map[string]string{"IQ2_XXS": "importance matrix", "Q9_K": "unknown quantization type"} {
		if _, err := llama.ParseFileType(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFileType(%s): %v, want an error mentioning %q", name, err, want)
		}
	}
}
