package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/vocab"
)

const (
	fixtures     = "../../shared/fixtures"
	stories260K  = fixtures + "/models/stories260K/stories260K.gguf"
	storiesBin   = fixtures + "/models/stories260K/stories260K.bin"
	tinyRandom   = fixtures + "/models/llama-2-tiny-random/llama-2-tiny-random.gguf"
	vocabFixture = fixtures + "/gguf-vocab"
)

// openFixture opens a fixture GGUF, skipping the test when it is absent.
func openFixture(t testing.TB, path string) *File {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		testfixture.Missing(t, "fixture %s not available: %v", path, err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// readFixture returns a fixture's bytes, skipping the test when it is absent.
func readFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		testfixture.Missing(t, "fixture %s not available: %v", path, err)
	}
	return b
}

// The expected values come from the table in fixtures/SOURCES.md (section 1)
// and, for UNK/PAD, from llama.cpp's reading of the same files.
func TestVocabFixtures(t *testing.T) {
	tests := []struct {
		file               string
		model, pre         string
		n, merges          int
		scores             bool
		bos, eos, unk, pad int32
		addBOS             bool
	}{
		{"ggml-vocab-llama-spm.gguf", "llama", "default", 32000, 0, true, 1, 2, 0, -1, true},
		{"ggml-vocab-phi-3.gguf", "llama", "default", 32064, 0, true, 1, 32000, 0, 32000, true},
		{"ggml-vocab-baichuan.gguf", "llama", "", 64000, 0, true, 1, 2, -1, 0, true},
		{"ggml-vocab-mistral-v1.gguf", "llama", "default", 32000, 0, true, 1, 2, 0, -1, true},
		{"ggml-vocab-gpt-2.gguf", "gpt2", "gpt-2", 50257, 50000, false, 50256, 50256, -1, -1, false},
		{"ggml-vocab-gpt-neox.gguf", "gpt2", "", 50432, 50009, false, 0, 0, 0, -1, false},
		{"ggml-vocab-mpt.gguf", "gpt2", "mpt", 50432, 50009, false, 0, 0, 0, -1, false},
		{"ggml-vocab-falcon.gguf", "gpt2", "falcon", 65024, 64784, false, 11, 11, -1, -1, false},
		{"ggml-vocab-starcoder.gguf", "gpt2", "starcoder", 49152, 48872, false, 0, 0, 0, -1, false},
		{"ggml-vocab-refact.gguf", "gpt2", "refact", 49216, 48891, false, 0, 0, 0, -1, false},
		{"ggml-vocab-deepseek-coder.gguf", "gpt2", "deepseek-coder", 32256, 31757, false, 32013, 32014, -1, 32014, true},
		{"ggml-vocab-deepseek-llm.gguf", "gpt2", "deepseek-llm", 102400, 99757, false, 100000, 100001, -1, 100001, true},
		{"ggml-vocab-bert-bge.gguf", "bert", "bert-bge", 30522, 0, false, -1, -1, 100, 0, false},
		{"ggml-vocab-dbrx.gguf", "gpt2", "dbrx", 100352, 100000, false, 100257, 100257, 100257, 100277, false},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			f := openFixture(t, filepath.Join(vocabFixture, tc.file))
			if f.Version != 3 || len(f.Tensors) != 0 || f.Alignment != DefaultAlignment {
				t.Errorf("version %d, %d tensors, alignment %d; want 3, 0, 32", f.Version, len(f.Tensors), f.Alignment)
			}
			v, err := f.Vocab()
			if err != nil {
				t.Fatal(err)
			}
			if v.Model != tc.model || v.Pre != tc.pre {
				t.Errorf("model/pre = %q/%q, want %q/%q", v.Model, v.Pre, tc.model, tc.pre)
			}
			if len(v.Pieces) != tc.n || len(v.Merges) != tc.merges {
				t.Errorf("%d tokens, %d merges; want %d, %d", len(v.Pieces), len(v.Merges), tc.n, tc.merges)
			}
			if (v.Scores != nil) != tc.scores || len(v.Types) != tc.n {
				t.Errorf("scores present %v (want %v), %d types (want %d)", v.Scores != nil, tc.scores, len(v.Types), tc.n)
			}
			if v.BOS != tc.bos || v.EOS != tc.eos || v.UNK != tc.unk || v.PAD != tc.pad {
				t.Errorf("BOS/EOS/UNK/PAD = %d/%d/%d/%d, want %d/%d/%d/%d", v.BOS, v.EOS, v.UNK, v.PAD, tc.bos, tc.eos, tc.unk, tc.pad)
			}
			if v.AddBOS != tc.addBOS || v.AddEOS {
				t.Errorf("AddBOS/AddEOS = %v/%v, want %v/false", v.AddBOS, v.AddEOS, tc.addBOS)
			}
		})
	}
}

