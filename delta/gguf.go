package delta

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/vocab"
)

// ggufName is llama.cpp's name for parameter tensor t. The llama
// architecture stores the same row-major [out, in] matrices as llama2.c and
// applies "normal" RoPE to adjacent pairs, so no tensor is permuted.
func ggufName(t Tensor) string {
	block := map[string]string{
		"rms_att": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
		"rms_ffn": "ffn_norm", "w1": "ffn_gate", "w2": "ffn_down", "w3": "ffn_up",
	}
	switch t.Name {
	case "token_embedding":
		return "token_embd.weight"
	case "rms_final":
		return "output_norm.weight"
	case "wcls":
		return "output.weight"
	}
	return fmt.Sprintf("blk.%d.%s.weight", t.Layer, block[t.Name])
}

// ggufShape is t's shape as GGUF lists it: ne0, the row length, first.
func ggufShape(t Tensor) []uint64 {
	shape := make([]uint64, len(t.Shape))
	for i, d := range t.Shape {
		shape[len(shape)-1-i] = uint64(d)
	}
	return shape
}

// LoadGGUF reads a llama-architecture GGUF model with llama.cpp's tensor
// names; tensors may be F32, F16, BF16 or Q8_0 (dequantised). A model
// without output.weight, or whose output.weight is a bit-exact copy of
// token_embd.weight (converters duplicate a tied classifier, as in
// stories260K.gguf), gets a shared classifier, so that training keeps it
// tied.
//
// The file is hostile until checked: every tensor the metadata implies
// must be present with a readable type and the expected shape (and gguf
// has checked that its data lies inside the file) before anything is
// allocated, so memory stays within a small multiple of the file size
// whatever the header claims. Weights must be finite.
func LoadGGUF(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	if err := f.CheckModel(); err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	p, err := f.LlamaParams()
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	if p.Arch != "llama" {
		return nil, fmt.Errorf("load model %q: architecture %q, want llama", path, p.Arch)
	}
	if p.RopeDimensionCount != p.HeadDim() {
		return nil, fmt.Errorf("load model %q: rope.dimension_count %d, want the head size %d (partial rotary embeddings are not supported)", path, p.RopeDimensionCount, p.HeadDim())
	}
	for _, k := range []struct {
		key    string
		v, max int
	}{
		{"llama.embedding_length", p.EmbeddingLength, maxDim},
		{"llama.feed_forward_length", p.FeedForwardLength, maxHiddenDim},
		{"llama.block_count", p.BlockCount, maxLayers},
		{"llama.vocab_size (or the token count)", p.VocabSize, maxVocab},
		{"llama.context_length", p.ContextLength, maxSeqLen},
	} {
		if k.v > k.max {
			return nil, fmt.Errorf("load model %q: key %s is %d, want at most %d for a delta model", path, k.key, k.v, k.max)
		}
	}
	_, hasOutput := f.Tensor("output.weight")
	c := Config{
		Dim: p.EmbeddingLength, HiddenDim: p.FeedForwardLength, NLayers: p.BlockCount,
		NHeads: p.HeadCount, NKVHeads: p.HeadCountKV, VocabSize: p.VocabSize, SeqLen: p.ContextLength,
		RopeTheta: p.RopeFreqBase, NormEps: p.RMSNormEps,
		SharedClassifier: !hasOutput,
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("load model %q: llama.* metadata: %w", path, err)
	}
	// Validate bounds the layer count, so listing the expected tensors is
	// cheap; checking them bounds what the weights will take (CheckModel
	// has checked that no two share data, and gguf that all lie inside
	// the file).
	for _, t := range layout(c) {
		if err := checkGGUFTensor(f, ggufName(t), ggufShape(t)); err != nil {
			return nil, fmt.Errorf("load model %q: %w (for %d layers, dim %d, hidden %d, vocab %d)", path, err, c.NLayers, c.Dim, c.HiddenDim, c.VocabSize)
		}
	}

	read := func(name string) ([]float32, error) {
		data, err := f.ReadTensorF32(name)
		if err != nil {
			return nil, fmt.Errorf("load model: %w", err)
		}
		return data, nil
	}
	var wcls []float32
	if hasOutput {
		if wcls, err = read("output.weight"); err != nil {
			return nil, err
		}
		tokEmbd, err := read("token_embd.weight")
		if err != nil {
			return nil, err
		}
		c.SharedClassifier = slices.Equal(wcls, tokEmbd)
	}

	m, err := newModel(c)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}
	for _, t := range m.Tensors {
		if t.Name == "wcls" {
			copy(m.TensorData(t), wcls)
			continue
		}
		data, err := read(ggufName(t))
		if err != nil {
			return nil, err
		}
		copy(m.TensorData(t), data)
	}
	if err := m.checkFinite(ggufName); err != nil {
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}
	return m, nil
}

