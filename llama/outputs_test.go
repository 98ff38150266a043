package llama

import (
	"errors"
	"slices"
	"testing"
)

// TestSequenceLogitsAt: the logits at chosen positions are those rows of
// the logits of every position, across batch boundaries, and bad
// positions are refused.
func TestSequenceLogitsAt(t *testing.T) {
	g := readGolden(t)
	m := loadModel(t, "models/stories260K/stories260K.gguf", ModelParams{})
	seq := append(slices.Clone(g.PromptIDs), g.GreedyIDs...)
	ctx, err := m.NewContext(ContextParams{Size: 128, Batch: 16, Threads: 1, KVF32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	v := ctx.VocabSize()
	all := make([]float32, len(seq)*v)
	if err := ctx.SequenceLogits(seq, all); err != nil {
		t.Fatal(err)
	}
	// positions in the first batch, on both sides of its end, and the last
	positions := []int32{0, 3, 15, 16, 17, int32(len(seq) - 1)}
	at := make([]float32, len(positions)*v)
	if err := ctx.SequenceLogitsAt(seq, positions, at); err != nil {
		t.Fatal(err)
	}
	for j, p := range positions {
		if d := maxAbsDiff(at[j*v:(j+1)*v], all[int(p)*v:int(p+1)*v]); d > 1e-4 {
			t.Errorf("position %d differs from the full decode by %g", p, d)
		}
	}
	if err := ctx.SequenceLogitsAt(seq, nil, nil); err != nil {
		t.Errorf("no positions: %v", err)
	}
	for _, bad := range [][]int32{{3, 3}, {5, 2}, {-1}, {int32(len(seq))}} {
		if err := ctx.SequenceLogitsAt(seq, bad, make([]float32, len(bad)*v)); err == nil {
			t.Errorf("positions %v accepted", bad)
		}
	}
	long := make([]int32, ctx.Size()+1)
	if err := ctx.SequenceLogitsAt(long, []int32{0}, make([]float32, v)); !errors.Is(err, ErrContextFull) {
		t.Errorf("a sequence longer than the context: %v", err)
	}
}