func TestVocabPieces(t *testing.T) {
	f := openFixture(t, filepath.Join(vocabFixture, "ggml-vocab-llama-spm.gguf"))
	v, err := f.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	// Llama-2: <unk> <s> </s>, then the 256 byte tokens, then "▁▁".
	want := map[int]string{0: "<unk>", 1: "<s>", 2: "</s>", 3: "<0x00>", 258: "<0xFF>", 259: "▁▁"}
	for id, piece := range want {
		if v.Pieces[id] != piece {
			t.Errorf("token %d = %q, want %q", id, v.Pieces[id], piece)
		}
	}
	if v.Types[1] != vocab.TokenControl || v.Types[3] != vocab.TokenByte || v.Types[259] != vocab.TokenNormal || v.Types[0] != vocab.TokenUnknown {
		t.Errorf("types of 0,1,3,259 = %d,%d,%d,%d", v.Types[0], v.Types[1], v.Types[3], v.Types[259])
	}

	g := openFixture(t, filepath.Join(vocabFixture, "ggml-vocab-gpt-2.gguf"))
	gv, err := g.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	if gv.Pieces[50256] != "<|endoftext|>" || gv.Merges[0] != "Ġ t" {
		t.Errorf("gpt-2 token 50256 = %q, merge 0 = %q", gv.Pieces[50256], gv.Merges[0])
	}
}

func TestStories260K(t *testing.T) {
	f := openFixture(t, stories260K)
	p, err := f.LlamaParams()
	if err != nil {
		t.Fatal(err)
	}
	want := LlamaParams{
		Arch: "llama", ContextLength: 2048, EmbeddingLength: 64, BlockCount: 5, FeedForwardLength: 172,
		HeadCount: 8, HeadCountKV: 4, RopeDimensionCount: 8, VocabSize: 512,
		RopeFreqBase: 10000, RMSNormEps: float64(float32(1e-5)),
	}
	if p != want {
		t.Errorf("LlamaParams =\n%+v, want\n%+v", p, want)
	}
	if len(f.Tensors) != 48 {
		t.Fatalf("%d tensors, want 48", len(f.Tensors))
	}
	for _, ti := range f.Tensors {
		if ti.Type != TypeF32 {
			t.Errorf("tensor %s has type %v, want F32", ti.Name, ti.Type)
		}
	}
	v, err := f.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Pieces) != 512 || v.BOS != 1 || v.EOS != 2 || v.UNK != 0 || v.PAD != -1 || v.Pieces[1] != "<s>" {
		t.Errorf("vocab: %d tokens, BOS %d EOS %d UNK %d PAD %d, token 1 %q", len(v.Pieces), v.BOS, v.EOS, v.UNK, v.PAD, v.Pieces[1])
	}

	ti, ok := f.Tensor("blk.0.attn_k.weight")
	if !ok || len(ti.Shape) != 2 || ti.Shape[0] != 64 || ti.Shape[1] != 32 || ti.Bytes() != 64*32*4 {
		t.Errorf("blk.0.attn_k.weight = %+v, %v; want shape [64 32], 8192 bytes", ti, ok)
	}
}

// The llama2.c checkpoint holds the same F32 weights as the GGUF: its
// token embedding follows a 28-byte header. Comparing them checks
// ReadTensorF32's offsets and layout against an independent file.
func TestReadTensorF32MatchesLlama2c(t *testing.T) {
	f := openFixture(t, stories260K)
	bin := readFixture(t, storiesBin)
	emb, err := f.ReadTensorF32("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	if len(emb) != 512*64 {
		t.Fatalf("%d elements, want %d", len(emb), 512*64)
	}
	for i, x := range emb {
		y := math.Float32frombits(binary.LittleEndian.Uint32(bin[28+4*i:]))
		if x != y {
			t.Fatalf("token_embd.weight[%d] = %g, llama2.c checkpoint has %g", i, x, y)
		}
	}
	// The final RMS norm weight comes right after the 5 layers, before the
	// RoPE tables: 7 ints, then the tensors in llama2.c order.
	const dim, hidden, layers, kvDim, vocab = 64, 172, 5, 32, 512
	off := 28 + 4*(vocab*dim+layers*(dim+dim*dim+2*kvDim*dim+dim*dim+dim+3*hidden*dim))
	norm, err := f.ReadTensorF32("output_norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range norm {
		if y := math.Float32frombits(binary.LittleEndian.Uint32(bin[off+4*i:])); x != y {
			t.Fatalf("output_norm.weight[%d] = %g, llama2.c checkpoint has %g", i, x, y)
		}
	}
}

