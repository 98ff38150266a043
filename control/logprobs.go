package control

import (
	"math"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// MaxTopLogprobs bounds Options.TopLogprobs, as OpenAI's API does.
const MaxTopLogprobs = 20

// Logprobs are the log-probabilities of chosen tokens under the steered
// distribution log_softmax(log_softmax(user) + Alpha · delta) — at
// temperature 1, before penalties and logit bias, which change the choice
// but not what the models say — each with the K most likely tokens of its
// step.
type Logprobs struct {
	K       int
	IDs     []int32   // the chosen tokens
	Logprob []float32 // their log-probabilities, aligned with IDs
	TopIDs  []int32   // K per token, most likely first
	TopLPs  []float32 // their log-probabilities, aligned with TopIDs
}

// Top returns the K best tokens of token i and their log-probabilities.
func (l *Logprobs) Top(i int) ([]int32, []float32) {
	return l.TopIDs[i*l.K : (i+1)*l.K], l.TopLPs[i*l.K : (i+1)*l.K]
}

// Len is the number of tokens recorded.
func (l *Logprobs) Len() int { return len(l.IDs) }

// reserve makes room for n more tokens, so that recording them allocates
// nothing.
func (l *Logprobs) reserve(n int) {
	if n <= 0 {
		return
	}
	grow := func(s []float32, n int) []float32 {
		if cap(s)-len(s) < n {
			s = append(make([]float32, 0, len(s)+n), s...)
		}
		return s
	}
	if cap(l.IDs)-len(l.IDs) < n {
		l.IDs = append(make([]int32, 0, len(l.IDs)+n), l.IDs...)
	}
	l.Logprob = grow(l.Logprob, n)
	if cap(l.TopIDs)-len(l.TopIDs) < n*l.K {
		l.TopIDs = append(make([]int32, 0, len(l.TopIDs)+n*l.K), l.TopIDs...)
	}
	l.TopLPs = grow(l.TopLPs, n*l.K)
}

// logprobState is the scratch of recording log-probs: the normaliser of
// the step's scores and the heap that selects the top K.
type logprobState struct {
	norm float64 // log Σ exp(scores) of the current step
	heap []int32
}

// normalise computes the log-normaliser of scores (using scratch).
func (s *logprobState) normalise(scores, scratch []float32) {
	best := float32(math.Inf(-1))
	for _, v := range scores {
		best = max(best, v)
	}
	tmp := scratch[:len(scores)]
	copy(tmp, scores)
	s.norm = float64(best) + math.Log(float64(kernels.ExpShifted(tmp, best)))
}

// record appends token id's log-probability and the step's top K to l.
// scores must be the ones normalise saw.
func (s *logprobState) record(l *Logprobs, scores []float32, id int32) {
	l.IDs = append(l.IDs, id)
	l.Logprob = append(l.Logprob, float32(float64(scores[id])-s.norm))
	if l.K == 0 {
		return
	}
	top := topK(scores, l.K, s.heap[:0])
	for _, t := range top {
		l.TopIDs = append(l.TopIDs, t)
		l.TopLPs = append(l.TopLPs, float32(float64(scores[t])-s.norm))
	}
	// A vocabulary smaller than K: pad with the last, so rows stay K wide.
	for i := len(top); i < l.K; i++ {
		l.TopIDs = append(l.TopIDs, top[len(top)-1])
		l.TopLPs = append(l.TopLPs, l.TopLPs[len(l.TopLPs)-1])
	}
}

// topK returns the ids of the k highest scores, highest first, in heap's
// storage: a partial selection through a min-heap of k, O(n log k), with no
// sort of the whole vocabulary and no allocation when heap holds k.
func topK(scores []float32, k int, heap []int32) []int32 {
	h := heap[:0]
	for id, v := range scores {
		switch {
		case len(h) < k:
			h = append(h, int32(id))
			heapUp(h, scores, len(h)-1)
		case v > scores[h[0]]:
			h[0] = int32(id)
			heapDown(h, scores, 0, len(h))
		}
	}
	// Heap-sort in place: the smallest goes to the end each round, which
	// leaves the highest first.
	for n := len(h) - 1; n > 0; n-- {
		h[0], h[n] = h[n], h[0]
		heapDown(h, scores, 0, n)
	}
	return h
}

// heapUp and heapDown keep ids[:n] a min-heap by score, ties broken towards
// the higher id being smaller, so that among equal scores the lower id
// ranks first.
func heapUp(ids []int32, scores []float32, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !heapLess(ids[i], ids[parent], scores) {
			return
		}
		ids[parent], ids[i] = ids[i], ids[parent]
		i = parent
	}
}

