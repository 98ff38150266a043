package delta

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestCrossEntropy compares the loss and d(loss)/d(logits) with a float64
// computation written from the definition, and the gradient with central
// differences of that definition.
func TestCrossEntropy(t *testing.T) {
	const V = 7
	rng := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, 4*V)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	targets := []int32{2, Ignore, 5, 0}
	ref := func(l []float64) float64 {
		var loss float64
		count := 0
		for i, y := range targets {
			if y == Ignore {
				continue
			}
			var z float64
			for _, v := range l[i*V : (i+1)*V] {
				z += math.Exp(v)
			}
			loss += math.Log(z) - l[i*V+int(y)]
			count++
		}
		return loss / float64(count)
	}
	l64 := make([]float64, len(logits))
	for i, v := range logits {
		l64[i] = float64(v)
	}
	want := ref(l64)
	got := CrossEntropy(nil, logits, targets, V)
	if math.Abs(got-want) > 1e-5 {
		t.Fatalf("loss %v, want %v", got, want)
	}
	const h = 1e-6
	for i := range l64 {
		x := l64[i]
		l64[i] = x + h
		up := ref(l64)
		l64[i] = x - h
		down := ref(l64)
		l64[i] = x
		if num := (up - down) / (2 * h); math.Abs(num-float64(logits[i])) > 1e-5 {
			t.Errorf("dlogits[%d] = %v, finite difference %v", i, logits[i], num)
		}
	}
}

// BiasedCrossEntropy is CrossEntropy of logits + bias, whatever constant
// each bias row carries, with the gradient scaled.
func TestBiasedCrossEntropy(t *testing.T) {
	const V = 11
	rng := rand.New(rand.NewPCG(3, 4))
	targets := []int32{4, Ignore, 0, 10, 7}
	logits := make([]float32, len(targets)*V)
	bias := make([]float32, len(logits))
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 2)
		bias[i] = float32(rng.NormFloat64() * 2)
	}
	sum := make([]float32, len(logits))
	for i := range sum {
		sum[i] = logits[i] + bias[i]
	}
	want := CrossEntropy(nil, sum, targets, V)
	shifted := slices.Clone(bias) // log-probs vs logits: a constant per row
	for i := range shifted {
		shifted[i] += float32(i / V)
	}
	got, count := BiasedCrossEntropy(nil, logits, shifted, targets, V, -0.5)
	if count != 4 || math.Abs(got-want) > 1e-5 {
		t.Fatalf("loss %v over %d positions, want %v over 4", got, count, want)
	}
	for i := range logits {
		if d := math.Abs(float64(logits[i] + 0.5*sum[i])); d > 1e-6 {
			t.Fatalf("gradient %d: %v, want −0.5 × %v", i, logits[i], sum[i])
		}
	}
}

// randomWellConditioned returns a tiny model whose weights are large enough
// for every gradient to matter in float32 finite differences.
func randomWellConditioned(t *testing.T, shared bool, seed uint64) *Model {
	c := Config{Dim: 16, HiddenDim: 20, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 13, SeqLen: 8, SharedClassifier: shared}
	m, err := New(c, seed)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, ts := range m.Tensors {
		p := m.TensorData(ts)
		for i := range p {
			if ts.Matrix {
				p[i] = float32(rng.NormFloat64() * 0.35)
			} else {
				p[i] = float32(1 + 0.3*rng.NormFloat64())
			}
		}
	}
	return m
}

// TestGradientsFiniteDifferences checks Backward against central
// differences of the forward pass for sampled entries of every parameter
// tensor of every layer, with a tied and an untied classifier, and a
// sequence longer than one block of the attention's causal tiling. The loss is a
// fixed random linear function of all logits, so that every logit's
// gradient path is exercised with O(1) weight.
func TestGradientsFiniteDifferences(t *testing.T) {
	for _, tc := range []struct {
		shared bool
		B, T   int
	}{
		{true, 2, 5},
		{false, 2, 5},
		{true, 1, causalBlock + 7}, // more than one block of attention rows
	} {
		t.Run(fmt.Sprintf("shared=%v/B=%d/T=%d", tc.shared, tc.B, tc.T), func(t *testing.T) {
			m := randomWellConditioned(t, tc.shared, 3)
			B, T := tc.B, tc.T
			rng := rand.New(rand.NewPCG(9, 9))
			ids := make([]int32, B*T)
			for i := range ids {
				ids[i] = int32(rng.IntN(m.Config.VocabSize))
			}
			r := make([]float32, B*T*m.Config.VocabSize)
			for i := range r {
				r[i] = float32(rng.NormFloat64())
			}
			loss := func() float64 {
				var l float64
				for i, v := range m.Forward(ids, B, T) {
					l += float64(r[i]) * float64(v)
				}
				return l
			}

			m.ZeroGrad()
			copy(m.Forward(ids, B, T), r)
			m.Backward(r)
			grads := append([]float32(nil), m.Grads...)

			for _, ts := range m.Tensors {
				for range 4 {
					i := ts.Offset + rng.IntN(ts.Size())
					num, got := richardson(func(h float32) float64 {
						x := m.Params[i]
						m.Params[i] = x + h
						up := loss()
						m.Params[i] = x - h
						down := loss()
						m.Params[i] = x
						// divide by the step float32 really took
						return (up - down) / (float64(x+h) - float64(x-h))
					}), float64(grads[i])
					if math.Abs(num-got) > 1e-2*math.Max(math.Abs(num), math.Abs(got))+2e-3 {
						t.Errorf("%s layer %d element %d: gradient %.6g, finite difference %.6g", ts.Name, ts.Layer, i-ts.Offset, got, num)
					}
				}
			}
		})
	}
}

// richardson combines central differences at steps h and h/2 so that their
// O(h²) errors cancel: (4·D(h/2) − D(h))/3 is exact up to O(h⁴). A single
// float32 difference needs a step so small that roundoff dominates.
func richardson(diff func(h float32) float64) float64 {
	const h = 1e-2
	return (4*diff(h/2) - diff(h)) / 3
}

// sigmoids against math.Exp, and maxOf.
func TestSigmoidsAndMax(t *testing.T) {
	xs := make([]float32, 0, 4000)
	for x := float32(-100); x <= 80; x += 0.0471 {
		xs = append(xs, x)
	}
	sig := make([]float32, len(xs))
	sigmoids(sig, xs)
	for i, x := range xs {
		want := 1 / (1 + math.Exp(-float64(x)))
		if got := float64(sig[i]); math.Abs(got-want) > 4e-7*want+1e-37 {
			t.Fatalf("σ(%v) = %v, want %v", x, got, want)
		}
	}
	if m := maxOf(xs[:len(xs)-1]); m != xs[len(xs)-2] {
		t.Fatalf("maxOf = %v, want %v", m, xs[len(xs)-2])
	}
}
