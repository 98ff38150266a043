package llama

import (
	"errors"
	"slices"
	"testing"
)

// TestSequenceLogitsEach: the logits at chosen positions are those rows of
// the logits of every position, handed over batch by batch, and bad
// positions are refused.
func TestSequenceLogitsEach(t *testing.T) {
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
	var at []float32
	var handed []int
	collect := func(rows []float32) error {
		at = append(at, rows...)
		handed = append(handed, len(rows)/v)
		return nil
	}
	if err := ctx.SequenceLogitsEach(seq, positions, collect); err != nil {
		t.Fatal(err)
	}
	// batches of 16 tokens: positions 0, 3, 15 | 16, 17 | the last
	if want := []int{3, 2, 1}; !slices.Equal(handed, want) {
		t.Errorf("rows handed over %v, want %v", handed, want)
	}
	for j, p := range positions {
		if d := maxAbsDiff(at[j*v:(j+1)*v], all[int(p)*v:int(p+1)*v]); d > 1e-4 {
			t.Errorf("position %d differs from the full decode by %g", p, d)
		}
	}
	if err := ctx.SequenceLogitsEach(seq, nil, func([]float32) error { t.Error("rows without positions"); return nil }); err != nil {
		t.Errorf("no positions: %v", err)
	}
	for _, bad := range [][]int32{{3, 3}, {5, 2}, {-1}, {int32(len(seq))}} {
		if err := ctx.SequenceLogitsEach(seq, bad, collect); err == nil {
			t.Errorf("positions %v accepted", bad)
		}
	}
	long := make([]int32, ctx.Size()+1)
	if err := ctx.SequenceLogitsEach(long, []int32{0}, collect); !errors.Is(err, ErrContextFull) {
		t.Errorf("a sequence longer than the context: %v", err)
	}
	stop := errors.New("enough")
	if err := ctx.SequenceLogitsEach(seq, positions, func([]float32) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("emit's error: got %v", err)
	}
}
