package control

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// failingLM fails the Append that would make its context failAt tokens
// long, after decoding part of it, as an aborted llama_decode may.
type failingLM struct {
	*historyLM
	failAt int
}

func (f failingLM) Append(tokens []int32) ([]float32, error) {
	if len(f.ctx)+len(tokens) >= f.failAt {
		f.ctx = append(f.ctx, tokens[:1]...)
		return nil, errors.New("decode failed")
	}
	return f.historyLM.Append(tokens)
}

func TestReusePrefixDecodesOnlyTheNewPart(t *testing.T) {
	lm := newHistoryLM(5, 1)
	tr := Track(lm)
	first := []int32{1, 2, 3, 4, 5}
	if keep, err := reusePrefix(tr, first); err != nil || keep != 0 {
		t.Fatalf("empty cache: keep %d, %v", keep, err)
	}
	if _, err := tr.Append(first); err != nil {
		t.Fatal(err)
	}
	// The next turn extends the first: only its new tokens are decoded, and
	// the logits equal those of decoding the whole prompt from scratch.
	second := append(slices.Clone(first), 6, 7)
	keep, err := reusePrefix(tr, second)
	if err != nil || keep != len(first) {
		t.Fatalf("extension: keep %d, %v; want %d", keep, err, len(first))
	}
	lm.decoded = 0
	got, err := tr.Append(second[keep:])
	if err != nil {
		t.Fatal(err)
	}
	if lm.decoded != 2 {
		t.Errorf("decoded %d tokens, want the 2 new ones", lm.decoded)
	}
	fresh := newHistoryLM(5, 1)
	want, _ := fresh.Append(second)
	if !slices.Equal(got, want) {
		t.Errorf("logits after reuse %v, from scratch %v", got, want)
	}
	if !slices.Equal(tr.Tokens(), second) {
		t.Errorf("record %v, want %v", tr.Tokens(), second)
	}

	// The same prompt again: its last token is decoded again for its logits.
	if keep, _ := reusePrefix(tr, second); keep != len(second)-1 || lm.Len() != len(second)-1 {
		t.Errorf("same prompt: keep %d, context %d; want %d", keep, lm.Len(), len(second)-1)
	}
	// A prompt that differs at index 2 keeps two tokens.
	if keep, _ := reusePrefix(tr, []int32{1, 2, 9, 9}); keep != 2 || lm.Len() != 2 || !slices.Equal(tr.Tokens(), []int32{1, 2}) {
		t.Errorf("divergent prompt: keep %d, context %v", keep, tr.Tokens())
	}
}

func TestTrackedForgetsAfterAFailedDecode(t *testing.T) {
	lm := newHistoryLM(5, 1)
	tr := Track(failingLM{lm, 6})
	if _, err := tr.Append([]int32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Append([]int32{4, 5, 6}); err == nil {
		t.Fatal("the failing decode succeeded")
	}
	if lm.Len() != 0 || len(tr.Tokens()) != 0 {
		t.Errorf("after a failed decode: context %d, record %v; want both empty", lm.Len(), tr.Tokens())
	}
	if keep, _ := reusePrefix(tr, []int32{1, 2, 3, 4}); keep != 0 {
		t.Errorf("keep %d after a failure, want 0", keep)
	}
}

// An LM that reports no tokens is emptied rather than trusted.
func TestReusePrefixWithoutARecordStartsOver(t *testing.T) {
	lm := newHistoryLM(5, 1)
	lm.Append([]int32{1, 2, 3})
	if keep, err := reusePrefix(lm, []int32{1, 2, 3, 4}); err != nil || keep != 0 || lm.Len() != 0 {
		t.Errorf("keep %d, context %d, %v; want 0, 0", keep, lm.Len(), err)
	}
}

// TestGenerateReusesTheCacheAcrossTurns: the second turn of a conversation
// (its prompt extends the first turn's prompt and answer) decodes only the
// new tokens of both models, and gives the same text as a generation on
// empty contexts; also when inexact map entries re-tokenise the delta's text.
func TestGenerateReusesTheCacheAcrossTurns(t *testing.T) {
	const vocab = 7
	identity := &TokenMap{ToDelta: []int32{0, 1, 2, 3, 4, 5, 6}, Exact: []bool{true, true, false, true, false, true, true}}
	for _, m := range []*TokenMap{nil, identity} {
		newGen := func() (*Generator, *historyLM, *historyLM) {
			u, d := newHistoryLM(vocab, 3), newHistoryLM(vocab, 4)
			return &Generator{User: Track(u), UserTok: alphabet{}, Delta: Track(d), DeltaTok: alphabet{}, Map: m, Alpha: 1.5}, u, d
		}
		opt := Options{MaxTokens: 8}
		g, user, delta := newGen()
		p1 := []int32{0, 1, 2, 3, 4, 5, 6, 1, 2, 3}
		d1 := []int32{0, 6, 5, 4}
		r1, err := g.Generate(context.Background(), p1, d1, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r1.CachedTokens != 0 {
			t.Errorf("first turn: %d cached tokens, want 0", r1.CachedTokens)
		}
		p2 := append(append(slices.Clone(p1), r1.Tokens...), 4, 4, 0)
		d2 := append(append(slices.Clone(d1), r1.Tokens...), 4, 4, 0)
		user.decoded, delta.decoded = 0, 0
		r2, err := g.Generate(context.Background(), p2, d2, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r2.CachedTokens < len(p1)*9/10 {
			t.Errorf("map %v: second turn reused %d of the first prompt's %d tokens, want at least 90%%", m != nil, r2.CachedTokens, len(p1))
		}
		fresh, _, _ := newGen()
		want, err := fresh.Generate(context.Background(), p2, d2, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r2.Text != want.Text || !slices.Equal(r2.Tokens, want.Tokens) {
			t.Errorf("map %v: second turn %q with the cache, %q on empty contexts", m != nil, r2.Text, want.Text)
		}
		if newTokens := len(p2) - r2.CachedTokens; user.decoded > newTokens+len(r2.Tokens) {
			t.Errorf("map %v: the user model decoded %d tokens for %d new prompt tokens and %d generated", m != nil, user.decoded, newTokens, len(r2.Tokens))
		}
		if delta.decoded >= len(d2) {
			t.Errorf("map %v: the delta decoded %d tokens, its whole prompt has %d: nothing was reused", m != nil, delta.decoded, len(d2))
		}

		// A prompt that leaves the cached text after the first turn's
		// prompt (an edited message) keeps only what they share.
		other := (r1.Tokens[0] + 1) % vocab
		p3 := append(slices.Clone(p1), other, other)
		d3 := append(slices.Clone(d1), other)
		r3, err := g.Generate(context.Background(), p3, d3, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		fresh, _, _ = newGen()
		want3, err := fresh.Generate(context.Background(), p3, d3, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r3.CachedTokens != len(p1) || r3.Text != want3.Text {
			t.Errorf("map %v: an edited turn: %d cached (want %d), %q (want %q)", m != nil, r3.CachedTokens, len(p1), r3.Text, want3.Text)
		}
	}
}
