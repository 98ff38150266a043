package gguf

import (
	"math"

	"github.com/cmc-dev/cmc/vocab"
)

// The tokenizer.ggml.* metadata keys.
const (
	KeyTokenizerModel = "tokenizer.ggml.model"
	KeyTokenizerPre   = "tokenizer.ggml.pre"
	KeyTokens         = "tokenizer.ggml.tokens"
	KeyScores         = "tokenizer.ggml.scores"
	KeyTokenTypes     = "tokenizer.ggml.token_type"
	KeyMerges         = "tokenizer.ggml.merges"
	KeyBOS            = "tokenizer.ggml.bos_token_id"
	KeyEOS            = "tokenizer.ggml.eos_token_id"
	KeyUNK            = "tokenizer.ggml.unknown_token_id"
	KeyPAD            = "tokenizer.ggml.padding_token_id"
	KeyAddBOS         = "tokenizer.ggml.add_bos_token"
	KeyAddEOS         = "tokenizer.ggml.add_eos_token"
)

// Vocab reads the tokenizer.ggml.* keys. It checks that scores and types,
// when present, have one entry per token and that special ids are in range.
// When tokenizer.ggml.add_bos_token is absent, AddBOS is what llama.cpp
// does then: true for SentencePiece ("llama") vocabularies only; AddEOS is
// false when its key is absent.
func (f *File) Vocab() (*vocab.Vocab, error) {
	v := &vocab.Vocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	var err error
	if v.Model, err = f.String(KeyTokenizerModel); err != nil {
		return nil, err
	}
	if _, ok := f.Lookup(KeyTokenizerPre); ok {
		if v.Pre, err = f.String(KeyTokenizerPre); err != nil {
			return nil, err
		}
	}
	if v.Pieces, err = f.stringArray(KeyTokens, true); err != nil {
		return nil, err
	}
	n := len(v.Pieces)
	if v.Merges, err = f.stringArray(KeyMerges, false); err != nil {
		return nil, err
	}
	if val, ok := f.Lookup(KeyScores); ok {
		scores, ok := val.Float32s()
		if !ok {
			return nil, f.errorf("key %s has type %s, want array of float32", KeyScores, val.typeName())
		}
		if len(scores) != n {
			return nil, f.errorf("key %s has %d entries, want one per token (%d)", KeyScores, len(scores), n)
		}
		v.Scores = append([]float32(nil), scores...)
	}
	if val, ok := f.Lookup(KeyTokenTypes); ok {
		types, ok := val.Ints()
		if !ok {
			return nil, f.errorf("key %s has type %s, want array of int32", KeyTokenTypes, val.typeName())
		}
		if len(types) != n {
			return nil, f.errorf("key %s has %d entries, want one per token (%d)", KeyTokenTypes, len(types), n)
		}
		v.Types = make([]vocab.TokenType, n)
		for i, t := range types {
			if t < math.MinInt32 || t > math.MaxInt32 {
				return nil, f.errorf("key %s: entry %d is %d, outside int32", KeyTokenTypes, i, t)
			}
			v.Types[i] = vocab.TokenType(t)
		}
	}
	for _, s := range []struct {
		key string
		id  *int32
	}{{KeyBOS, &v.BOS}, {KeyEOS, &v.EOS}, {KeyUNK, &v.UNK}, {KeyPAD, &v.PAD}} {
		val, ok := f.Lookup(s.key)
		if !ok {
			continue
		}
		// Converters write -1 as uint32 0xFFFFFFFF (llama.cpp's
		// LLAMA_TOKEN_NULL) to say "no such token".
		if i, ok := val.Int64(); (ok && i == -1) || (val.Type == ValueUint32 && val.bits == math.MaxUint32) {
			continue
		}
		id, err := f.Uint(s.key)
		if err != nil {
			return nil, err
		}
		if id >= uint64(n) {
			return nil, f.errorf("key %s is %d, want a token id below the vocabulary size %d", s.key, id, n)
		}
		*s.id = int32(id)
	}
	v.AddBOS = v.Model == "llama"
	if v.AddBOS, err = f.boolOr(KeyAddBOS, v.AddBOS); err != nil {
		return nil, err
	}
	if v.AddEOS, err = f.boolOr(KeyAddEOS, false); err != nil {
		return nil, err
	}
	return v, nil
}

// stringArray returns a copy of an array-of-strings value; an absent key
// gives nil, or an error when required.
func (f *File) stringArray(key string, required bool) ([]string, error) {
	val, ok := f.Lookup(key)
	if !ok {
		if required {
			return nil, f.errorf("key %s is missing, want an array of strings", key)
		}
		return nil, nil
	}
	s, ok := val.Strings()
	if !ok {
		return nil, f.errorf("key %s has type %s, want array of string", key, val.typeName())
	}
	return append([]string{}, s...), nil
}

// boolOr returns a bool value, or def when the key is absent.
func (f *File) boolOr(key string, def bool) (bool, error) {
	val, ok := f.Lookup(key)
	if !ok {
		return def, nil
	}
	b, ok := val.Bool()
	if !ok {
		return false, f.errorf("key %s has type %s, want bool", key, val.typeName())
	}
	return b, nil
}

