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
type Sampler struct {
	opt   SampleOptions
	rng   *rand.Rand
	cand  []int32   // candidate token ids
	probs []float64 // their probabilities, aligned with cand
}

// NewSampler returns a sampler for vocabularies of n tokens.
func NewSampler(opt SampleOptions, n int) *Sampler {
	return &Sampler{
		opt:   opt,
		rng:   rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15)),
		cand:  make([]int32, 0, n),
		probs: make([]float64, 0, n),
	}
}

// Sample returns the chosen token id.
func (s *Sampler) Sample(scores []float32) int32 {
	if s.opt.Temperature <= 0 {
		return argmax(scores)
	}
	s.candidates(scores)
	// Softmax over the candidates at the temperature, in float64 so that a
	// long tail of tiny probabilities does not vanish.
	inv := 1 / s.opt.Temperature
	best := float64(scores[s.cand[0]])
	for _, id := range s.cand {
		best = math.Max(best, float64(scores[id]))
	}
	s.probs = s.probs[:0]
	var sum float64
	for _, id := range s.cand {
		p := math.Exp((float64(scores[id]) - best) * inv)
		s.probs = append(s.probs, p)
		sum += p
	}
	if p := s.opt.TopP; p > 0 && p < 1 {
		s.nucleus(sum, p)
		sum = 0
		for _, q := range s.probs {
			sum += q
		}
	}
	r := s.rng.Float64() * sum
	for i, p := range s.probs {
		r -= p
		if r <= 0 {
			return s.cand[i]
		}
	}
	return s.cand[len(s.cand)-1]
}

// candidates fills s.cand with the ids that may be drawn: all finite
// scores, or the top K (sorted by score, highest first) when TopK is set or
// TopP needs an order.
func (s *Sampler) candidates(scores []float32) {
	s.cand = s.cand[:0]
	k := s.opt.TopK
	needOrder := s.opt.TopP > 0 && s.opt.TopP < 1
	if k <= 0 || k >= len(scores) {
		for id, v := range scores {
			if !math.IsInf(float64(v), -1) {
				s.cand = append(s.cand, int32(id))
			}
		}
		if needOrder {
			slices.SortFunc(s.cand, func(a, b int32) int { return cmpDesc(scores[a], scores[b]) })
		}
		return
	}
	// A min-heap of the K best so far: O(n log K), no full sort.
	h := s.cand
	for id := range scores {
		switch {
		case len(h) < k:
			h = append(h, int32(id))
			siftUp(h, scores, len(h)-1)
		case scores[id] > scores[h[0]]:
			h[0] = int32(id)
			siftDown(h, scores, 0)
		}
	}
	s.cand = h
	slices.SortFunc(s.cand, func(a, b int32) int { return cmpDesc(scores[a], scores[b]) })
}

// nucleus cuts the (sorted) candidates to the smallest prefix whose mass
// reaches p of the total.
func (s *Sampler) nucleus(total, p float64) {
	var acc float64
	for i, q := range s.probs {
		acc += q
		if acc >= p*total {
			s.cand, s.probs = s.cand[:i+1], s.probs[:i+1]
			return
		}
	}
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

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
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
