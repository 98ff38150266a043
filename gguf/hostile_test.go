package gguf

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// ggufBytes assembles a file by hand, so that tests can write what the
// Writer never would.
type ggufBytes struct{ bytes.Buffer }

func (b *ggufBytes) u8(x byte) *ggufBytes {
	b.WriteByte(x)
	return b
}

func (b *ggufBytes) u32(x uint32) *ggufBytes {
	b.Write(binary.LittleEndian.AppendUint32(nil, x))
	return b
}

func (b *ggufBytes) u64(x uint64) *ggufBytes {
	b.Write(binary.LittleEndian.AppendUint64(nil, x))
	return b
}

func (b *ggufBytes) str(s string) *ggufBytes {
	b.u64(uint64(len(s)))
	b.WriteString(s)
	return b
}

// header starts a v3 file with the given counts.
func header(nTensors, nKV uint64) *ggufBytes {
	b := &ggufBytes{}
	b.WriteString("GGUF")
	return b.u32(3).u64(nTensors).u64(nKV)
}

// tensor appends a tensor info.
func (b *ggufBytes) tensor(name string, typ TensorType, offset uint64, shape ...uint64) *ggufBytes {
	b.str(name).u32(uint32(len(shape)))
	for _, d := range shape {
		b.u64(d)
	}
	return b.u32(uint32(typ)).u64(offset)
}

// data pads to 32 bytes and appends n zero bytes of tensor data.
func (b *ggufBytes) data(n int) *ggufBytes {
	b.Write(make([]byte, padding(uint64(b.Len()), 32)+uint64(n)))
	return b
}

