// Package hostile writes broken model files for tests: each is a small,
// well-formed file whose header or metadata lies (claims a 7B model, 1e8
// layers, a NaN epsilon) or whose data is cut short or poisoned, the way a
// wrong download, a bad converter or a malicious upload would. Loaders must
// refuse every one with an error naming the file, never crash or allocate
// what the header claims.
package hostile

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/cmc-dev/cmc/gguf"
)

// Case is one hostile file.
type Case struct {
	Name string // short, for subtest names
	Path string
	// Key names the metadata key, tensor or size the file lies about, which
	// an error should name too.
	Key string
	// Loads is true when llama.cpp may legitimately load the file (its lie
	// is in the weights' values, or in what only cmc's delta loader reads)
	// so that a user-model path fails later, at the first logits.
	Loads bool
}

// Llama2C7BHeader is the header of llama2.c's 7B checkpoint: dim, hidden_dim,
// n_layers, n_heads, n_kv_heads, vocab_size, seq_len.
var Llama2C7BHeader = [7]int32{4096, 11008, 32, 32, 32, 32000, 2048}

// WriteLlama2CHeader writes a llama2.c checkpoint that is only its 28-byte header.
func WriteLlama2CHeader(path string, h [7]int32) error {
	b := make([]byte, 0, 28)
	for _, x := range h {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return os.WriteFile(path, b, 0o644)
}

// Edit is what RewriteGGUF changes in a copy.
type Edit struct {
	// Set changes metadata after the source's keys are copied (Writer.Set
	// replaces a value in place).
	Set func(w *gguf.Writer)
	// NaN names an F32 tensor whose first element becomes NaN.
	NaN string
}

// RewriteGGUF copies the GGUF at src to dst with e applied.
func RewriteGGUF(src, dst string, e Edit) error {
	f, err := gguf.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	w := gguf.NewWriter()
	w.CopyKV(f, nil)
	if e.Set != nil {
		e.Set(w)
	}
	poisoned := false
	for _, t := range f.Tensors {
		data, err := f.ReadTensorBytes(t.Name)
		if err != nil {
			return err
		}
		if t.Name == e.NaN {
			if t.Type != gguf.TypeF32 {
				return fmt.Errorf("poison %s: tensor has type %s, want F32", t.Name, t.Type)
			}
			binary.LittleEndian.PutUint32(data, math.Float32bits(float32(math.NaN())))
			poisoned = true
		}
		if err := w.AddTensor(t.Name, t.Type, t.Shape, data); err != nil {
			return err
		}
	}
	if e.NaN != "" && !poisoned {
		return fmt.Errorf("poison %s: %s has no such tensor", e.NaN, src)
	}
	return w.WriteFile(dst)
}

// WriteOverlapping writes a GGUF of a llama model with layers blocks of
// dim 64 (stories260K's shapes, no vocabulary) whose tensors all point at
// the same data: each lies inside the file, but together they claim
// layers times more than the file holds. The Writer lays tensors out one
// after another, so this one is assembled by hand.
func WriteOverlapping(path string, layers int) error {
	const dim, hidden, heads, kvHeads, vocab = 64, 172, 8, 4, 512
	kv := dim / heads * kvHeads
	type tensor struct {
		name  string
		shape []uint64
	}
	ts := []tensor{{"token_embd.weight", []uint64{dim, vocab}}, {"output_norm.weight", []uint64{dim}}}
	for l := range layers {
		for _, t := range []tensor{
			{"attn_norm", []uint64{dim}}, {"attn_q", []uint64{dim, dim}}, {"attn_k", []uint64{dim, uint64(kv)}},
			{"attn_v", []uint64{dim, uint64(kv)}}, {"attn_output", []uint64{dim, dim}}, {"ffn_norm", []uint64{dim}},
			{"ffn_gate", []uint64{dim, hidden}}, {"ffn_down", []uint64{hidden, dim}}, {"ffn_up", []uint64{dim, hidden}},
		} {
			ts = append(ts, tensor{fmt.Sprintf("blk.%d.%s.weight", l, t.name), t.shape})
		}
	}
	var b []byte
	u32 := func(x uint32) { b = binary.LittleEndian.AppendUint32(b, x) }
	u64 := func(x uint64) { b = binary.LittleEndian.AppendUint64(b, x) }
	str := func(s string) { u64(uint64(len(s))); b = append(b, s...) }
	keys := []struct {
		key string
		v   uint32
	}{
		{"llama.context_length", 2048}, {"llama.embedding_length", dim}, {"llama.block_count", uint32(layers)},
		{"llama.feed_forward_length", hidden}, {"llama.attention.head_count", heads},
		{"llama.attention.head_count_kv", kvHeads}, {"llama.vocab_size", vocab},
	}
	b = append(b, gguf.Magic...)
	u32(3)
	u64(uint64(len(ts)))
	u64(uint64(1 + len(keys)))
	str("general.architecture")
	u32(uint32(gguf.ValueString))
	str("llama")
	for _, k := range keys {
		str(k.key)
		u32(uint32(gguf.ValueUint32))
		u32(k.v)
	}
	for _, t := range ts {
		str(t.name)
		u32(uint32(len(t.shape)))
		for _, d := range t.shape {
			u64(d)
		}
		u32(uint32(gguf.TypeF32))
		u64(0) // every tensor's data starts at the same place
	}
	for len(b)%gguf.DefaultAlignment != 0 {
		b = append(b, 0)
	}
	b = append(b, make([]byte, 4*dim*vocab)...) // room for the largest tensor
	return os.WriteFile(path, b, 0o644)
}

// Truncate copies the first size bytes of src to dst.
func Truncate(src, dst string, size int64) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if size > int64(len(b)) {
		return fmt.Errorf("truncate %s to %d bytes: it holds %d", src, size, len(b))
	}
	return os.WriteFile(dst, b[:size], 0o644)
}

