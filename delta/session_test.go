package delta

import (
	"testing"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// A prompt decoded at once (matrix-matrix products over its positions, the
// row-wise steps on the pool) must leave the session where decoding it one
// token at a time does: the same logits after it and the same cache, so
// that the continuations agree too.
func TestPrefillMatchesTokenByToken(t *testing.T) {
	m := load260KBin(t)
	m.Pool = kernels.NewPool(2)
	defer m.Pool.Close()
	V := m.Config.VocabSize
	prompt := make([]int32, 150) // more than one causalBlock of rows
	for i := range prompt {
		prompt[i] = int32((i*31 + 11) % V)
	}

	batch, single := m.NewSession(8), m.NewSession(8)
	got := append([]float32(nil), batch.Decode(prompt)...)
	var want []float32
	for i := range prompt {
		want = single.Decode(prompt[i : i+1])
	}
	if batch.Len() != len(prompt) || single.Len() != len(prompt) {
		t.Fatalf("lengths %d and %d after a %d-token prompt", batch.Len(), single.Len(), len(prompt))
	}
	if d := maxAbsDiff(got, want); d > 1e-4 {
		t.Fatalf("after the prompt: batch vs token by token max |diff| = %g, want ≤ 1e-4", d)
	}
	for _, id := range []int32{7, 300, 42} {
		got := append([]float32(nil), batch.Decode([]int32{id})...)
		want := single.Decode([]int32{id})
		if d := maxAbsDiff(got, want); d > 1e-4 {
			t.Fatalf("token %d after the prompt: max |diff| = %g, want ≤ 1e-4", id, d)
		}
	}
}
