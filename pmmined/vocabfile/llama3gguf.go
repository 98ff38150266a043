package vocabfile

import (
	"cmp"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/vocab"
)

// WriteLlama3GGUF writes a vocabulary-only GGUF of Llama-3 (128256 tokens)
// to out from Meta's tiktoken rank file (tokenizer.model): the byte-level
// pieces, the BPE merges reconstructed from the ranks (MergesFromRanks), the 256 special
// tokens as control tokens, and the "llama-bpe" pre-tokenizer, with the
// hyper-parameters of Llama-3-8B, so that llama.cpp loads it (vocab-only)
// and tokenizes exactly as it does the GGUF of the real model. Tests and
// benchmarks make it at run time: at 3 MiB it is not worth committing.
func WriteLlama3GGUF(out, ranksPath string) error {
	v, err := ReadTiktoken(ranksPath, Llama3Specials())
	if err != nil {
		return err
	}
	merges, err := MergesFromRanks(v)
	if err != nil {
		return fmt.Errorf("tiktoken ranks %s: %w", ranksPath, err)
	}
	v.Pre, v.Merges = "llama-bpe", merges
	v.BOS, v.EOS, v.AddBOS = 128000, 128001, true
	w := gguf.NewWriter()
	w.SetString("general.architecture", "llama")
	w.SetString("general.name", "llama-3 vocabulary")
	for _, kv := range []struct {
		key   string
		value uint32
	}{
		{"llama.context_length", 8192},
		{"llama.embedding_length", 4096},
		{"llama.block_count", 32},
		{"llama.feed_forward_length", 14336},
		{"llama.attention.head_count", 32},
		{"llama.attention.head_count_kv", 8},
		{"llama.rope.dimension_count", 128},
		{"llama.vocab_size", uint32(len(v.Pieces))},
	} {
		w.SetUint32(kv.key, kv.value)
	}
	w.SetFloat32("llama.rope.freq_base", 500000)
	w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5)
	w.SetVocab(v)
	if err := w.WriteFile(out); err != nil {
		return fmt.Errorf("write the Llama-3 vocabulary: %w", err)
	}
	return nil
}

// MergesFromRanks reconstructs the BPE merges of a byte-level vocabulary
// whose ids are tiktoken ranks, as Hugging Face's tiktoken converter does
// (transformers' TikTokenConverter, which made Llama-3's tokenizer.json):
// for every multi-byte token, in rank order, every split of it into two
// tokens is a merge, the splits ordered by the ranks of their left and then
// right halves. Keeping only the split BPE itself would reach is not
// enough: tiktoken's ranks hold tokens such as ".:.:" that BPE on their
// own bytes never forms, and llama.cpp tokenizes Llama-3 with all of the
// splits. Merges are "LEFT RIGHT" in the vocabulary's byte-level encoding,
// the form of tokenizer.ggml.merges. Special (non-normal) tokens take no
// part.
func MergesFromRanks(v *vocab.Vocab) ([]string, error) {
	rank := make(map[string]int32, len(v.Pieces))
	for id, p := range v.Pieces {
		if v.Types[id] == vocab.TokenNormal {
			rank[p] = int32(id)
		}
	}
	type split struct {
		left, right string
		lr, rr      int32
	}
	var merges []string
	var splits []split // scratch: the splits of one token
	for id, piece := range v.Pieces {
		if v.Types[id] != vocab.TokenNormal || utf8.RuneCountInString(piece) == 1 {
			continue
		}
		// Byte-level pieces spell each byte as one rune, so splitting at
		// rune boundaries splits at every byte.
		splits = splits[:0]
		for i := range piece {
			if i == 0 {
				continue
			}
			l, lok := rank[piece[:i]]
			r, rok := rank[piece[i:]]
			if lok && rok {
				splits = append(splits, split{piece[:i], piece[i:], l, r})
			}
		}
		if len(splits) == 0 {
			return nil, fmt.Errorf("token %d %q: no split into two tokens (ranks not from BPE training?)", id, piece)
		}
		slices.SortFunc(splits, func(a, b split) int {
			return cmp.Or(cmp.Compare(a.lr, b.lr), cmp.Compare(a.rr, b.rr))
		})
		for _, s := range splits {
			merges = append(merges, s.left+" "+s.right)
		}
	}
	return merges, nil
}
