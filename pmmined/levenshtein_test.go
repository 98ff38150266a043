package pmmined

import (
	"math/rand/v2"
	"testing"
)

// plainLevenshtein is the textbook full-table distance.
func plainLevenshtein(a, b []rune) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j-1]+cost, d[i-1][j]+1, d[i][j-1]+1)
		}
	}
	return d[len(a)][len(b)]
}

func TestBoundedLevenshtein(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func() []rune {
		w := make([]rune, rng.IntN(15))
		for i := range w {
			w[i] = rune('a' + rng.IntN(3)) // a small alphabet makes near misses common
		}
		return w
	}
	var l levenshtein
	for range 20000 {
		a, b, bound := word(), word(), rng.IntN(6)
		want := plainLevenshtein(a, b)
		got := l.bounded(a, b, bound)
		if (want <= bound && got != want) || (want > bound && got <= bound) {
			t.Fatalf("bounded(%q, %q, %d) = %d, distance is %d", string(a), string(b), bound, got, want)
		}
	}
}
