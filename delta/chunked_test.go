package delta

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// TestTrainRowsMatchesBackward: the chunked classifier gives the loss and
// the gradients of ForwardAt + cross-entropy + Backward, whatever the chunk.
func TestTrainRowsMatchesBackward(t *testing.T) {
	cfg := Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 40, SeqLen: 8, SharedClassifier: true}
	const B, T = 2, 8
	pool := kernels.NewPool(2)
	defer pool.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	ids := randomIDs(rng, B*T, cfg.VocabSize)
	rows := []int32{1, 2, 3, 6, 9, 10, 15} // cut into chunks by each ends below
	targets := randomIDs(rng, len(rows), cfg.VocabSize)
	bias := make([]float32, len(rows)*cfg.VocabSize)
	for i := range bias {
		bias[i] = float32(rng.NormFloat64())
	}

	ref, err := New(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	ref.Pool = pool
	logits := ref.ForwardAt(ids, B, T, rows)
	want, _ := BiasedCrossEntropySum(pool, logits, bias, targets, cfg.VocabSize, 0.1, 0)
	ref.Backward(logits)

	for _, ends := range [][]int{{1, 2, 3, 4, 5, 6, 7}, {3, 6, 7}, {1, 7}, {7}} {
		m, _ := New(cfg, 7)
		m.Pool = pool
		var got float64
		err := m.TrainRows(ids, B, T, rows, ends, func(lo, hi int, logits []float32) error {
			v := cfg.VocabSize
			s, _ := BiasedCrossEntropySum(pool, logits, bias[lo*v:hi*v], targets[lo:hi], v, 0.1, 0)
			got += s
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		chunk := ends
		if math.Abs(got-want) > 1e-5*math.Abs(want) {
			t.Errorf("chunk %d: loss %.7f, want %.7f", chunk, got, want)
		}
		for i := range ref.Grads {
			if d := math.Abs(float64(m.Grads[i] - ref.Grads[i])); d > 1e-5 {
				t.Fatalf("chunk %d: gradient %d is %g, Backward gives %g", chunk, i, m.Grads[i], ref.Grads[i])
			}
		}
		if slices.Equal(m.Grads, make([]float32, len(m.Grads))) {
			t.Fatalf("chunk %d: no gradient", chunk)
		}
	}
}

// TestTrainRowsStopsOnLossError: an error from the loss ends the pass there.
func TestTrainRowsStopsOnLossError(t *testing.T) {
	m, err := New(Config{Dim: 16, HiddenDim: 24, NLayers: 1, NHeads: 2, NKVHeads: 2, VocabSize: 12, SeqLen: 4, SharedClassifier: true}, 1)
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("interrupted")
	calls := 0
	err = m.TrainRows([]int32{1, 2, 3, 4}, 1, 4, []int32{0, 1, 2}, []int{1, 2, 3}, func(lo, hi int, logits []float32) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("TrainRows returned %v after %d chunks, want the loss's error after 1", err, calls)
	}
}
