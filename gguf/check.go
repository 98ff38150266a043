package gguf

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Bounds on model metadata that CheckModel enforces: far beyond any real
// model, they stop a header from making llama.cpp size its KV cache or its
// per-layer arrays by a lie.
const (
	maxContextLength   = 1 << 24
	maxBlockCount      = 1 << 16
	maxEmbeddingLength = 1 << 20
	maxFeedForward     = 1 << 24
)

// CheckModel reports the model metadata that llama.cpp trusts without
// checking, and on which it aborts the process (GGML_ASSERT: a NaN or
// negative norm epsilon, block_count 0, 1000 experts, a duplicated
// vocabulary piece), reads past an array (scores shorter than the
// vocabulary) or computes garbage (a NaN RoPE base) instead of returning
// an error. Call it before handing a file to llama.cpp. It reads the keys
// of the file's own architecture ("<arch>.*") and the tokenizer arrays, so
// it applies to any model llama.cpp runs; errors name the file and the key,
// and say what was expected.
//
// It also checks that no two tensors share data, which cmc's own loaders
// need to bound their memory by the file size. What llama.cpp does check
// itself (tensor shapes against the hyper-parameters, unknown
// architectures and tokenizers) is left to it: its error then reaches the
// user through the llama package.
func (f *File) CheckModel() error {
	arch := f.Architecture()
	if arch == "" {
		return f.errorf("key general.architecture is missing or empty, want the architecture name (e.g. llama)")
	}
	pre := arch + "."
	for _, kv := range f.KV {
		if !strings.HasPrefix(kv.Key, pre) {
			continue
		}
		if err := f.checkFloats(kv); err != nil {
			return err
		}
	}
	if v, ok := f.Lookup(pre + "rope.freq_base"); ok {
		if x, _ := v.Float64(); x <= 0 {
			return f.errorf("key %srope.freq_base is %g, want a positive number", pre, x)
		}
	}
	if v, ok := f.Lookup(pre + "rope.scaling.factor"); ok {
		if x, _ := v.Float64(); x < 0 { // 0 means no scaling
			return f.errorf("key %srope.scaling.factor is %g, want a positive number (or 0: none)", pre, x)
		}
	}
	for _, b := range []struct {
		key      string
		min, max uint64
	}{
		{"context_length", 1, maxContextLength},
		{"embedding_length", 1, maxEmbeddingLength},
		{"feed_forward_length", 0, maxFeedForward},
		{"block_count", 1, maxBlockCount},
	} {
		if err := f.checkCount(pre+b.key, b.min, b.max); err != nil {
			return err
		}
	}
	if err := f.checkBlocks(pre + "block_count"); err != nil {
		return err
	}
	if err := f.checkHeads(pre); err != nil {
		return err
	}
	if err := f.checkExperts(pre); err != nil {
		return err
	}
	if v, ok := f.Lookup(pre + "rope.scaling.type"); ok {
		if name, _ := v.String(); !ropeScalingTypes[name] {
			return f.errorf("key %srope.scaling.type is %s, want none, linear, yarn or longrope", pre, v.Describe(summaryLimit))
		}
	}
	if err := f.checkVocab(); err != nil {
		return err
	}
	return f.checkOverlap()
}

// ropeScalingTypes are the values of rope.scaling.type llama.cpp knows; it
// asserts on any other.
var ropeScalingTypes = map[string]bool{"none": true, "linear": true, "yarn": true, "longrope": true}

// maxExperts is llama.cpp's LLAMA_MAX_EXPERTS.
const maxExperts = 512

