package pmmined_test

import (
	"fmt"

	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/vocab"
)

// A byte-level user vocabulary (as GPT-2 or Llama-3 spell it) mapped onto a
// SentencePiece delta vocabulary (as Llama-2 spells it).
func ExampleBuild() {
	user := &vocab.Vocab{
		Model:  "gpt2",
		Pieces: []string{"Ġthe", "Ġfishing", "Ċ", "<|endoftext|>"},
		Types:  []vocab.TokenType{vocab.TokenNormal, vocab.TokenNormal, vocab.TokenNormal, vocab.TokenControl},
		BOS:    3, EOS: 3, UNK: -1, PAD: -1,
	}
	delta := &vocab.Vocab{
		Model:  "llama",
		Pieces: []string{"<unk>", "<s>", "</s>", "<0x0A>", "▁the", "▁fish"},
		Types: []vocab.TokenType{vocab.TokenUnknown, vocab.TokenControl, vocab.TokenControl,
			vocab.TokenByte, vocab.TokenNormal, vocab.TokenNormal},
		BOS: 1, EOS: 2, UNK: 0, PAD: -1,
	}
	m, err := pmmined.Build(user, delta, pmmined.PMMinED)
	if err != nil {
		fmt.Println(err)
		return
	}
	for u, d := range m.ToDelta {
		fmt.Printf("%-15s -> %-8s %s\n", user.Display(int32(u)), delta.Display(d), m.Kind[u])
	}
	// Output:
	// " the"          -> " the"   exact
	// " fishing"      -> " fish"  prefix
	// "\n"            -> "\n"     byte
	// <|endoftext|>   -> </s>     special
}
