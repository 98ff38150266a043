package delta

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// LoadLlama2C reads a checkpoint in llama2.c's legacy format (version 0):
// seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len), then the float32 tensors in Model.Tensors order with the
// freq_cis_real/imag tables before the classifier. A positive vocab_size
// means the classifier is shared with the embedding; a negative one that
// wcls follows at the end. The RoPE tables are skipped: RoPE is computed
// here for any position.
func LoadLlama2C(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load llama2.c checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load llama2.c checkpoint %q: %w", path, err)
	}

	var h [7]int32
	if err := binary.Read(f, binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("load llama2.c checkpoint %q: header of 7 int32: %w", path, err)
	}
	c := Config{
		Dim: int(h[0]), HiddenDim: int(h[1]), NLayers: int(h[2]), NHeads: int(h[3]),
		NKVHeads: int(h[4]), VocabSize: int(h[5]), SeqLen: int(h[6]),
		SharedClassifier: h[5] > 0,
	}
	if c.VocabSize < 0 {
		c.VocabSize = -c.VocabSize
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("load llama2.c checkpoint %q: header %v: %w", path, h, err)
	}
	// The header alone says how long the file must be; check that before
	// allocating what it claims.
	ropeTables := int64(c.SeqLen) * int64(c.HeadSize()) // real and imaginary halves
	want := 28 + 4*(c.ParamCount()+ropeTables)
	if st.Size() != want {
		return nil, fmt.Errorf("load llama2.c checkpoint %q: %d bytes, want %d for header %v (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len)", path, st.Size(), want, h)
	}
	m, err := newModel(c)
	if err != nil {
		return nil, fmt.Errorf("load llama2.c checkpoint %q: header %v: %w", path, h, err)
	}

	// Everything up to rms_final is contiguous in the file and in Params;
	// the unshared classifier comes after the RoPE tables.
	body := len(m.Params)
	if !c.SharedClassifier {
		body -= c.VocabSize * c.Dim
	}
	if err := readFloats(f, m.Params[:body]); err != nil {
		return nil, fmt.Errorf("load llama2.c checkpoint %q: weights: %w", path, err)
	}
	if !c.SharedClassifier {
		if _, err := f.Seek(4*ropeTables, io.SeekCurrent); err != nil {
			return nil, fmt.Errorf("load llama2.c checkpoint %q: %w", path, err)
		}
		if err := readFloats(f, m.Params[body:]); err != nil {
			return nil, fmt.Errorf("load llama2.c checkpoint %q: wcls: %w", path, err)
		}
	}
	if err := m.checkFinite(func(t Tensor) string { return t.Name + layerSuffix(t) }); err != nil {
		return nil, fmt.Errorf("load llama2.c checkpoint %q: %w", path, err)
	}
	return m, nil
}

// layerSuffix names t's block, as in "wq (layer 3)", for tensors inside one.
func layerSuffix(t Tensor) string {
	if t.Layer < 0 {
		return ""
	}
	return fmt.Sprintf(" (layer %d)", t.Layer)
}

// readFloats fills dst with little-endian float32 values from r.
func readFloats(r io.Reader, dst []float32) error {
	buf := make([]byte, 1<<16)
	for len(dst) > 0 {
		n := min(len(dst), len(buf)/4)
		if _, err := io.ReadFull(r, buf[:4*n]); err != nil {
			return err
		}
		for i := range n {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
		dst = dst[n:]
	}
	return nil
}
