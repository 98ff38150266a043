package control

import (
	"math"
	"math/rand/v2"
	"slices"
)

// SampleOptions choose how the next token is drawn from the scores.
type SampleOptions struct {
	// Temperature divides the scores before the softmax; 0 (or less) picks
	// the highest score (greedy).
	Temperature float64
	// TopK keeps only the K highest scores (0: all).
	TopK int
	// TopP keeps the smallest set of highest-probability tokens whose mass
	// reaches TopP (nucleus sampling; 0 or 1: all).
	TopP float64
	// Seed makes sampling reproducible.
	Seed uint64
}

// Sampler draws token ids from score vectors. It keeps its scratch buffers
// between calls so that sampling allocates nothing per token.
//
// Nothing here sorts the vocabulary: with a vocabulary of V tokens, top-k
// is a bounded min-heap (O(V log k)), the nucleus without top-k is found by
// a histogram of the probabilities, filled in the same pass as the
// exponentials, and a weighted selection inside the one histogram bucket
// where the nucleus ends (O(V)), and plain temperature sampling is a
// softmax and one walk (O(V)). Only the k survivors of top-k are sorted
// when top-p then needs their order. The V exponentials per token are the
// remaining cost; they go through a table (weigh) at about a quarter of
// math.Exp's time.
type Sampler struct {
	opt SampleOptions
	rng *rand.Rand
	// weight[id] is exp((score[id] − best) / T), the unnormalised
	// probability, for the ids that may be drawn (other entries are
	// stale). Those ids are, by mode: cand (top-k, with or without top-p),
	// every id (all: plain temperature; weight[id] may be 0), or the ids
	// in the histogram's buckets above cut and those in tail (the nucleus
	// of the whole vocabulary: a list of most of a flat vocabulary would
	// cost a pass of its own).
	weight []float64
	cand   []int32
	all    bool
	tail   []int32
	// nucleus is set when the ids are those of the buckets below cut (in
	// hist) and tail.
	nucleus bool
	cut     uint16
	exp     expTable
	hist    nucleusHist
}

// nucleusHist is the histogram of the probability mass by score that
// top-p without top-k cuts: bucket[id] is the bucket of token id (noBucket
// when its weight is 0) and mass[b] the sum of the weights in bucket b.
type nucleusHist struct {
	bucket []uint16
	mass   [nucleusBuckets]float64
}

// The nucleus histogram: the exponential (weigh) writes the scaled score
// x = (score − best)/T ≤ 0 as k·ln2/64 + r with k the nearest integer, and
// bucket b holds the tokens with −k in [8b, 8b+8): 0.087 nats each, so 512
// buckets span 44 nats, and the last also takes everything below, whose
// probability relative to the best token is under e^−44 ≈ 1e−19. Any
// bucketing that is monotone in the score finds the same nucleus; the
// sizes only trade the cost of the final selection against that of the
// histogram, and taking them from k costs the pass nothing.
const (
	// maxListedNucleus is the most tokens above the cut bucket that are
	// listed in cand; a larger nucleus is drawn by a walk over the buckets.
	maxListedNucleus = 4096
	nucleusBuckets   = 512
	bucketShift      = 3 // −k >> bucketShift is the bucket
	noBucket         = math.MaxUint16
)

// NewSampler returns a sampler for vocabularies of n tokens.
func NewSampler(opt SampleOptions, n int) *Sampler {
	s := &Sampler{opt: opt, rng: rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15))}
	if opt.Temperature > 0 {
		s.grow(n)
		s.exp = newExpTable()
	}
	return s
}

// grow sizes the scratch buffers for a vocabulary of n tokens; it
// allocates only when n exceeds every size seen before.
func (s *Sampler) grow(n int) {
	if len(s.weight) < n {
		s.weight = make([]float64, n)
		s.cand = make([]int32, 0, n)
		s.tail = make([]int32, 0, n)
		s.hist.bucket = make([]uint16, n)
	}
}

// Sample returns the chosen token id.
func (s *Sampler) Sample(scores []float32) int32 {
	if s.opt.Temperature <= 0 {
		return argmax(scores)
	}
	s.grow(len(scores))
	sum := s.candidates(scores)
	if !(sum > 0) {
		// Every score is −Inf or NaN: nothing has a probability.
		return argmax(scores)
	}
	r := s.rng.Float64() * sum
	if s.nucleus {
		return s.drawNucleus(r)
	}
	if s.all {
		last := int32(0)
		for id, w := range s.weight[:len(scores)] {
			if r < w {
				return int32(id)
			}
			r -= w
			if w > 0 {
				last = int32(id)
			}
		}
		return last // rounding left r a hair above the last weight
	}
	for _, id := range s.cand {
		w := s.weight[id]
		if r < w {
			return id
		}
		r -= w
	}
	for i := len(s.cand) - 1; ; i-- {
		if s.weight[s.cand[i]] > 0 {
			return s.cand[i]
		}
	}
}

