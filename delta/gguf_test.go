package delta

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/gguf"
)

func load260KGGUF(t testing.TB) *Model {
	t.Helper()
	needFile(t, stories260KGGUF)
	m, err := LoadGGUF(stories260KGGUF)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGoldenGGUF(t *testing.T) {
	g := loadGolden(t)
	m := load260KGGUF(t)
	if !m.Config.SharedClassifier {
		t.Error("stories260K.gguf's output.weight copies token_embd.weight: want a shared classifier")
	}
	checkGoldenForward(t, m, g)
	checkGoldenGreedy(t, m, g)
}

// The same weights in both formats: llama.cpp's layout needs no permutation.
func TestGGUFMatchesLlama2C(t *testing.T) {
	bin, gg := load260KBin(t), load260KGGUF(t)
	want := bin.Config
	want.SeqLen, want.RopeTheta, want.NormEps = 2048, 10000, gg.Config.NormEps
	if gg.Config != want || math.Abs(gg.Config.NormEps-1e-5) > 1e-9 {
		t.Fatalf("GGUF config %+v, want %+v", gg.Config, want)
	}
	if !slices.Equal(bin.Params, gg.Params) {
		t.Fatal("GGUF and llama2.c parameters differ")
	}
}

func TestExportGGUF(t *testing.T) {
	g := loadGolden(t)
	m := load260KBin(t)
	needFile(t, stories260KGGUF)
	src, err := gguf.Open(stories260KGGUF)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	vocab, err := src.Vocab()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opt  ExportOptions
	}{
		{"f32-vocab.gguf", ExportOptions{Vocab: vocab}},
		{"f32-copied.gguf", ExportOptions{Tokenizer: src}},
		{"f16.gguf", ExportOptions{Tokenizer: src, F16: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := m.ExportGGUF(path, tc.opt); err != nil {
				t.Fatal(err)
			}
			checkLlamaCppKeys(t, path, m.Config)
			back, err := LoadGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			if !back.Config.SharedClassifier || back.Config.VocabSize != 512 || back.Config.NKVHeads != 4 {
				t.Fatalf("re-imported config %+v", back.Config)
			}
			if !tc.opt.F16 {
				if !slices.Equal(back.Params, m.Params) {
					t.Fatal("F32 export changed the parameters")
				}
				checkGoldenForward(t, back, g)
				return
			}
			// float16 rounds the weights: logits move a little, the
			// predictions do not.
			V := m.Config.VocabSize
			logits := back.Forward(g.PromptIDs, 1, len(g.PromptIDs))
			for p, want := range g.Logits {
				row := logits[p*V : (p+1)*V]
				if d := maxAbsDiff(row, want); d > 0.05 || argmax(row) != argmax(want) {
					t.Errorf("F16 position %d: max |diff| %g, argmax %d, want ≤ 0.05 and %d", p, d, argmax(row), argmax(want))
				}
			}
		})
	}
}

// A tokenizer of another size than the model's vocabulary is refused.
func TestExportGGUFVocabMismatch(t *testing.T) {
	m, err := New(Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, NKVHeads: 2, VocabSize: 300, SharedClassifier: true}, 1)
	if err != nil {
		t.Fatal(err)
	}
	needFile(t, stories260KGGUF)
	src, err := gguf.Open(stories260KGGUF)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	v, err := src.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bad.gguf")
	for _, opt := range []ExportOptions{{Tokenizer: src}, {Vocab: v}, {}} {
		if err := m.ExportGGUF(path, opt); err == nil {
			t.Errorf("export with %+v accepted a 512-token vocabulary for 300 embeddings", opt)
		}
	}
}

// checkLlamaCppKeys checks the metadata llama.cpp's llama architecture
// reads when it loads a model.
func checkLlamaCppKeys(t *testing.T, path string, c Config) {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if a := f.Architecture(); a != "llama" {
		t.Errorf("general.architecture %q", a)
	}
	for _, key := range []string{
		"general.file_type", "llama.context_length", "llama.embedding_length", "llama.block_count",
		"llama.feed_forward_length", "llama.rope.dimension_count", "llama.attention.head_count",
		"llama.attention.head_count_kv", "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base",
		"llama.vocab_size", "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
		"tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
	} {
		if _, ok := f.Lookup(key); !ok {
			t.Errorf("%s: key %s missing", path, key)
		}
	}
	p, err := f.LlamaParams()
	if err != nil {
		t.Fatal(err)
	}
	if p.EmbeddingLength != c.Dim || p.BlockCount != c.NLayers || p.HeadCountKV != c.NKVHeads || p.VocabSize != c.VocabSize {
		t.Errorf("%s: hyper-parameters %+v for config %+v", path, p, c)
	}
	if _, ok := f.Tensor("output.weight"); ok {
		t.Errorf("%s: tied classifier written as output.weight", path)
	}
}