func TestReadTensorF32FromF16(t *testing.T) {
	f := openFixture(t, tinyRandom)
	ti, ok := f.Tensor("token_embd.weight")
	if !ok || ti.Type != TypeF16 || len(ti.Shape) != 2 || ti.Shape[0] != 8 || ti.Shape[1] != 32000 {
		t.Fatalf("token_embd.weight = %+v, want F16 [8 32000]", ti)
	}
	x, err := f.ReadTensorF32("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != 8*32000 {
		t.Fatalf("%d elements, want %d", len(x), 8*32000)
	}
	raw, err := f.ReadTensorBytes("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	var nonzero int
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1 {
			t.Fatalf("element %d = %g: random init weights should be small and finite", i, v)
		}
		if v != 0 {
			nonzero++
		}
		// Every f16 value is exactly representable in f32, so converting
		// back must give the stored bits.
		if h := binary.LittleEndian.Uint16(raw[2*i:]); F32ToF16(v) != h {
			t.Fatalf("element %d: f16 %#04x -> %g -> %#04x", i, h, v, F32ToF16(v))
		}
	}
	if nonzero < len(x)/2 {
		t.Errorf("only %d of %d elements are non-zero", nonzero, len(x))
	}
	norm, err := f.ReadTensorF32("blk.0.attn_norm.weight") // F32 in this file
	if err != nil || len(norm) != 8 {
		t.Errorf("attn_norm: %v, %d elements", err, len(norm))
	}
}

func TestF16Conversion(t *testing.T) {
	tests := []struct {
		f float32
		h uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},                 // largest finite half
		{float32(math.Inf(1)), 0x7c00},  //
		{float32(math.Inf(-1)), 0xfc00}, //
		{6.103515625e-05, 0x0400},       // smallest normal
		{5.960464477539063e-08, 0x0001}, // smallest subnormal
		{0.333251953125, 0x3555},        // 1/3 rounded to half
		{1.0009765625, 0x3c01},          // 1 + 2^-10
		{float32(1 + 1.0/2048), 0x3c00}, // tie between 0x3c00 and 0x3c01: even wins
		{float32(1 + 3.0/2048), 0x3c02}, // tie between 0x3c01 and 0x3c02: even wins
		{float32(1 + 1.0/2048 + 1.0/8192), 0x3c01},
		{65520, 0x7c00},                                  // halfway to 2^16 rounds to inf
		{65519.99, 0x7bff},                               //
		{1e-8, 0x0000},                                   // below half the smallest subnormal
		{float32(3 * 5.960464477539063e-08 / 2), 0x0002}, // 1.5 ulp subnormal: tie to even
	}
	for _, tc := range tests {
		if got := F32ToF16(tc.f); got != tc.h {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.f, got, tc.h)
		}
	}
	if h := F32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN) = %#04x, want a NaN", h)
	}
	// Every half value survives a round trip through float32.
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, back)
		}
	}
}

func TestOpenErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.gguf")
	if err := os.WriteFile(path, []byte("GGUF\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("Open(v1 file) error = %v, want it to name %s and version 1", err, path)
	}
}

// TestTruncated cuts a real file at every offset of its header (and a
// sample of offsets in the data): each must fail cleanly.
func TestTruncated(t *testing.T) {
	data := readFixture(t, stories260K)
	f, err := Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(data); n++ {
		if n > int(f.DataOffset) {
			n = min(n+997, len(data)-1) // the data section: sample it
		}
		if _, err := Parse(bytes.NewReader(data[:n]), int64(n)); err == nil {
			t.Fatalf("Parse of the first %d bytes succeeded", n)
		}
	}
}

// TestTruncatedAllTypes does the same for a small file holding every
// metadata type, nested arrays and quantised tensors.
func TestTruncatedAllTypes(t *testing.T) {
	nested, err := NewArrayOfArrays([]Value{NewArray([]string{"a", "bc"}), NewArray([]uint64{1})})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter()
	w.Set("nested", nested)
	w.Set("i8", NewScalar(int8(-1)))
	w.Set("u16", NewScalar(uint16(1)))
	w.Set("f64", NewScalar(1.5))
	w.Set("bools", NewArray([]bool{true, false}))
	if err := w.AddTensor("q", TypeQ8_0, []uint64{32, 2}, make([]byte, 68)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensorF16("h", []uint64{3}, []float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	f, err := Parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	// The padding after the last tensor is not needed to read it.
	h, _ := f.Tensor("h")
	end := f.DataOffset + int64(h.Offset+h.Bytes())
	for n := range end {
		if _, err := Parse(bytes.NewReader(data[:n]), n); err == nil {
			t.Fatalf("Parse of the first %d of %d bytes succeeded", n, end)
		}
	}
	if _, err := Parse(bytes.NewReader(data[:end]), end); err != nil {
		t.Errorf("file without its final padding: %v", err)
	}
}

func BenchmarkOpenVocab(b *testing.B) {
	path := filepath.Join(vocabFixture, "ggml-vocab-deepseek-llm.gguf") // the largest, 4 MB
	openFixture(b, path)
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
