package gguf

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. The seed corpus in
// testdata/fuzz/FuzzParse holds prefixes of the fixture GGUFs and small
// files written by the Writer (real metadata of stories260K, a slice of the
// GPT-2 vocabulary, every value type, F16/BF16/Q8_0 tensors, a v2 header),
// and the hostile-* files: a tiny llama model whose metadata lies the ways
// issue 10 found (rms_norm_eps NaN or -1, block_count 0 or 1e8,
// feed_forward_length 1e9, context_length 4e9, 7 heads), NaN weights,
// truncated tensor data, 7B metadata over a vocabulary and no tensors, an
// empty or duplicated vocabulary.
//
// Whatever Parse accepts must be safe to use: the accessors do not panic,
// every tensor can be read, and rewriting the file through the Writer gives
// a file that parses and rewrites to the same bytes.
func FuzzParse(f *testing.F) {
	f.Add([]byte("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		file.Vocab()
		file.LlamaParams()
		file.CheckModel()
		file.Summary()
		for _, ti := range file.Tensors {
			end := uint64(file.DataOffset) + ti.Offset + ti.Bytes()
			if end > uint64(len(data)) {
				t.Fatalf("tensor %s ends at %d, beyond the %d-byte file", ti.Name, end, len(data))
			}
			if _, err := file.ReadTensorBytes(ti.Name); err != nil {
				t.Fatalf("ReadTensorBytes(%s): %v", ti.Name, err)
			}
			x, err := file.ReadTensorF32(ti.Name)
			if err == nil && uint64(len(x)) != ti.Elements() {
				t.Fatalf("ReadTensorF32(%s) gave %d elements, want %d", ti.Name, len(x), ti.Elements())
			}
		}

		first, ok := rewrite(t, file)
		if !ok {
			return // the Writer is stricter than the reader (e.g. 0-dim tensors)
		}
		again, err := Parse(bytes.NewReader(first), int64(len(first)))
		if err != nil {
			t.Fatalf("the Writer's output does not parse: %v", err)
		}
		second, ok := rewrite(t, again)
		if !ok || !bytes.Equal(first, second) {
			t.Fatalf("rewriting the Writer's output changed it (ok=%v, %d vs %d bytes)", ok, len(first), len(second))
		}
	})
}

// rewrite copies f's metadata and tensors through a Writer; ok is false
// when the Writer refuses them.
func rewrite(t *testing.T, f *File) ([]byte, bool) {
	w := NewWriter()
	w.CopyKV(f, nil)
	for _, ti := range f.Tensors {
		data, err := f.ReadTensorBytes(ti.Name)
		if err != nil {
			t.Fatalf("ReadTensorBytes(%s): %v", ti.Name, err)
		}
		if w.AddTensor(ti.Name, ti.Type, ti.Shape, data) != nil {
			return nil, false
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, false
	}
	return buf.Bytes(), true
}
