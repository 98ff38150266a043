package pmmined

import "unicode/utf8"

// levenshtein computes edit distances (insert, delete, substitute, each
// costing 1) over units, reusing its rows between calls.
type levenshtein struct {
	prev, cur []int
}

// bounded returns the distance between a and b if it is at most bound, and
// some value above bound otherwise. Knowing the bound lets it give up as
// soon as a whole row of the table exceeds it, which is what makes MinED's
// scan of a whole vocabulary affordable.
func (l *levenshtein) bounded(a, b []rune, bound int) int {
	// A common prefix or suffix never needs editing.
	for len(a) > 0 && len(b) > 0 && a[0] == b[0] {
		a, b = a[1:], b[1:]
	}
	for len(a) > 0 && len(b) > 0 && a[len(a)-1] == b[len(b)-1] {
		a, b = a[:len(a)-1], b[:len(b)-1]
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(b)-len(a) > bound {
		return bound + 1
	}
	if len(a) == 0 {
		return len(b)
	}
	if cap(l.prev) < len(b)+1 {
		l.prev = make([]int, len(b)+1)
		l.cur = make([]int, len(b)+1)
	}
	prev, cur := l.prev[:len(b)+1], l.cur[:len(b)+1]
	// A cell further than bound from the diagonal costs more than bound,
	// so each row computes only the band around it; big stands for any
	// value above bound.
	big := bound + 1
	for j := range prev {
		prev[j] = min(j, big)
	}
	for i := 1; i <= len(a); i++ {
		lo, hi := max(1, i-bound), min(len(b), i+bound)
		cur[lo-1] = big
		if lo == 1 {
			cur[0] = min(i, big)
		}
		rowMin := cur[lo-1]
		for j := lo; j <= hi; j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			v := min(prev[j-1]+cost, prev[j]+1, cur[j-1]+1, big)
			cur[j] = v
			rowMin = min(rowMin, v)
		}
		if hi < len(b) {
			cur[hi+1] = big
		}
		if rowMin > bound {
			return big
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// textUnits counts the units edit distances are measured in: Unicode
// characters, with each byte that is not part of valid UTF-8 a unit of its own.
func textUnits(text string) int {
	return utf8.RuneCountInString(text)
}
