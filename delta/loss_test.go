package delta

import (
	"math"
	"math/rand/v2"
	"slices"
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
	// An anchored row is counted too.
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		logits = make([]float32, vocab)
		logits[3] = bad
		if loss, _ := BiasedCrossEntropy(p, logits, make([]float32, vocab), []int32{Anchor}, vocab, 1); !math.IsNaN(loss) {
			t.Errorf("logit %v in an anchored row: loss %v, want NaN", bad, loss)
		}
	}
	// An ignored row does not count, whatever it holds.
	logits = make([]float32, len(targets)*vocab)
	logits[vocab] = float32(math.NaN())
	if loss := CrossEntropy(p, logits, targets, vocab); math.IsNaN(loss) {
		t.Error("a NaN in an ignored row made the loss NaN")
	}
}

// anchorLoss64 is anchorLoss in float64, the reference of the tests:
// KL(softmax(bias) ‖ softmax(d + bias)) + lambda·Var(d).
func anchorLoss64(bias []float32, d []float64, lambda float64) float64 {
	var sb, sz, mean float64
	for j, b := range bias {
		sb += math.Exp(float64(b))
		sz += math.Exp(float64(b) + d[j])
		mean += d[j] / float64(len(d))
	}
	kl, v := 0.0, 0.0
	for j, b := range bias {
		if pj := math.Exp(float64(b)) / sb; pj > 0 {
			kl += pj * (math.Log(pj) - (float64(b) + d[j] - math.Log(sz)))
		}
		v += (d[j] - mean) * (d[j] - mean)
	}
	return kl + lambda*v/float64(len(d))
}

// TestAnchorKL: at an Anchor target the loss is KL(softmax(bias) ‖
// softmax(logits + bias)): zero for a flat delta row, its gradient
// matches finite differences of a float64 KL, and a −Inf bias (a token the
// template cache dropped) stays finite.
func TestAnchorKL(t *testing.T) {
	p := kernels.NewPool(1)
	bias := []float32{2, -1, 0.5, float32(math.Inf(-1)), 1}
	kl64 := func(d []float64) float64 { return anchorLoss64(bias, d, 0) }

	flat := []float32{3, 3, 3, 3, 3}
	if loss, n := BiasedCrossEntropySum(p, flat, bias, []int32{Anchor}, 5, 1, 0); n != 1 || math.Abs(loss) > 1e-6 {
		t.Errorf("flat delta: KL %g over %d rows, want 0 over 1", loss, n)
	}
	for j, g := range flat {
		if math.Abs(float64(g)) > 1e-6 {
			t.Errorf("flat delta: gradient[%d] = %g, want 0", j, g)
		}
	}

	d := []float64{0.3, -0.7, 1.2, 0.1, -0.2}
	row := make([]float32, len(d))
	for j, v := range d {
		row[j] = float32(v)
	}
	loss, _ := BiasedCrossEntropySum(p, row, bias, []int32{Anchor}, 5, 1, 0)
	if want := kl64(d); math.Abs(loss-want) > 1e-5 {
		t.Errorf("KL %g, want %g", loss, want)
	}
	for j := range d {
		up, down := slices.Clone(d), slices.Clone(d)
		up[j] += 1e-5
		down[j] -= 1e-5
		if num := (kl64(up) - kl64(down)) / 2e-5; math.Abs(float64(row[j])-num) > 1e-4 {
			t.Errorf("gradient[%d] = %g, finite differences %g", j, row[j], num)
		}
	}

	// A row longer than the chunks anchorLoss works in, with dropped tokens
	// among them, against the float64 KL and its gradient q − p.
	const vocab = 3*anchorChunk + 77
	r := rand.New(rand.NewPCG(4, 5))
	bias, d = make([]float32, vocab), make([]float64, vocab)
	row = make([]float32, vocab)
	for j := range bias {
		bias[j] = 3 * float32(r.NormFloat64())
		if j%97 == 5 {
			bias[j] = float32(math.Inf(-1))
		}
		d[j] = r.NormFloat64()
		row[j] = float32(d[j])
	}
	loss, _ = BiasedCrossEntropySum(p, row, bias, []int32{Anchor}, vocab, 1, 0)
	if want := kl64(d); math.Abs(loss-want) > 1e-4*math.Max(1, want) {
		t.Errorf("%d entries: KL %g, want %g", vocab, loss, want)
	}
	var sb, sz float64
	for j, b := range bias {
		sb += math.Exp(float64(b))
		sz += math.Exp(float64(b) + d[j])
	}
	for j, b := range bias {
		want := math.Exp(float64(b)+d[j])/sz - math.Exp(float64(b))/sb
		if math.Abs(float64(row[j])-want) > 1e-6 {
			t.Fatalf("%d entries: gradient[%d] = %g, want %g", vocab, j, row[j], want)
		}
	}
}

// TestAnchorFlatness: with a flatness weight λ the Anchor loss is the KL
// plus λ times the variance of the delta's row. Raising a token the
// template finds unlikely costs the KL almost nothing, and the variance
// term is what holds it; the gradient of the sum matches finite
// differences, in a row longer than anchorLoss's chunks.
func TestAnchorFlatness(t *testing.T) {
	p := kernels.NewPool(1)
	const vocab = 2*anchorChunk + 31
	const lambda = 0.7
	r := rand.New(rand.NewPCG(6, 7))
	bias := make([]float32, vocab)
	for j := range bias {
		bias[j] = 2 * float32(r.NormFloat64())
	}
	bias[9] = -30 // a token the template finds very unlikely
	run := func(d []float64, lambda float32) (float64, []float32) {
		row := make([]float32, vocab)
		for j, v := range d {
			row[j] = float32(v)
		}
		loss, _ := BiasedCrossEntropySum(p, row, bias, []int32{Anchor}, vocab, 1, lambda)
		return loss, row
	}

	raised := make([]float64, vocab)
	raised[9] = 20 // lifts the unlikely token to about e^-10 on the template, to the top on a surer model
	kl, _ := run(raised, 0)
	both, _ := run(raised, lambda)
	if kl > 1e-3 {
		t.Errorf("a raise of an unlikely token: KL %g, want almost 0", kl)
	}
	if want := lambda * 400 * (vocab - 1) / vocab / vocab; math.Abs(both-kl-want) > 1e-4 {
		t.Errorf("a raise of 20 at one of %d tokens: flatness term %g, want %g", vocab, both-kl, want)
	}

	d := make([]float64, vocab)
	for j := range d {
		d[j] = r.NormFloat64()
	}
	loss, grad := run(d, lambda)
	if want := anchorLoss64(bias, d, lambda); math.Abs(loss-want) > 1e-4*math.Max(1, want) {
		t.Errorf("loss %g, want %g", loss, want)
	}
	for _, j := range []int{0, 9, anchorChunk, vocab - 1} {
		up, down := slices.Clone(d), slices.Clone(d)
		up[j] += 1e-4
		down[j] -= 1e-4
		if num := (anchorLoss64(bias, up, lambda) - anchorLoss64(bias, down, lambda)) / 2e-4; math.Abs(float64(grad[j])-num) > 1e-5 {
			t.Errorf("gradient[%d] = %g, finite differences %g", j, grad[j], num)
		}
	}
}