// drawNucleus returns the id at mass r (below the nucleus's mass) in the
// nucleus of the whole vocabulary: the tokens of the buckets below s.cut
// in id order, then s.tail.
func (s *Sampler) drawNucleus(r float64) int32 {
	last := int32(-1)
	for id, b := range s.hist.bucket {
		if b < s.cut {
			w := s.weight[id]
			if r < w {
				return int32(id)
			}
			r -= w
			last = int32(id)
		}
	}
	for _, id := range s.tail {
		w := s.weight[id]
		if r < w {
			return id
		}
		r -= w
		last = id
	}
	return last // rounding left r a hair above the last weight
}

// candidates sets the mode of the ids that may be drawn (see Sampler) and
// s.weight with their unnormalised probabilities, and returns the sum of
// those: the top-k, then the nucleus of what is left, each only when set.
func (s *Sampler) candidates(scores []float32) float64 {
	s.all, s.nucleus = false, false
	k, p := s.opt.TopK, s.opt.TopP
	nucleus := p > 0 && p < 1
	if k > 0 && k < len(scores) {
		s.topK(scores, k)
		if nucleus {
			// The k survivors are few: sort them and cut the nucleus as a
			// prefix.
			slices.SortFunc(s.cand, func(a, b int32) int { return cmpDesc(scores[a], scores[b]) })
			total := s.weigh(scores, s.cand)
			return s.prefixNucleus(total, p)
		}
		return s.weigh(scores, s.cand)
	}
	if nucleus {
		return s.histogramNucleus(scores, p)
	}
	// Every token may be drawn: no list of ids, only their weights.
	s.all = true
	best := float32(math.Inf(-1))
	for _, v := range scores {
		if v > best {
			best = v
		}
	}
	inv := 1 / s.opt.Temperature
	return s.exp.weigh(s.weight, scores, best, inv, nil)
}

// topK leaves the ids of the k highest scores in s.cand, in heap order.
// A min-heap of the k best so far: most tokens lose a single comparison
// against the heap's smallest, so this is close to one pass over scores.
func (s *Sampler) topK(scores []float32, k int) {
	h := s.cand[:0]
	for id := range k {
		h = append(h, int32(id))
		siftUp(h, scores, id)
	}
	floor := scores[h[0]]
	for id := k; id < len(scores); id++ {
		if scores[id] > floor {
			h[0] = int32(id)
			siftDown(h, scores, 0)
			floor = scores[h[0]]
		}
	}
	s.cand = h
}

// weigh sets s.weight for ids at the temperature, relative to their best
// score (in float64, so that a long tail of tiny probabilities does not
// vanish), and returns their sum.
func (s *Sampler) weigh(scores []float32, ids []int32) float64 {
	best := float32(math.Inf(-1))
	for _, id := range ids {
		if v := scores[id]; v > best {
			best = v
		}
	}
	inv := 1 / s.opt.Temperature
	var sum float64
	for _, id := range ids {
		w := math.Exp((float64(scores[id]) - float64(best)) * inv)
		s.weight[id] = w
		sum += w
	}
	return sum
}

// prefixNucleus cuts the candidates, sorted best first, to the shortest
// prefix whose mass reaches p of total, and returns that prefix's mass.
func (s *Sampler) prefixNucleus(total, p float64) float64 {
	var acc float64
	for i, id := range s.cand {
		acc += s.weight[id]
		if acc >= p*total {
			s.cand = s.cand[:i+1]
			return acc
		}
	}
	return acc
}

// histogramNucleus finds the nucleus of the whole vocabulary: the fewest
// most probable tokens whose mass reaches p of the total. A histogram of
// the mass by score finds the bucket where the nucleus ends (s.cut); every
// token above that bucket is in, and only the tokens inside it are ranked,
// by a weighted selection, and those taken left in s.tail. It returns the
// nucleus's mass.
func (s *Sampler) histogramNucleus(scores []float32, p float64) float64 {
	best := float32(math.Inf(-1))
	for _, v := range scores {
		if v > best {
			best = v
		}
	}
	inv := 1 / s.opt.Temperature
	total := s.exp.weigh(s.weight, scores, best, inv, &s.hist)
	// The first bucket at which the running mass reaches the target.
	target := p * total
	var above float64 // mass of the buckets before cut
	var cut int
	for b, m := range s.hist.mass {
		if above+m >= target || b == nucleusBuckets-1 {
			cut = b
			break
		}
		above += m
	}
	// A peaked nucleus (a few hundred tokens) is listed in s.cand and drawn
	// from the list; a flat one (most of the vocabulary) is drawn by a walk
	// over the buckets instead of being listed.
	s.cand, s.tail = s.cand[:0], s.tail[:0]
	c := uint16(cut)
	s.hist.bucket = s.hist.bucket[:len(scores)]
	listed := true
	for id, b := range s.hist.bucket {
		switch {
		case b == c:
			s.tail = append(s.tail, int32(id))
		case b < c && listed:
			if len(s.cand) == maxListedNucleus {
				listed = false
				continue
			}
			s.cand = append(s.cand, int32(id))
		}
	}
	n, mass := heaviestReaching(s.tail, s.weight, target-above)
	s.tail = s.tail[:n]
	if listed {
		s.cand = append(s.cand, s.tail...)
	} else {
		s.nucleus, s.cut = true, c
	}
	return above + mass
}