// checkExperts checks the mixture-of-experts counts as llama.cpp asserts
// them while reading its hyper-parameters: at most 512 experts, at least
// one and at most all of them used per token, groups that divide them.
func (f *File) checkExperts(pre string) error {
	count := func(key string) (uint64, error) {
		v, ok := f.Lookup(pre + key)
		if !ok {
			return 0, nil
		}
		n, ok := v.Uint64()
		if !ok || n > math.MaxUint32 {
			return 0, f.errorf("key %s%s is %s, want a count", pre, key, v.Describe(summaryLimit))
		}
		return n, nil
	}
	var n [4]uint64
	for i, key := range []string{"expert_count", "expert_used_count", "expert_group_count", "expert_group_used_count"} {
		var err error
		if n[i], err = count(key); err != nil {
			return err
		}
	}
	experts, used, groups, groupsUsed := n[0], n[1], n[2], n[3]
	bad := func(why string) error {
		return f.errorf("keys %sexpert_count %d, expert_used_count %d, expert_group_count %d, expert_group_used_count %d: %s",
			pre, experts, used, groups, groupsUsed, why)
	}
	switch {
	case experts > maxExperts:
		return bad(fmt.Sprintf("want at most %d experts", maxExperts))
	case experts == 0 && (used != 0 || groups != 0):
		return bad("experts used or grouped, but none")
	case experts > 0 && (used == 0 || used > experts):
		return bad("want 1 to expert_count experts used per token")
	case experts > 0 && groups >= experts:
		return bad("want fewer groups than experts")
	case groups > 1 && (experts%groups != 0 || groupsUsed == 0 || groupsUsed >= groups):
		return bad("want groups that divide the experts, and 1 to expert_group_count-1 of them used")
	}
	return nil
}

// checkVocab checks the tokenizer arrays that llama.cpp reads as raw C
// arrays of the type it expects, indexed by token id without a bound
// check, or asserts on: tokens (strings, at least one, no duplicates),
// scores (float32) and token types (int32), one per token, and merges
// (strings). Special token ids out of range are llama.cpp's to ignore.
func (f *File) checkVocab() error {
	val, ok := f.Lookup(KeyTokens)
	if !ok {
		return nil
	}
	tokens, ok := val.Strings()
	if !ok {
		return f.errorf("key %s has type %s, want array of string", KeyTokens, val.typeName())
	}
	if len(tokens) == 0 {
		return f.errorf("key %s is empty, want the vocabulary", KeyTokens)
	}
	seen := make(map[string]int, len(tokens))
	for i, t := range tokens {
		if j, dup := seen[t]; dup {
			return f.errorf("key %s: tokens %d and %d are both %q, want each piece once", KeyTokens, j, i, t)
		}
		seen[t] = i
	}
	for _, a := range []struct {
		key  string
		elem ValueType
	}{{KeyScores, ValueFloat32}, {KeyTokenTypes, ValueInt32}} {
		v, ok := f.Lookup(a.key)
		if !ok {
			continue
		}
		if elem, _ := v.ElemType(); v.Type != ValueArray || elem != a.elem {
			return f.errorf("key %s has type %s, want array of %s", a.key, v.typeName(), a.elem)
		}
		if v.Len() != len(tokens) {
			return f.errorf("key %s has %d entries, want one per token (%d)", a.key, v.Len(), len(tokens))
		}
	}
	if v, ok := f.Lookup(KeyMerges); ok {
		if _, isStrings := v.Strings(); !isStrings {
			return f.errorf("key %s has type %s, want array of string", KeyMerges, v.typeName())
		}
	}
	return nil
}

// checkOverlap checks that no two tensors share data. Parse has checked
// that each lies inside the file; without this, a small file could make
// every tensor of a huge model point at the same bytes, and a loader that
// converts tensors to float32 would allocate the model it claims.
func (f *File) checkOverlap() error {
	ts := slices.Clone(f.Tensors)
	slices.SortFunc(ts, func(a, b TensorInfo) int { return cmp.Compare(a.Offset, b.Offset) })
	var prev TensorInfo // the last tensor with data; no earlier one ends after it
	var end uint64      // where its data ends
	for _, t := range ts {
		if t.Bytes() == 0 {
			continue
		}
		if t.Offset < end {
			return f.errorf("tensors %q and %q overlap: data at offset %d starts inside [%d, %d)", prev.Name, t.Name, t.Offset, prev.Offset, end)
		}
		prev, end = t, t.Offset+t.Bytes()
	}
	return nil
}