func TestHostileInput(t *testing.T) {
	tests := []struct {
		name string
		file *ggufBytes
		want []string // substrings of the error
	}{
		{"empty", &ggufBytes{}, []string{"truncated at offset 0"}},
		{"wrong magic", func() *ggufBytes { b := &ggufBytes{}; b.WriteString("GGML"); return b.u32(3) }(), []string{"offset 0", `"GGML"`, "not a GGUF file"}},
		{"version 1", func() *ggufBytes { b := &ggufBytes{}; b.WriteString("GGUF"); return b.u32(1).u64(0).u64(0) }(), []string{"offset 4", "version 1 is not supported"}},
		{"version 4", func() *ggufBytes { b := &ggufBytes{}; b.WriteString("GGUF"); return b.u32(4).u64(0).u64(0) }(), []string{"unsupported GGUF version 4"}},
		{"big-endian", func() *ggufBytes { b := &ggufBytes{}; b.WriteString("GGUF"); return b.u32(3 << 24).u64(0).u64(0) }(), []string{"big-endian"}},
		{"metadata count too large", header(0, 1<<40), []string{"offset 16", "metadata count 1099511627776"}},
		{"tensor count too large", header(1<<62, 0), []string{"offset 8", "tensor count"}},
		{"key length too large", header(0, 1).u64(1 << 50).u32(4).u32(0), []string{"metadata entry 0 at offset 24", "string length 1125899906842624"}},
		{"unknown value type", header(0, 1).str("k").u32(13).u32(0), []string{`key "k"`, "unknown metadata value type 13"}},
		{"array too long", header(0, 1).str("k").u32(uint32(ValueArray)).u32(uint32(ValueUint32)).u64(1 << 40), []string{`key "k"`, "array length 1099511627776", "4 bytes per item"}},
		{"array of unknown type", header(0, 1).str("k").u32(uint32(ValueArray)).u32(99).u64(1), []string{`key "k"`, "unknown array element type 99"}},
		{"arrays nested too deep", func() *ggufBytes {
			b := header(0, 1).str("deep").u32(uint32(ValueArray))
			for range 10 {
				b.u32(uint32(ValueArray)).u64(1)
			}
			return b
		}(), []string{`key "deep"`, "nested more than 8 deep"}},
		{"string in array too long", header(0, 1).str("k").u32(uint32(ValueArray)).u32(uint32(ValueString)).u64(2).str("a").u64(1 << 40), []string{"array element 1", "string length 1099511627776"}},
		{"duplicate key", header(0, 2).str("k").u32(uint32(ValueUint8)).u8(0).str("k").u32(uint32(ValueUint8)).u8(1), []string{"metadata entry 1", `duplicate key "k"`}},
		{"alignment not a power of two", header(0, 1).str(KeyAlignment).u32(uint32(ValueUint32)).u32(48), []string{KeyAlignment, "48 is not a power of two"}},
		{"alignment is a string", header(0, 1).str(KeyAlignment).u32(uint32(ValueString)).str("32"), []string{KeyAlignment, "type string"}},
		{"too many dimensions", header(1, 0).tensor("t", TypeF32, 0, 1, 1, 1, 1, 1), []string{"tensor info 0 at offset 24", `tensor "t"`, "5 dimensions"}},
		{"shape overflows", header(1, 0).tensor("t", TypeF32, 0, 1<<32, 1<<32), []string{`tensor "t"`, "overflows"}},
		{"negative dimension", header(1, 0).tensor("t", TypeF32, 0, 1<<63), []string{`tensor "t"`, "overflows"}},
		{"unknown tensor type", header(1, 0).tensor("t", 4, 0, 1), []string{`tensor "t"`, "unknown tensor type 4"}},
		{"row not whole blocks", header(1, 0).tensor("t", TypeQ8_0, 0, 16).data(34), []string{`tensor "t"`, "row length 16", "Q8_0 block size 32"}},
		{"name too long", header(1, 0).tensor(strings.Repeat("n", 64), TypeF32, 0, 1), []string{"64 bytes long", "at most 63"}},
		{"duplicate tensor", header(2, 0).tensor("t", TypeF32, 0, 1).tensor("t", TypeF32, 32, 1).data(64), []string{"tensor info 1", `duplicate tensor name "t"`}},
		{"data past the end", header(1, 0).tensor("t", TypeF32, 0, 8).data(31), []string{`tensor "t"`, "32 bytes", "runs past the end of the file"}},
		{"offset past the end", header(1, 0).tensor("t", TypeF32, 1<<63, 1).data(4), []string{`tensor "t"`, "runs past the end of the file"}},
		{"misaligned data", header(1, 0).tensor("t", TypeF32, 4, 1).data(8), []string{`tensor "t"`, "offset 4 is not a multiple of the alignment 32"}},
		{"no data section", header(1, 0).tensor("t", TypeF32, 0, 0), []string{"beyond the end of the file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.file.Bytes()
			_, err := Parse(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// The same builder must produce files that parse, or the cases above
// could fail for the wrong reason.
func TestHostileBuilderSanity(t *testing.T) {
	b := header(2, 1).str("k").u32(uint32(ValueUint8)).u8(7)
	b.tensor("t", TypeF32, 0, 8).tensor("u", TypeQ8_0, 32, 32).data(32 + 34)
	f, err := Parse(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 2 || f.DataOffset%32 != 0 || f.Tensors[1].Bytes() != 34 {
		t.Errorf("parsed %+v", f)
	}
	// Version 2 has the same layout.
	v2 := bytes.Clone(b.Bytes())
	v2[4] = 2
	if f, err := Parse(bytes.NewReader(v2), int64(len(v2))); err != nil || f.Version != 2 || len(f.Tensors) != 2 {
		t.Errorf("v2 file: %v", err)
	}
	// A vocabulary-only file may end right after its header, unpadded.
	h := header(0, 1).str("general.architecture").u32(uint32(ValueString)).str("llama")
	f, err = Parse(bytes.NewReader(h.Bytes()), int64(h.Len()))
	if err != nil || f.DataOffset != int64(h.Len()) || f.Architecture() != "llama" {
		t.Errorf("unpadded vocab-only file: %v, data offset %d", err, f.DataOffset)
	}
}

func TestVocabErrors(t *testing.T) {
	tests := []struct {
		name string
		set  func(w *Writer)
		want string
	}{
		{"no tokens", func(w *Writer) { w.SetString(KeyTokenizerModel, "llama") }, "key tokenizer.ggml.tokens is missing"},
		{"no model", func(w *Writer) { w.SetStrings(KeyTokens, []string{"a"}) }, "key tokenizer.ggml.model is missing"},
		{"scores short", func(w *Writer) { w.SetFloat32s(KeyScores, []float32{0}) }, "tokenizer.ggml.scores has 1 entries, want one per token (2)"},
		{"types wrong type", func(w *Writer) { w.SetStrings(KeyTokenTypes, []string{"a", "b"}) }, "tokenizer.ggml.token_type has type array of string"},
		{"bos out of range", func(w *Writer) { w.SetUint32(KeyBOS, 2) }, "tokenizer.ggml.bos_token_id is 2, want a token id below the vocabulary size 2"},
		{"eos negative", func(w *Writer) { w.SetInt32(KeyEOS, -5) }, "tokenizer.ggml.eos_token_id is -5"},
		{"add_bos not bool", func(w *Writer) { w.SetUint32(KeyAddBOS, 1) }, "tokenizer.ggml.add_bos_token has type uint32, want bool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter()
			if tc.name != "no tokens" && tc.name != "no model" {
				w.SetString(KeyTokenizerModel, "gpt2")
				w.SetStrings(KeyTokens, []string{"a", "b"})
			}
			tc.set(w)
			var buf bytes.Buffer
			if _, err := w.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			_, err := parseBytes(t, buf.Bytes()).Vocab()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Vocab() error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLlamaParamsErrorsAndDefaults(t *testing.T) {
	base := func() *Writer {
		w := NewWriter()
		w.SetString("general.architecture", "llama")
		for k, v := range map[string]uint32{"context_length": 256, "embedding_length": 288, "block_count": 6, "feed_forward_length": 768, "attention.head_count": 6} {
			w.SetUint32("llama."+k, v)
		}
		return w
	}
	params := func(w *Writer) (LlamaParams, error) {
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		return parseBytes(t, buf.Bytes()).LlamaParams()
	}

	// stories15M's shape, no optional keys: defaults apply, the vocabulary
	// size comes from token_embd.weight.
	w := base()
	if err := w.AddTensorF32("token_embd.weight", []uint64{288, 3}, make([]float32, 288*3)); err != nil {
		t.Fatal(err)
	}
	p, err := params(w)
	want := LlamaParams{Arch: "llama", ContextLength: 256, EmbeddingLength: 288, BlockCount: 6, FeedForwardLength: 768,
		HeadCount: 6, HeadCountKV: 6, RopeDimensionCount: 48, VocabSize: 3, RopeFreqBase: 10000, RMSNormEps: 1e-5}
	if err != nil || p != want {
		t.Errorf("LlamaParams = %+v, %v; want %+v", p, err, want)
	}

	for _, tc := range []struct {
		name string
		set  func(w *Writer)
		want string
	}{
		{"no vocab size", func(w *Writer) {}, "vocabulary size unknown"},
		{"zero heads", func(w *Writer) { w.SetUint32("llama.attention.head_count", 0) }, "llama.attention.head_count is 0"},
		{"kv heads do not divide", func(w *Writer) { w.SetUint32("llama.attention.head_count_kv", 4) }, "not a multiple of llama.attention.head_count_kv 4"},
		{"eps negative", func(w *Writer) { w.SetFloat32("llama.attention.layer_norm_rms_epsilon", -1) }, "want a positive finite number"},
		{"block count is a string", func(w *Writer) { w.SetString("llama.block_count", "6") }, "llama.block_count has type string"},
		{"no architecture", func(w *Writer) { w.SetString("general.architecture", "") }, "general.architecture is missing or empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := base()
			w.SetUint32("llama.vocab_size", 32000)
			if tc.name == "no vocab size" {
				w = base()
			}
			tc.set(w)
			_, err := params(w)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LlamaParams error = %v, want %q", err, tc.want)
			}
		})
	}
}
