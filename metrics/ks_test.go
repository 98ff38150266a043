package metrics

import (
	"math"
	"testing"
)

// lattice makes a sample spread over [shift, shift+scale) in a scrambled
// order; testdata/make_golden.py builds the same samples for scipy.
func lattice(n, mult int, shift, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = shift + scale*float64(i*mult%1009)/1009
	}
	return v
}

func TestKSTest(t *testing.T) {
	// Expected values from scipy 1.10.1 stats.ks_2samp(a, b) (method
	// "auto", exact here), on the same samples built in Python as
	// shift + scale*((i*mult) % 1009)/1009.
	for _, tc := range []struct {
		name string
		a, b []float64
		d, p float64
	}{
		// Disjoint samples of 5: only 2 of the binomial(10, 5) = 252
		// orders reach D = 1.
		{"disjoint", []float64{1, 2, 3, 4, 5}, []float64{6, 7, 8, 9, 10}, 1, 2.0 / 252},
		{"identical", []float64{3, 1, 2}, []float64{2, 3, 1}, 0, 1},
		{"ties", []float64{1, 1, 2, 2, 3}, []float64{1, 2, 2, 3, 3}, 0.2, 1},
		// 102 of the 120 arrangements of 7 and 3 values (counted by brute
		// force) reach the observed distance 8/21.
		{"unequal 7x3", []float64{0.1, 0.4, 0.5, 0.9, 1.3, 1.5, 2.0}, []float64{0.45, 1.4, 2.5}, 8.0 / 21, 0.85},
		{"shift 400", lattice(400, 37, 0, 1), lattice(400, 53, 0.1, 1), 0.1275, 0.0029708770428139948},
		{"far 400", lattice(400, 37, 0, 1), lattice(400, 53, 0.8, 1), 0.82, 6.7825939620145594e-136},
		{"unequal 300x200", lattice(300, 37, 0, 1), lattice(200, 53, 0.05, 1.2), 0.22333333333333333, 1.0532445539641434e-05},
		{"unequal 40x25", lattice(40, 37, 0, 1), lattice(25, 53, 0.3, 1), 0.435, 0.0038920280763374564},
	} {
		d, p := KSTest(tc.a, tc.b)
		if !near(d, tc.d) || math.Abs(p-tc.p) > 1e-9*tc.p {
			t.Errorf("%s: KSTest = (%v, %v), want (%v, %v)", tc.name, d, p, tc.d, tc.p)
		}
		// The test is symmetric in its samples.
		if d2, p2 := KSTest(tc.b, tc.a); d2 != d || math.Abs(p2-p) > 1e-12*p {
			t.Errorf("%s: swapped samples give (%v, %v), not (%v, %v)", tc.name, d2, p2, d, p)
		}
	}

	if d, p := KSTest(nil, []float64{1}); !math.IsNaN(d) || !math.IsNaN(p) {
		t.Errorf("empty sample: (%v, %v), want NaN", d, p)
	}
	if _, p := KSTest([]float64{1, math.NaN()}, []float64{1}); !math.IsNaN(p) {
		t.Errorf("NaN in a sample: p = %v, want NaN", p)
	}
}

func TestForgetQuality(t *testing.T) {
	retain := lattice(400, 37, 0.2, 1)
	// Truth ratios drawn from the retain model's distribution: forgetting
	// is complete, the quality high. Shifted ones: quality collapses.
	same := ForgetQuality(lattice(400, 53, 0.2, 1), retain)
	shifted := ForgetQuality(lattice(400, 53, 1, 1), retain)
	if same < 0.5 || shifted > 1e-10 {
		t.Errorf("ForgetQuality: same distribution %v, shifted %v", same, shifted)
	}
	// Inverting every ratio (TOFU's code stores paraphrased/perturbed, the
	// paper perturbed/paraphrased) changes nothing.
	inv := func(r []float64) []float64 {
		out := make([]float64, len(r))
		for i, v := range r {
			out[i] = 1 / v
		}
		return out
	}
	unlearned := lattice(400, 53, 0.3, 1)
	if a, b := ForgetQuality(unlearned, retain), ForgetQuality(inv(unlearned), inv(retain)); math.Abs(a-b) > 1e-12*a {
		t.Errorf("ForgetQuality depends on the ratio's orientation: %v vs %v", a, b)
	}
}