// checkFloats checks that a float value (or every element of a float
// array) is finite, and that an epsilon is not negative: ggml's norms
// assert eps >= 0, which NaN fails too.
func (f *File) checkFloats(kv KV) error {
	v := kv.Value
	n := 1
	if elem, ok := v.ElemType(); ok {
		if elem != ValueFloat32 && elem != ValueFloat64 {
			return nil
		}
		n = v.Len()
	} else if v.Type != ValueFloat32 && v.Type != ValueFloat64 {
		return nil
	}
	for i := range n {
		e := v
		where := ""
		if v.Type == ValueArray {
			e, where = v.Index(i), fmt.Sprintf(" element %d", i)
		}
		x, _ := e.Float64()
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return f.errorf("key %s%s is %g, want a finite number", kv.Key, where, x)
		}
		if strings.HasSuffix(kv.Key, "epsilon") && x < 0 {
			return f.errorf("key %s%s is %g, want a non-negative epsilon", kv.Key, where, x)
		}
	}
	return nil
}

// checkCount checks an integer key, when present as a scalar (some
// architectures store per-layer arrays, which llama.cpp bounds itself).
func (f *File) checkCount(key string, lo, hi uint64) error {
	v, ok := f.Lookup(key)
	if !ok || v.Type == ValueArray {
		return nil
	}
	n, ok := v.Uint64()
	if !ok {
		if _, isInt := v.Int64(); !isInt {
			return f.errorf("key %s has type %s, want an integer", key, v.typeName())
		}
		return f.errorf("key %s is negative, want %d to %d", key, lo, hi)
	}
	if n < lo || n > hi {
		return f.errorf("key %s is %d, want %d to %d", key, n, lo, hi)
	}
	return nil
}

// checkBlocks checks block_count against the blk.N.* tensors: none may lie
// beyond the last block. (Blocks without tensors are llama.cpp's to report,
// as the missing tensor it needs; a vocab-only file has none at all.)
func (f *File) checkBlocks(key string) error {
	v, ok := f.Lookup(key)
	if !ok {
		return nil
	}
	count, _ := v.Uint64()
	last := -1
	for _, t := range f.Tensors {
		rest, ok := strings.CutPrefix(t.Name, "blk.")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(num); err == nil && i > last {
			last = i
		}
	}
	if uint64(last+1) > count {
		return f.errorf("key %s is %d, but the file has tensors of block blk.%d: want at least %d", key, count, last, last+1)
	}
	return nil
}

// checkHeads checks that scalar head counts divide as attention needs:
// query heads into groups of key/value heads, and the embedding into heads
// when no explicit attention.key_length says otherwise.
func (f *File) checkHeads(pre string) error {
	scalar := func(key string) (uint64, bool) {
		v, ok := f.Lookup(pre + key)
		if !ok || v.Type == ValueArray {
			return 0, false
		}
		return v.Uint64()
	}
	heads, ok := scalar("attention.head_count")
	if !ok || heads == 0 {
		return nil
	}
	if kv, ok := scalar("attention.head_count_kv"); ok && kv > 0 && heads%kv != 0 {
		return f.errorf("key %sattention.head_count %d is not a multiple of %sattention.head_count_kv %d", pre, heads, pre, kv)
	}
	if _, explicit := f.Lookup(pre + "attention.key_length"); !explicit {
		if embd, ok := scalar("embedding_length"); ok && embd%heads != 0 {
			return f.errorf("key %sembedding_length %d is not a multiple of %sattention.head_count %d", pre, embd, pre, heads)
		}
	}
	return nil
}