// Files writes every hostile variant into dir and returns them: model is a
// small llama-architecture GGUF (stories260K.gguf), vocabOnly a GGUF that
// holds a 7B model's metadata and vocabulary but no tensors
// (ggml-vocab-llama-spm.gguf), which is listed as is.
func Files(dir, model, vocabOnly string) ([]Case, error) {
	cases := []Case{{Name: "vocab-only", Path: vocabOnly, Key: "token_embd.weight"}}
	llama2c := filepath.Join(dir, "header-7b.bin")
	if err := WriteLlama2CHeader(llama2c, Llama2C7BHeader); err != nil {
		return nil, err
	}
	cases = append(cases, Case{Name: "llama2c-header-7b", Path: llama2c, Key: "28 bytes"})

	setUint := func(key string, v uint32) func(*gguf.Writer) {
		return func(w *gguf.Writer) { w.SetUint32(key, v) }
	}
	setFloat := func(key string, v float32) func(*gguf.Writer) {
		return func(w *gguf.Writer) { w.SetFloat32(key, v) }
	}
	const eps = "llama.attention.layer_norm_rms_epsilon"
	for _, c := range []struct {
		name, key string
		edit      Edit
		loads     bool
	}{
		{"block-count-1e8", "llama.block_count", Edit{Set: setUint("llama.block_count", 1e8)}, false},
		{"feed-forward-1e9", "llama.feed_forward_length", Edit{Set: setUint("llama.feed_forward_length", 1e9)}, false},
		{"eps-nan", eps, Edit{Set: setFloat(eps, float32(math.NaN()))}, false},
		{"eps-negative", eps, Edit{Set: setFloat(eps, -1)}, false},
		{"nan-weights", "blk.0.attn_norm.weight", Edit{NaN: "blk.0.attn_norm.weight"}, true},
	} {
		path := filepath.Join(dir, c.name+".gguf")
		if err := RewriteGGUF(model, path, c.edit); err != nil {
			return nil, fmt.Errorf("write %s: %w", c.name, err)
		}
		cases = append(cases, Case{Name: c.name, Path: path, Key: c.key, Loads: c.loads})
	}

	// Cut in the middle of the tensor data: the header and metadata parse.
	st, err := os.Stat(model)
	if err != nil {
		return nil, err
	}
	truncated := filepath.Join(dir, "truncated.gguf")
	if err := Truncate(model, truncated, st.Size()*3/4); err != nil {
		return nil, err
	}
	cases = append(cases, Case{Name: "truncated", Path: truncated, Key: "end of the file"})

	overlapping := filepath.Join(dir, "overlapping.gguf")
	if err := WriteOverlapping(overlapping, 100); err != nil {
		return nil, err
	}
	cases = append(cases, Case{Name: "overlapping-tensors", Path: overlapping, Key: "overlap"})
	return cases, nil
}
