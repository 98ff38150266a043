package control

import (
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
