package control

import (
	"context"
	"testing"
)

// countingTok is the alphabet tokenizer that remembers the longest text it
// was given.
type countingTok struct {
	alphabet
	longest int
}

func (c *countingTok) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	c.longest = max(c.longest, len(text))
	return c.alphabet.Tokenize(text, addSpecial, parseSpecial)
}

// TestRetokeniseReadsABoundedTail: when every token is re-tokenised for the
// delta, each re-tokenisation reads a bounded tail of the text, not the
// whole text, and the delta's context ends up as re-tokenising everything
// would make it.
func TestRetokeniseReadsABoundedTail(t *testing.T) {
	const vocab, n = 7, 400
	inexact := &TokenMap{ToDelta: []int32{0, 1, 2, 3, 4, 5, 6}, Exact: make([]bool, vocab)}
	tok := &countingTok{}
	delta := Track(newHistoryLM(vocab, 9))
	g := &Generator{User: newHistoryLM(vocab, 8), UserTok: alphabet{}, Delta: delta, DeltaTok: tok, Map: inexact, Alpha: 1}
	res, err := g.Generate(context.Background(), []int32{0, 1, 2}, []int32{3, 4}, Options{MaxTokens: n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) != n || res.DeltaRetokenised != n {
		t.Fatalf("%d tokens, %d re-tokenised; want %d of each", len(res.Tokens), res.DeltaRetokenised, n)
	}
	// deltaTail bytes, the token that crosses it, the anchor: far below n.
	if bound := 2 * deltaTail; tok.longest > bound || bound >= n {
		t.Errorf("a re-tokenisation read %d bytes of a %d-byte text, want at most %d", tok.longest, n, bound)
	}
	// The alphabet spells one token a byte: the context after the prompt is
	// the generated tokens (all but the last, not decoded yet).
	got := delta.Tokens()[2:]
	for i, id := range got {
		if id != res.Tokens[i] {
			t.Fatalf("delta context token %d is %d, generated %d", i, id, res.Tokens[i])
		}
	}
	if len(got) != n-1 {
		t.Errorf("delta context holds %d generated tokens, want %d", len(got), n-1)
	}
}