// LlamaParams are the hyper-parameters of a Llama-architecture model, read
// from the "<arch>.*" keys (arch = general.architecture).
type LlamaParams struct {
	Arch               string `json:"arch"`
	ContextLength      int    `json:"context_length"`       // <arch>.context_length
	EmbeddingLength    int    `json:"embedding_length"`     // <arch>.embedding_length (n_embd, "dim")
	BlockCount         int    `json:"block_count"`          // <arch>.block_count (layers)
	FeedForwardLength  int    `json:"feed_forward_length"`  // <arch>.feed_forward_length (hidden_dim)
	HeadCount          int    `json:"head_count"`           // <arch>.attention.head_count
	HeadCountKV        int    `json:"head_count_kv"`        // <arch>.attention.head_count_kv, HeadCount when absent
	RopeDimensionCount int    `json:"rope_dimension_count"` // <arch>.rope.dimension_count, the head size when absent
	VocabSize          int    `json:"vocab_size"`           // <arch>.vocab_size, else the token count, else token_embd.weight's ne1

	RopeFreqBase float64 `json:"rope_freq_base"` // <arch>.rope.freq_base, 10000 when absent
	RMSNormEps   float64 `json:"rms_norm_eps"`   // <arch>.attention.layer_norm_rms_epsilon, 1e-5 when absent
}

// HeadDim is the size of one attention head.
func (p LlamaParams) HeadDim() int { return p.EmbeddingLength / p.HeadCount }

// LlamaParams reads the Llama hyper-parameters and checks they are
// consistent (heads divide the embedding, KV heads divide heads).
func (f *File) LlamaParams() (LlamaParams, error) {
	p := LlamaParams{Arch: f.Architecture()}
	if p.Arch == "" {
		return p, f.errorf("key general.architecture is missing or empty, want the architecture name (e.g. llama)")
	}
	pre := p.Arch + "."
	for _, r := range []struct {
		key string
		dst *int
	}{
		{"context_length", &p.ContextLength},
		{"embedding_length", &p.EmbeddingLength},
		{"block_count", &p.BlockCount},
		{"feed_forward_length", &p.FeedForwardLength},
		{"attention.head_count", &p.HeadCount},
	} {
		var err error
		if *r.dst, err = f.positiveInt(pre + r.key); err != nil {
			return p, err
		}
	}
	p.HeadCountKV = p.HeadCount
	p.RopeDimensionCount = p.EmbeddingLength / p.HeadCount
	for _, r := range []struct {
		key string
		dst *int
	}{
		{"attention.head_count_kv", &p.HeadCountKV},
		{"rope.dimension_count", &p.RopeDimensionCount},
		{"vocab_size", &p.VocabSize},
	} {
		if _, ok := f.Lookup(pre + r.key); !ok {
			continue
		}
		var err error
		if *r.dst, err = f.positiveInt(pre + r.key); err != nil {
			return p, err
		}
	}
	p.RopeFreqBase, p.RMSNormEps = 10000, 1e-5
	for _, r := range []struct {
		key string
		dst *float64
	}{
		{"rope.freq_base", &p.RopeFreqBase},
		{"attention.layer_norm_rms_epsilon", &p.RMSNormEps},
	} {
		if _, ok := f.Lookup(pre + r.key); !ok {
			continue
		}
		x, err := f.Float(pre + r.key)
		if err != nil {
			return p, err
		}
		if !(x > 0) || math.IsInf(x, 0) {
			return p, f.errorf("key %s%s is %g, want a positive finite number", pre, r.key, x)
		}
		*r.dst = x
	}

	if p.VocabSize == 0 {
		if v, ok := f.Lookup(KeyTokens); ok && v.Len() > 0 {
			p.VocabSize = v.Len()
		} else if t, ok := f.Tensor("token_embd.weight"); ok && len(t.Shape) == 2 && t.Shape[1] <= math.MaxInt32 {
			p.VocabSize = int(t.Shape[1])
		} else {
			return p, f.errorf("vocabulary size unknown: no %svocab_size key, no %s, no 2-D token_embd.weight", pre, KeyTokens)
		}
	}
	if p.EmbeddingLength%p.HeadCount != 0 {
		return p, f.errorf("%sembedding_length %d is not a multiple of %sattention.head_count %d", pre, p.EmbeddingLength, pre, p.HeadCount)
	}
	if p.HeadCount%p.HeadCountKV != 0 {
		return p, f.errorf("%sattention.head_count %d is not a multiple of %sattention.head_count_kv %d", pre, p.HeadCount, pre, p.HeadCountKV)
	}
	return p, nil
}

// positiveInt reads an integer key that must be in [1, MaxInt32].
func (f *File) positiveInt(key string) (int, error) {
	u, err := f.Uint(key)
	if err != nil {
		return 0, err
	}
	if u == 0 || u > math.MaxInt32 {
		return 0, f.errorf("key %s is %d, want a positive count below 2^31", key, u)
	}
	return int(u), nil
}
