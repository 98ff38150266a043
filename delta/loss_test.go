package delta

import (
	"math"
	"testing"

	"github.com/cmc-dev/cmc/delta/kernels"
)

func TestFinite(t *testing.T) {
	for _, tc := range []struct {
		x    []float32
		want bool
	}{
		{nil, true},
		{[]float32{0, -0, 1, -1, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}, true},
		{[]float32{1, 2, float32(math.NaN())}, false},
		{[]float32{float32(math.Inf(1)), 2}, false},
		{[]float32{1, float32(math.Inf(-1))}, false},
	} {
		if got := finite(tc.x); got != tc.want {
			t.Errorf("finite(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
}

// TestCrossEntropyOfNonFiniteIsNaN: the softmax's clamped exponentials
// must not turn a NaN or +Inf logit, or template bias, into a finite loss:
// training has to see that something is wrong. −Inf is a probability of
// zero: harmless off the target, an infinite loss on it.
func TestCrossEntropyOfNonFiniteIsNaN(t *testing.T) {
	p := kernels.NewPool(1)
	defer p.Close()
	const vocab = 5
	targets := []int32{1, Ignore, 2}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		logits := make([]float32, len(targets)*vocab)
		logits[2*vocab+4] = bad // a counted row, not its target
		if loss := CrossEntropy(p, logits, targets, vocab); !math.IsNaN(loss) {
			t.Errorf("logit %v: loss %v, want NaN", bad, loss)
		}
		logits = make([]float32, len(targets)*vocab)
		bias := make([]float32, len(logits))
		bias[4] = bad
		if loss, _ := BiasedCrossEntropy(p, logits, bias, targets, vocab, 1); !math.IsNaN(loss) {
			t.Errorf("bias %v: loss %v, want NaN", bad, loss)
		}
	}
	ninf := float32(math.Inf(-1))
	logits := make([]float32, len(targets)*vocab)
	logits[2*vocab+4] = ninf
	if loss := CrossEntropy(p, logits, targets, vocab); math.IsNaN(loss) || math.IsInf(loss, 0) {
		t.Errorf("a -Inf logit off the target: loss %v, want finite", loss)
	}
	logits = make([]float32, len(targets)*vocab)
	logits[2*vocab+2] = ninf
	if loss := CrossEntropy(p, logits, targets, vocab); !math.IsInf(loss, 1) {
		t.Errorf("a -Inf logit at the target: loss %v, want +Inf", loss)
	}
	// An ignored row does not count, whatever it holds.
	logits = make([]float32, len(targets)*vocab)
	logits[vocab] = float32(math.NaN())
	if loss := CrossEntropy(p, logits, targets, vocab); math.IsNaN(loss) {
		t.Error("a NaN in an ignored row made the loss NaN")
	}
}