// checkGGUFTensor checks that f holds tensor name with shape want (GGUF
// order) in a type ReadTensorF32 converts.
func checkGGUFTensor(f *gguf.File, name string, want []uint64) error {
	info, ok := f.Tensor(name)
	if !ok {
		return fmt.Errorf("tensor %s is missing, want shape %v", name, want)
	}
	if !slices.Equal(info.Shape, want) {
		return fmt.Errorf("tensor %s has shape %v, want %v", name, info.Shape, want)
	}
	switch info.Type {
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
	default:
		if !gguf.CanDequantize(info.Type) {
			return fmt.Errorf("tensor %s has type %s, want F32, F16, BF16 or a type llama.cpp's quantiser writes (Q4_0-Q8_0, Q2_K-Q6_K, IQ4_NL, IQ4_XS)", name, info.Type)
		}
	}
	return nil
}

// ExportOptions say how ExportGGUF writes a model.
type ExportOptions struct {
	// F16 stores the weight matrices as float16; the RMSNorm gains stay
	// float32, as llama.cpp's converters keep them.
	F16 bool
	// Tokenizer copies every tokenizer.* key from this file (for example
	// the GGUF the model was loaded from, or any GGUF of the same
	// vocabulary). When nil, Vocab is written instead; one is required,
	// since llama.cpp does not load a model without a vocabulary.
	Tokenizer *gguf.File
	Vocab     *vocab.Vocab
	Name      string // general.name; "delta" when empty
}

// ExportGGUF writes m as a llama-architecture GGUF that llama.cpp loads,
// with llama.cpp's tensor names and the hyper-parameter keys it requires,
// atomically. A shared classifier is written as token_embd.weight alone,
// which llama.cpp reads as tied.
func (m *Model) ExportGGUF(path string, o ExportOptions) error {
	c := m.Config
	w := gguf.NewWriter()
	name := o.Name
	if name == "" {
		name = "delta"
	}
	fileType := uint32(0) // LLAMA_FTYPE_ALL_F32
	if o.F16 {
		fileType = 1 // LLAMA_FTYPE_MOSTLY_F16
	}
	w.SetString("general.architecture", "llama")
	w.SetString("general.name", name)
	w.SetUint32("general.file_type", fileType)
	ctx := c.SeqLen
	if ctx <= 0 {
		ctx = 2048
	}
	for _, kv := range []struct {
		key string
		v   int
	}{
		{"llama.context_length", ctx},
		{"llama.embedding_length", c.Dim},
		{"llama.block_count", c.NLayers},
		{"llama.feed_forward_length", c.HiddenDim},
		{"llama.rope.dimension_count", c.HeadSize()},
		{"llama.attention.head_count", c.NHeads},
		{"llama.attention.head_count_kv", c.NKVHeads},
		{"llama.vocab_size", c.VocabSize},
	} {
		w.SetUint32(kv.key, uint32(kv.v))
	}
	w.SetFloat32("llama.attention.layer_norm_rms_epsilon", c.eps())
	w.SetFloat32("llama.rope.freq_base", float32(c.theta()))

	// llama.cpp refuses a model whose vocabulary and embedding disagree
	switch {
	case o.Tokenizer != nil:
		tokens, ok := o.Tokenizer.Lookup(gguf.KeyTokens)
		if !ok || tokens.Len() != c.VocabSize {
			return fmt.Errorf("export %q: the tokenizer to copy has %d tokens (%s), the model %d", path, tokens.Len(), gguf.KeyTokens, c.VocabSize)
		}
		w.CopyKV(o.Tokenizer, func(key string) bool { return !strings.HasPrefix(key, "tokenizer.") })
	case o.Vocab != nil:
		if len(o.Vocab.Pieces) != c.VocabSize {
			return fmt.Errorf("export %q: the vocabulary has %d tokens, the model %d", path, len(o.Vocab.Pieces), c.VocabSize)
		}
		w.SetVocab(o.Vocab)
	default:
		return fmt.Errorf("export %q: no tokenizer: set ExportOptions.Tokenizer or Vocab", path)
	}

	for _, t := range m.Tensors {
		add := w.AddTensorF32
		if o.F16 && t.Matrix {
			add = w.AddTensorF16
		}
		if err := add(ggufName(t), ggufShape(t), m.TensorData(t)); err != nil {
			return fmt.Errorf("export %q: %w", path, err)
		}
	}
	if err := w.WriteFile(path); err != nil {
		return fmt.Errorf("export %q: %w", path, err)
	}
	return nil
}