// quantizeQ8_0 encodes x (a multiple of 32 values) as ggml's Q8_0 blocks: a
// float16 scale d = max|x|/127, then 32 int8 values round(x/d).
func quantizeQ8_0(x []float32) []byte {
	var out []byte
	for b := 0; b < len(x); b += 32 {
		block := x[b : b+32]
		var amax float64
		for _, v := range block {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		d := amax / 127
		h := gguf.F32ToF16(float32(d))
		out = append(out, byte(h), byte(h>>8))
		for _, v := range block {
			q := 0.0
			if d != 0 {
				q = math.Round(float64(v) / d)
			}
			out = append(out, byte(int8(q)))
		}
	}
	return out
}

// A GGUF whose matrices are Q8_0 (those with rows of whole 32-value blocks)
// loads by dequantising and predicts like the original.
func TestLoadGGUFQ8_0(t *testing.T) {
	g := loadGolden(t)
	m := load260KBin(t)
	needFile(t, stories260KGGUF)
	src, err := gguf.Open(stories260KGGUF)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	w := gguf.NewWriter()
	w.CopyKV(src, nil)
	quantized := 0
	for _, ts := range m.Tensors {
		shape, data := ggufShape(ts), m.TensorData(ts)
		if ts.Matrix && shape[0]%32 == 0 {
			err = w.AddTensor(ggufName(ts), gguf.TypeQ8_0, shape, quantizeQ8_0(data))
			quantized++
		} else {
			err = w.AddTensorF32(ggufName(ts), shape, data)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "q8.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	q, err := LoadGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	if quantized < 20 || !q.Config.SharedClassifier {
		t.Fatalf("%d tensors quantised, shared classifier %v", quantized, q.Config.SharedClassifier)
	}
	V := m.Config.VocabSize
	logits := q.Forward(g.PromptIDs, 1, len(g.PromptIDs))
	for p, want := range g.Logits {
		row := logits[p*V : (p+1)*V]
		if d := maxAbsDiff(row, want); d > 0.3 || d == 0 || argmax(row) != argmax(want) {
			t.Errorf("Q8_0 position %d: max |diff| %g, argmax %d, want 0 < diff ≤ 0.3 and %d", p, d, argmax(row), argmax(want))
		}
	}
}

// A tensor of the wrong shape, or a missing one, is named in the error.
func TestLoadGGUFErrors(t *testing.T) {
	m := load260KBin(t)
	needFile(t, stories260KGGUF)
	src, err := gguf.Open(stories260KGGUF)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	write := func(name string, edit func(ts Tensor) (shape []uint64, skip bool)) string {
		w := gguf.NewWriter()
		w.CopyKV(src, nil)
		for _, ts := range m.Tensors {
			shape, skip := edit(ts)
			if skip {
				continue
			}
			data := m.TensorData(ts)[:shape[0]*shapeRows(shape)]
			if err := w.AddTensorF32(ggufName(ts), shape, data); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(t.TempDir(), name)
		if err := w.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	wrong := write("wrong.gguf", func(ts Tensor) ([]uint64, bool) {
		if ts.Name == "wk" && ts.Layer == 2 {
			return []uint64{64, 16}, false
		}
		return ggufShape(ts), false
	})
	if _, err := LoadGGUF(wrong); err == nil || !strings.Contains(err.Error(), "blk.2.attn_k.weight") || !strings.Contains(err.Error(), "[64 32]") {
		t.Errorf("wrong shape: error %v, want one naming blk.2.attn_k.weight and [64 32]", err)
	}
	missing := write("missing.gguf", func(ts Tensor) ([]uint64, bool) {
		return ggufShape(ts), ts.Name == "w3" && ts.Layer == 4
	})
	if _, err := LoadGGUF(missing); err == nil || !strings.Contains(err.Error(), "blk.4.ffn_up.weight") {
		t.Errorf("missing tensor: error %v, want one naming blk.4.ffn_up.weight", err)
	}
}

// shapeRows is the product of a GGUF shape's dimensions after the first.
func shapeRows(shape []uint64) uint64 {
	n := uint64(1)
	for _, d := range shape[1:] {
		n *= d
	}
	return n
}
