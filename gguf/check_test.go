package gguf

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// checkModelFile writes a small llama model's metadata and two blocks of
// (tiny) tensors, with edit applied to the metadata, and parses it back.
func checkModelFile(t *testing.T, edit func(w *Writer)) *File {
	t.Helper()
	w := NewWriter()
	w.SetString("general.architecture", "llama")
	w.SetUint32("llama.context_length", 2048)
	w.SetUint32("llama.embedding_length", 64)
	w.SetUint32("llama.block_count", 2)
	w.SetUint32("llama.feed_forward_length", 172)
	w.SetUint32("llama.attention.head_count", 8)
	w.SetUint32("llama.attention.head_count_kv", 4)
	w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5)
	w.SetFloat32("llama.rope.freq_base", 10000)
	if edit != nil {
		edit(w)
	}
	for _, name := range []string{"token_embd.weight", "blk.0.attn_norm.weight", "blk.1.attn_norm.weight"} {
		if err := w.AddTensorF32(name, []uint64{4}, make([]float32, 4)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCheckModel(t *testing.T) {
	if err := checkModelFile(t, nil).CheckModel(); err != nil {
		t.Fatalf("a sound file: %v", err)
	}
	const eps = "llama.attention.layer_norm_rms_epsilon"
	for _, c := range []struct {
		name string
		edit func(w *Writer)
		want string // in the error
	}{
		{"eps NaN", func(w *Writer) { w.SetFloat32(eps, float32(math.NaN())) }, eps + " is NaN"},
		{"eps negative", func(w *Writer) { w.SetFloat32(eps, -1) }, eps + " is -1, want a non-negative"},
		{"eps +Inf", func(w *Writer) { w.SetFloat32(eps, float32(math.Inf(1))) }, eps + " is +Inf"},
		{"NaN in a float array", func(w *Writer) { w.SetFloat32s("llama.rope.scaling.factors", []float32{1, float32(math.NaN())}) }, "factors element 1 is NaN"},
		{"rope base 0", func(w *Writer) { w.SetFloat32("llama.rope.freq_base", 0) }, "rope.freq_base is 0"},
		{"rope scaling negative", func(w *Writer) { w.SetFloat32("llama.rope.scaling.factor", -2) }, "rope.scaling.factor is -2"},
		{"block_count 0", func(w *Writer) { w.SetUint32("llama.block_count", 0) }, "block_count is 0, want 1 to"},
		{"block_count 1e8", func(w *Writer) { w.SetUint32("llama.block_count", 1e8) }, "block_count is 100000000"},
		{"tensors beyond block_count", func(w *Writer) { w.SetUint32("llama.block_count", 1) }, "tensors of block blk.1"},
		{"context 0", func(w *Writer) { w.SetUint32("llama.context_length", 0) }, "context_length is 0"},
		{"context 4e9", func(w *Writer) { w.SetUint32("llama.context_length", math.MaxUint32) }, "context_length is 4294967295"},
		{"negative embedding", func(w *Writer) { w.SetInt32("llama.embedding_length", -64) }, "embedding_length is negative"},
		{"feed-forward 1e9", func(w *Writer) { w.SetUint32("llama.feed_forward_length", 1e9) }, "feed_forward_length is 1000000000"},
		{"string count", func(w *Writer) { w.SetString("llama.block_count", "2") }, "block_count has type string, want an integer"},
		{"kv heads", func(w *Writer) { w.SetUint32("llama.attention.head_count_kv", 3) }, "head_count 8 is not a multiple of llama.attention.head_count_kv 3"},
		{"heads", func(w *Writer) {
			w.SetUint32("llama.attention.head_count", 7)
			w.SetUint32("llama.attention.head_count_kv", 7)
		}, "embedding_length 64 is not a multiple of llama.attention.head_count 7"},
		{"no architecture", func(w *Writer) { w.SetString("general.architecture", "") }, "general.architecture is missing"},
	} {
		err := checkModelFile(t, c.edit).CheckModel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}

	// What other architectures legitimately store passes: per-layer head
	// counts, an explicit key length, no feed-forward (Mamba), keys of
	// another architecture.
	for _, ok := range []func(w *Writer){
		func(w *Writer) { w.SetInt32s("llama.attention.head_count", []int32{7, 7}) },
		func(w *Writer) {
			w.SetUint32("llama.attention.head_count", 7)
			w.SetUint32("llama.attention.head_count_kv", 7)
			w.SetUint32("llama.attention.key_length", 128)
		},
		func(w *Writer) { w.SetUint32("llama.feed_forward_length", 0) },
		func(w *Writer) { w.SetFloat32("clip.vision.attention.layer_norm_epsilon", float32(math.NaN())) },
	} {
		if err := checkModelFile(t, ok).CheckModel(); err != nil {
			t.Errorf("refused: %v", err)
		}
	}
}

// Tensors that share data are refused; the Writer's sequential layout and
// zero-sized tensors pass.
func TestCheckModelOverlap(t *testing.T) {
	b := header(3, 1).str("general.architecture").u32(uint32(ValueString)).str("llama").
		tensor("a", TypeF32, 0, 8).tensor("empty", TypeF32, 32, 0).tensor("b", TypeF32, 32, 8).data(64)
	f, err := Parse(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CheckModel(); err != nil {
		t.Fatalf("sequential tensors: %v", err)
	}
	b = header(2, 1).str("general.architecture").u32(uint32(ValueString)).str("llama").
		tensor("a", TypeF32, 0, 16).tensor("b", TypeF32, 32, 8).data(96)
	if f, err = Parse(bytes.NewReader(b.Bytes()), int64(b.Len())); err != nil {
		t.Fatal(err)
	}
	if err := f.CheckModel(); err == nil || !strings.Contains(err.Error(), `"a" and "b" overlap`) {
		t.Fatalf("overlapping tensors: error %v, want one naming a and b", err)
	}
}

// Tokenizer arrays that llama.cpp would read out of bounds, or assert on.
func TestCheckModelVocab(t *testing.T) {
	vocab := func(w *Writer) {
		w.SetStrings(KeyTokens, []string{"<unk>", "<s>", "a", "b"})
		w.SetFloat32s(KeyScores, []float32{0, 0, -1, -2})
		w.SetInt32s(KeyTokenTypes, []int32{2, 3, 1, 1})
		w.SetStrings(KeyMerges, []string{"a b"})
	}
	if err := checkModelFile(t, vocab).CheckModel(); err != nil {
		t.Fatalf("a sound vocabulary: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(w *Writer)
		want string
	}{
		{"no tokens", func(w *Writer) { w.SetStrings(KeyTokens, nil) }, "tokens is empty"},
		{"duplicate", func(w *Writer) { w.SetStrings(KeyTokens, []string{"<unk>", "a", "<s>", "a"}) }, `tokens 1 and 3 are both "a"`},
		{"tokens not strings", func(w *Writer) { w.SetInt32s(KeyTokens, []int32{1, 2}) }, "tokens has type array of int32"},
		{"short scores", func(w *Writer) { w.SetFloat32s(KeyScores, []float32{0}) }, "scores has 1 entries, want one per token (4)"},
		{"short types", func(w *Writer) { w.SetInt32s(KeyTokenTypes, []int32{1, 1, 1}) }, "token_type has 3 entries"},
		{"uint8 types", func(w *Writer) { w.Set(KeyTokenTypes, NewArray([]uint8{1, 1, 1, 1})) }, "token_type has type array of uint8, want array of int32"},
		{"merges not strings", func(w *Writer) { w.SetInt32s(KeyMerges, []int32{1}) }, "merges has type array of int32"},
	} {
		err := checkModelFile(t, func(w *Writer) { vocab(w); c.edit(w) }).CheckModel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// Mixture-of-experts counts and a RoPE scaling type that llama.cpp asserts on.
func TestCheckModelExperts(t *testing.T) {
	moe := func(experts, used, groups, groupsUsed uint32) func(w *Writer) {
		return func(w *Writer) {
			w.SetUint32("llama.expert_count", experts)
			w.SetUint32("llama.expert_used_count", used)
			w.SetUint32("llama.expert_group_count", groups)
			w.SetUint32("llama.expert_group_used_count", groupsUsed)
		}
	}
	for _, ok := range []func(w *Writer){moe(8, 2, 0, 0), moe(256, 8, 8, 4), moe(0, 0, 0, 0),
		func(w *Writer) { w.SetString("llama.rope.scaling.type", "yarn") }} {
		if err := checkModelFile(t, ok).CheckModel(); err != nil {
			t.Errorf("refused: %v", err)
		}
	}
	for _, c := range []struct {
		edit func(w *Writer)
		want string
	}{
		{moe(1000, 2, 0, 0), "at most 512 experts"},
		{moe(8, 9, 0, 0), "1 to expert_count experts used"},
		{moe(8, 0, 0, 0), "1 to expert_count experts used"},
		{moe(0, 2, 0, 0), "none"},
		{moe(8, 2, 8, 1), "fewer groups than experts"},
		{moe(8, 2, 3, 1), "groups that divide the experts"},
		{moe(8, 2, 4, 4), "groups that divide the experts"},
		{func(w *Writer) { w.SetString("llama.rope.scaling.type", "cubic") }, `rope.scaling.type is "cubic"`},
		{func(w *Writer) { w.SetUint32("llama.rope.scaling.type", 1) }, "rope.scaling.type is 1"},
	} {
		err := checkModelFile(t, c.edit).CheckModel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one containing %q", err, c.want)
		}
	}
}