func heapDown(ids []int32, scores []float32, i, n int) {
	for {
		small := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < n && heapLess(ids[c], ids[small], scores) {
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

func heapLess(a, b int32, scores []float32) bool {
	if scores[a] != scores[b] {
		return scores[a] < scores[b]
	}
	return a > b
}

// Penalties shift the steered scores before a token is chosen; they do not
// change the reported log-probabilities.
type Penalties struct {
	// LogitBias is added to the scores of these tokens (OpenAI's
	// logit_bias: -100 bans a token, 100 all but forces it).
	LogitBias map[int32]float32
	// Frequency is subtracted once per earlier occurrence of a token in the
	// generated text, Presence once for any (OpenAI's frequency_penalty and
	// presence_penalty).
	Frequency, Presence float32
	// Repeat is llama.cpp's repeat_penalty: the score of every token among
	// the last RepeatLastN tokens (prompt included) is divided by it when
	// positive and multiplied by it when negative. 0 or 1: off.
	Repeat      float32
	RepeatLastN int // 0: 64, llama.cpp's default
}

func (p Penalties) active() bool {
	return len(p.LogitBias) > 0 || p.Frequency != 0 || p.Presence != 0 || (p.Repeat != 0 && p.Repeat != 1)
}

// penaltyState counts the generated tokens for Penalties.
type penaltyState struct {
	counts []int32 // per token: times generated
	seen   []int32 // tokens with a count, to reset and visit only those
	marks  []uint32
	mark   uint32
}

// reset readies the state for a vocabulary of n tokens.
func (s *penaltyState) reset(n int) {
	if len(s.counts) < n {
		s.counts, s.marks = make([]int32, n), make([]uint32, n)
	}
	for _, id := range s.seen {
		s.counts[id] = 0
	}
	s.seen = s.seen[:0]
}

func (s *penaltyState) generated(id int32) {
	if s.counts[id] == 0 {
		s.seen = append(s.seen, id)
	}
	s.counts[id]++
}

// apply shifts scores by p; prompt and gen are the context so far.
func (s *penaltyState) apply(p Penalties, scores []float32, prompt, gen []int32) {
	if r := p.Repeat; r != 0 && r != 1 {
		last := p.RepeatLastN
		if last <= 0 {
			last = 64
		}
		// Each token of the window once, however often it occurs.
		s.mark++
		window := func(ids []int32) {
			for _, id := range ids {
				if s.marks[id] == s.mark {
					continue
				}
				s.marks[id] = s.mark
				if scores[id] > 0 {
					scores[id] /= r
				} else {
					scores[id] *= r
				}
			}
		}
		fromGen := min(last, len(gen))
		window(gen[len(gen)-fromGen:])
		window(prompt[len(prompt)-min(last-fromGen, len(prompt)):])
	}
	if p.Frequency != 0 || p.Presence != 0 {
		for _, id := range s.seen {
			scores[id] -= float32(s.counts[id])*p.Frequency + p.Presence
		}
	}
	for id, b := range p.LogitBias {
		if id >= 0 && int(id) < len(scores) {
			scores[id] += b
		}
	}
}