// heaviestReaching reorders ids so that the first n have the largest
// weights and are the fewest whose weights sum to at least need, and
// returns n and their sum (all of ids when even their sum falls short, as
// rounding can make it). It is quickselect on the cumulative weight: each
// round partitions the open range around a pivot weight into heavier,
// equal and lighter, and keeps only the part where the sum reaches need,
// so the work is linear in len(ids) on average and nothing is sorted.
func heaviestReaching(ids []int32, weight []float64, need float64) (int, float64) {
	lo, hi := 0, len(ids) // ids[:lo] are taken; the answer ends in [lo, hi]
	var taken float64
	for hi-lo > 0 {
		pivot := medianOf3(weight[ids[lo]], weight[ids[lo+(hi-lo)/2]], weight[ids[hi-1]])
		// Dutch-flag partition of ids[lo:hi]: heavier | equal | lighter.
		gt, i, lt := lo, lo, hi
		var heavier float64
		for i < lt {
			switch w := weight[ids[i]]; {
			case w > pivot:
				heavier += w
				ids[gt], ids[i] = ids[i], ids[gt]
				gt++
				i++
			case w < pivot:
				lt--
				ids[lt], ids[i] = ids[i], ids[lt]
			default:
				i++
			}
		}
		if taken+heavier >= need {
			hi = gt // the nucleus ends among the heavier ones
			continue
		}
		taken += heavier
		for j := gt; j < lt; j++ { // the equal ones, one at a time
			taken += pivot
			if taken >= need {
				return j + 1, taken
			}
		}
		lo = lt
	}
	return lo, taken
}

func medianOf3(a, b, c float64) float64 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	return max(a, b)
}

func cmpDesc(a, b float32) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// argmax returns the index of the largest element, the first on ties.
func argmax(x []float32) int32 {
	best, top := 0, float32(math.Inf(-1))
	for i, v := range x {
		if v > top {
			best, top = i, v
		}
	}
	return int32(best)
}

// expTable holds 2^(j/64) for j = 0..63, the table of weigh.
type expTable [64]float64

func newExpTable() expTable {
	var t expTable
	for j := range t {
		t[j] = math.Exp2(float64(j) / 64)
	}
	return t
}

// weigh sets dst[i] = e^x with x = (scores[i] − best)·inv ≤ 0 (0 for
// −Inf and NaN scores) and returns their sum, and with hist (non-nil)
// fills the nucleus histogram in the same pass: the sampler's exponential
// over the whole vocabulary, within a few ulps of math.Exp but about four
// times faster, and written out in the loop so that a token costs no call.
// x = (64m + j)·ln2/64 + r with |r| ≤ ln2/128, so e^x = 2^m · 2^(j/64) ·
// e^r, with 2^(j/64) from the table, e^r by its Taylor series to r^5
// (truncation below 4e−17) and 2^m built from the exponent bits. Below
// −708 the result is subnormal, and math.Exp handles it.
func (t *expTable) weigh(dst []float64, scores []float32, best float32, inv float64, hist *nucleusHist) float64 {
	const shifter = 0x1.8p52 // adding and subtracting it rounds to an integer
	const ln2Hi, ln2Lo = 6.93147180369123816490e-01 / 64, 1.90821492927058770002e-10 / 64
	var sum float64
	dst = dst[:len(scores)]
	var bucket []uint16
	if hist != nil {
		clear(hist.mass[:])
		bucket = hist.bucket[:len(scores)]
	}
	for i, v := range scores {
		x := (float64(v) - float64(best)) * inv
		var w float64
		b := nucleusBuckets - 1
		if x >= -708 {
			k := (x*(64/math.Ln2) + shifter) - shifter
			r := (x - k*ln2Hi) - k*ln2Lo
			p := 1.0 / 120
			p = p*r + 1.0/24
			p = p*r + 1.0/6
			p = p*r + 0.5
			p = p*r + 1
			p = p*r + 1
			n := int64(k)
			w = p * t[n&63] * math.Float64frombits(uint64(n>>6+1023)<<52)
			b = min(int(-n>>bucketShift), nucleusBuckets-1)
		} else if x == x {
			w = math.Exp(x)
		}
		dst[i] = w
		sum += w
		if hist != nil {
			if w > 0 {
				bucket[i] = uint16(b)
				hist.mass[b] += w
			} else {
				bucket[i] = noBucket
			}
		}
	}
	return sum
}

// siftUp and siftDown keep ids a min-heap by score. (container/heap would
// box every id in an interface: an allocation per candidate.)
func siftUp(ids []int32, scores []float32, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if scores[ids[parent]] <= scores[ids[i]] {
			return
		}
		ids[parent], ids[i] = ids[i], ids[parent]
		i = parent
	}
}

func siftDown(ids []int32, scores []float32, i int) {
	for {
		small := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(ids) && scores[ids[c]] < scores[ids[small]] {
				small = c
			}
		}
		if small == i {
			return
		}
		ids[small], ids[i] = ids[i], ids[small]
		i = small
	}
}
