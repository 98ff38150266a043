package metrics

import (
	"math"
	"slices"
)

// KSTest is the two-sided two-sample Kolmogorov-Smirnov test: d is the
// largest distance between the empirical distribution functions of a and
// b, and pValue the probability of a distance at least d when both samples
// come from the same continuous distribution. Both are NaN when a sample is
// empty or holds a NaN.
//
// The p-value is exact, as scipy.stats.ks_2samp computes it by default for
// samples of up to 10,000 values (beyond that scipy switches to an
// asymptotic formula and the two differ slightly). It takes
// O(len(a)·len(b)) time.
func KSTest(a, b []float64) (d, pValue float64) {
	if len(a) == 0 || len(b) == 0 || slices.ContainsFunc(a, math.IsNaN) || slices.ContainsFunc(b, math.IsNaN) {
		return math.NaN(), math.NaN()
	}
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))

	// Walk both sorted samples; after consuming every value <= v from
	// each, i/len(a) and j/len(b) are the two distribution functions at v.
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		v := math.Inf(1)
		if i < len(a) {
			v = a[i]
		}
		if j < len(b) {
			v = min(v, b[j])
		}
		for i < len(a) && a[i] <= v {
			i++
		}
		for j < len(b) && b[j] <= v {
			j++
		}
		d = max(d, math.Abs(float64(i)/float64(len(a))-float64(j)/float64(len(b))))
	}
	return ksSnap(d, len(a), len(b))
}

// ksSnap rounds d to the lattice it must lie on, a multiple of
// 1/lcm(m, n) (floating-point division leaves it a little off), and
// returns it with its p-value.
func ksSnap(d float64, m, n int) (float64, float64) {
	g := gcd(m, n)
	lcm := m / g * n
	h := int(math.Round(d * float64(lcm)))
	return float64(h) / float64(lcm), ksOutsideProbability(m, n, h*g)
}

// ksOutsideProbability is the probability that a random lattice path from
// (0, 0) to (m, n), each of the binomial(m+n, m) paths equally likely,
// touches |x·n - y·m| >= bound; with bound = d·m·n this is P(D >= d) for
// samples of sizes m and n (the path takes an x step for each value of
// the first sample in sorted order, a y step for each of the second).
//
// The walk's probability mass is carried forward row by row: from (x, y)
// the next value comes from the first sample with probability
// (m-x)/(m+n-x-y). Mass that reaches the boundary is added up rather than
// subtracted from 1, so that p-values far below 1e-16 keep their
// precision (TOFU's forget quality is reported on a log scale).
func ksOutsideProbability(m, n, bound int) float64 {
	if bound <= 0 {
		return 1
	}
	inside := func(x, y int) bool {
		diff := x*n - y*m
		return diff < bound && -diff < bound
	}
	outside := 0.0
	row, next := make([]float64, n+1), make([]float64, n+1)
	row[0] = 1
	for x := 0; x <= m; x++ {
		clear(next)
		for y := 0; y <= n; y++ {
			p := row[y]
			left := m + n - x - y
			if p == 0 || left == 0 {
				continue
			}
			if x < m {
				step := p * float64(m-x) / float64(left)
				if inside(x+1, y) {
					next[y] += step
				} else {
					outside += step
				}
			}
			if y < n {
				step := p * float64(n-y) / float64(left)
				if inside(x, y+1) {
					row[y+1] += step
				} else {
					outside += step
				}
			}
		}
		row, next = next, row
	}
	return min(outside, 1)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ForgetQuality is TOFU's headline unlearning score: the KS test p-value
// between the forget-set truth ratios of the unlearned model and those of a
// model that was never trained on the forget set (TOFU's "retain" model).
// High (near 1) means the two are indistinguishable, i.e. the forgetting
// is complete; TOFU plots it on a log scale. The orientation of the ratios
// does not matter: the KS distance is the same for R and 1/R.
func ForgetQuality(unlearnedRatios, retainModelRatios []float64) float64 {
	_, p := KSTest(unlearnedRatios, retainModelRatios)
	return p
}
