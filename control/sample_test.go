package control

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// fullSortDistribution is the plain definition of the sampler's
// distribution, as the sampler computed it before it stopped sorting: the
// top-k by a sort of the whole vocabulary, the softmax at the temperature,
// the nucleus as the shortest prefix of the sorted candidates. It returns
// each candidate's probability.
func fullSortDistribution(opt SampleOptions, scores []float32) map[int32]float64 {
	var ids []int32
	for id, v := range scores {
		if !math.IsInf(float64(v), -1) {
			ids = append(ids, int32(id))
		}
	}
	slices.SortFunc(ids, func(a, b int32) int { return cmpDesc(scores[a], scores[b]) })
	if k := opt.TopK; k > 0 && k < len(ids) {
		ids = ids[:k]
	}
	best := float64(scores[ids[0]])
	probs := make([]float64, len(ids))
	var total float64
	for i, id := range ids {
		probs[i] = math.Exp((float64(scores[id]) - best) / opt.Temperature)
		total += probs[i]
	}
	if p := opt.TopP; p > 0 && p < 1 {
		var acc float64
		for i, q := range probs {
			acc += q
			if acc >= p*total {
				ids, probs, total = ids[:i+1], probs[:i+1], acc
				break
			}
		}
	}
	dist := make(map[int32]float64, len(ids))
	for i, id := range ids {
		dist[id] = probs[i] / total
	}
	return dist
}

// randomScores returns n log-probabilities of a random LM-like shape: a
// Gaussian bulk of spread sigma, a few much likelier tokens, and every
// tenth token masked with −Inf when masked is set.
func randomScores(rng *rand.Rand, n int, sigma float64, masked bool) []float32 {
	logits := make([]float32, n)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * sigma)
	}
	for range 5 {
		logits[rng.IntN(n)] += float32(5 + 10*rng.Float64())
	}
	scores := make([]float32, n)
	logSoftmax(scores, logits, make([]float32, n))
	if masked {
		for i := 0; i < n; i += 10 {
			scores[i] = float32(math.Inf(-1))
		}
	}
	return scores
}

// TestSamplerMatchesFullSort: on random scores, over many seeds and every
// kind of option, the sampler draws from exactly the candidates of the
// full-sort definition, with the same probabilities.
func TestSamplerMatchesFullSort(t *testing.T) {
	options := []SampleOptions{
		{Temperature: 0.8},
		{Temperature: 0.8, TopP: 0.9},
		{Temperature: 0.5, TopP: 0.5},
		{Temperature: 2, TopP: 0.99},
		{Temperature: 1, TopP: 0.999999},
		{Temperature: 0.8, TopK: 40},
		{Temperature: 0.8, TopK: 40, TopP: 0.9},
		{Temperature: 1.5, TopK: 1},
		{Temperature: 1, TopK: 700, TopP: 0.95},
		{Temperature: 1, TopK: 5000, TopP: 0.3}, // k above the vocabulary: all
	}
	walked := 0 // nuclei drawn by the walk over the buckets
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 200 + rng.IntN(3000)
		if seed%5 == 4 {
			// Large enough that a flat nucleus outgrows maxListedNucleus
			// and is drawn by the walk over the buckets.
			n = 3*maxListedNucleus + rng.IntN(3000)
		}
		sigma := []float64{0.05, 0.5, 2, 6}[seed%4]
		scores := randomScores(rng, n, sigma, seed%3 == 0)
		for _, opt := range options {
			opt.Seed = seed
			want := fullSortDistribution(opt, scores)
			s := NewSampler(opt, n)
			sum := s.candidates(scores)
			ids := drawable(s, n)
			if s.nucleus {
				walked++
			}
			got := make(map[int32]float64, len(ids))
			for _, id := range ids {
				if s.weight[id] > 0 {
					got[id] = s.weight[id] / sum
				}
			}
			name := fmt.Sprintf("seed %d (n %d, sigma %g) %+v", seed, n, sigma, opt)
			if len(got) != len(want) {
				t.Fatalf("%s: %d candidates, want %d", name, len(got), len(want))
			}
			for id, p := range want {
				if q, ok := got[id]; !ok || math.Abs(q-p) > 1e-12*max(p, 1e-3) {
					t.Fatalf("%s: token %d has probability %g (candidate: %v), want %g", name, id, q, ok, p)
				}
			}
			if id := s.Sample(scores); want[id] == 0 {
				t.Fatalf("%s: drew %d, which is not a candidate", name, id)
			}
		}
	}
	if walked == 0 {
		t.Error("no nucleus was large enough to be drawn by the walk over the buckets")
	}
}

// TestSamplerTies: with every score equal the nucleus is any ceil(p·n)
// tokens (the order among equals is arbitrary, in the full sort too).
func TestSamplerTies(t *testing.T) {
	scores := make([]float32, 1000)
	s := NewSampler(SampleOptions{Temperature: 1, TopP: 0.25}, len(scores))
	s.candidates(scores)
	ids := drawable(s, len(scores))
	if len(ids) != 250 {
		t.Fatalf("nucleus of 1000 equal scores at p 0.25 has %d tokens, want 250", len(ids))
	}
	if seen := slices.Compact(slices.Sorted(slices.Values(ids))); len(seen) != 250 {
		t.Fatalf("nucleus holds duplicates: %d distinct of %d", len(seen), len(ids))
	}
}

// drawable lists the ids that s may draw after candidates, in any of its
// modes, for a vocabulary of n.
func drawable(s *Sampler, n int) []int32 {
	switch {
	case s.all:
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(i)
		}
		return ids
	case s.nucleus:
		var ids []int32
		for id, b := range s.hist.bucket[:n] {
			if b < s.cut {
				ids = append(ids, int32(id))
			}
		}
		return append(ids, s.tail...)
	}
	return s.cand
}

// TestSamplerNucleusFrequencies: draws from the nucleus follow its
// renormalised probabilities.
func TestSamplerNucleusFrequencies(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	scores := randomScores(rng, 60, 1, false)
	opt := SampleOptions{Temperature: 1, TopP: 0.8, Seed: 5}
	want := fullSortDistribution(opt, scores)
	s := NewSampler(opt, len(scores))
	counts := map[int32]int{}
	const draws = 40000
	for range draws {
		counts[s.Sample(scores)]++
	}
	for id := range counts {
		if _, ok := want[id]; !ok {
			t.Fatalf("drew token %d outside the nucleus", id)
		}
	}
	for id, p := range want {
		if got := float64(counts[id]) / draws; math.Abs(got-p) > 0.01 {
			t.Errorf("token %d drawn %.4f of the time, want %.4f", id, got, p)
		}
	}
}

// TestSamplerWalkedNucleusFrequencies: a nucleus too large to list is
// drawn by the walk over the histogram's buckets with the probabilities of
// the full sort, compared over groups of tokens (each token alone is too
// rare to count): the five spiked ones, and the low and high halves of the
// ids.
func TestSamplerWalkedNucleusFrequencies(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 3*maxListedNucleus + 100
	scores := randomScores(rng, n, 0.5, false)
	opt := SampleOptions{Temperature: 3, TopP: 0.95, Seed: 6}
	want := fullSortDistribution(opt, scores)
	s := NewSampler(opt, n)
	if s.candidates(scores); !s.nucleus {
		t.Fatal("the nucleus was listed, not walked: the test needs a flatter one")
	}
	byScore := make([]int32, n)
	for i := range byScore {
		byScore[i] = int32(i)
	}
	slices.SortFunc(byScore, func(a, b int32) int { return cmpDesc(scores[a], scores[b]) })
	spiked := byScore[:5] // randomScores lifts five tokens far above the bulk
	group := func(id int32) int {
		switch {
		case slices.Contains(spiked, id):
			return 0
		case int(id) < n/2:
			return 1
		}
		return 2
	}
	var wantMass, got [3]float64
	for id, p := range want {
		wantMass[group(id)] += p
	}
	const draws = 8000 // each draw redoes the whole vocabulary
	for range draws {
		id := s.Sample(scores)
		if want[id] == 0 {
			t.Fatalf("drew token %d outside the nucleus", id)
		}
		got[group(id)]++
	}
	for g := range got {
		if f := got[g] / draws; math.Abs(f-wantMass[g]) > 0.025 {
			t.Errorf("group %d drawn %.4f of the time, want %.4f", g, f, wantMass[g])
		}
	}
}

// TestSamplerGreedy: temperature 0 is the argmax, first index on ties, and
// ignores top-k and top-p.
func TestSamplerGreedy(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 3))
		scores := randomScores(rng, 5000, 2, seed%2 == 0)
		scores[rng.IntN(len(scores))] = 10
		scores[rng.IntN(len(scores))] = 10
		want := int32(slices.Index(scores, slices.Max(scores)))
		for _, opt := range []SampleOptions{{}, {TopK: 40, TopP: 0.9}, {Temperature: -1}} {
			if got := NewSampler(opt, len(scores)).Sample(scores); got != want {
				t.Fatalf("seed %d %+v: greedy picked %d, want %d", seed, opt, got, want)
			}
		}
	}
}

// TestSamplerMaskedEverywhere: when every score is −Inf there is nothing to
// draw from, and the sampler still returns a token id instead of panicking.
func TestSamplerMaskedEverywhere(t *testing.T) {
	scores := make([]float32, 100)
	for i := range scores {
		scores[i] = float32(math.Inf(-1))
	}
	for _, opt := range []SampleOptions{{Temperature: 1}, {Temperature: 1, TopP: 0.9}, {Temperature: 1, TopK: 5, TopP: 0.9}} {
		if id := NewSampler(opt, len(scores)).Sample(scores); id < 0 || id >= 100 {
			t.Fatalf("%+v: drew %d", opt, id)
		}
	}
}

func TestSamplerAllocatesNothingAnyMode(t *testing.T) {
	scores := randomScores(rand.New(rand.NewPCG(1, 1)), 32000, 2, true)
	for _, opt := range []SampleOptions{{Temperature: 0.8}, {Temperature: 0.8, TopP: 0.9}, {Temperature: 0.8, TopK: 40}} {
		s := NewSampler(opt, len(scores))
		if n := testing.AllocsPerRun(20, func() { s.Sample(scores) }); n != 0 {
			t.Fatalf("%+v: Sample allocates %v times per call", opt, n)
		}
	}
}

// fullSortSampler is the sampler as it was before partial selection: it
// sorts every candidate whenever top-p is set, the baseline of
// BenchmarkSample.
type fullSortSampler struct {
	opt   SampleOptions
	rng   *rand.Rand
	cand  []int32
	probs []float64
}

func (s *fullSortSampler) sample(scores []float32) int32 {
	s.cand = s.cand[:0]
	k := s.opt.TopK
	if k <= 0 || k >= len(scores) {
		for id, v := range scores {
			if !math.IsInf(float64(v), -1) {
				s.cand = append(s.cand, int32(id))
			}
		}
	} else {
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
	}
	if k > 0 && k < len(scores) || s.opt.TopP > 0 && s.opt.TopP < 1 {
		slices.SortFunc(s.cand, func(a, b int32) int { return cmpDesc(scores[a], scores[b]) })
	}
	best := float64(scores[s.cand[0]])
	s.probs = s.probs[:0]
	var sum float64
	for _, id := range s.cand {
		p := math.Exp((float64(scores[id]) - best) / s.opt.Temperature)
		s.probs = append(s.probs, p)
		sum += p
	}
	if p := s.opt.TopP; p > 0 && p < 1 {
		var acc float64
		for i, q := range s.probs {
			acc += q
			if acc >= p*sum {
				s.cand, s.probs, sum = s.cand[:i+1], s.probs[:i+1], acc
				break
			}
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

// BenchmarkSample: the cost of choosing one token from a Llama-3-sized
// vocabulary (128256), greedy and in each sampling mode, by this sampler
// ("partial") and by the full sort it replaced ("fullsort"), in wall and in
// CPU time (cpu-ns/op, which a busy machine does not inflate). "peaked" scores
// have a Gaussian bulk of spread 3 (a nucleus of a few hundred tokens at
// p 0.9), "flat" of spread 0.5 (a nucleus of most of the vocabulary).
//
//	go test ./control -run '^$' -bench BenchmarkSample -benchtime 200x
func BenchmarkSample(b *testing.B) {
	const vocab = 128256
	rng := rand.New(rand.NewPCG(1, 2))
	for _, shape := range []struct {
		name  string
		sigma float64
	}{{"peaked", 3}, {"flat", 0.5}} {
		scores := randomScores(rng, vocab, shape.sigma, false)
		b.Run(shape.name+"/greedy", func(b *testing.B) {
			s := NewSampler(SampleOptions{}, vocab)
			cpuLoop(b, func() { s.Sample(scores) })
		})
		for _, mode := range []struct {
			name string
			opt  SampleOptions
		}{
			{"temp0.8", SampleOptions{Temperature: 0.8}},
			{"temp0.8-topp0.9", SampleOptions{Temperature: 0.8, TopP: 0.9}},
			{"temp0.8-topk40", SampleOptions{Temperature: 0.8, TopK: 40}},
			{"temp0.8-topk40-topp0.9", SampleOptions{Temperature: 0.8, TopK: 40, TopP: 0.9}},
		} {
			b.Run(shape.name+"/"+mode.name+"/partial", func(b *testing.B) {
				s := NewSampler(mode.opt, vocab)
				cpuLoop(b, func() { s.Sample(scores) })
			})
			b.Run(shape.name+"/"+mode.name+"/fullsort", func(b *testing.B) {
				s := &fullSortSampler{opt: mode.opt, rng: rand.New(rand.NewPCG(0, 0)), cand: make([]int32, 0, vocab), probs: make([]float64, 0, vocab)}
				cpuLoop(b, func() { s.sample(scores) })
			})
		}
	}
}

// TestWeigh: the sampler's exponential agrees with math.Exp to a few
// ulps over the whole range it is used on, including its edges, and gives
// 0 for −Inf and NaN scores.
func TestWeigh(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	scores := []float32{0, -1e-30, -0.5 * math.Ln2, -math.Ln2, -1, -707.9, -708, -708.1, -745, -800, float32(math.Inf(-1)), float32(math.NaN())}
	for range 200000 {
		scores = append(scores, -rng.Float32()*40, -rng.Float32()*710)
	}
	tab := newExpTable()
	got := make([]float64, len(scores))
	sum := tab.weigh(got, scores, 0, 1, nil)
	var want float64
	for i, v := range scores {
		w := math.Exp(float64(v))
		if math.IsNaN(w) {
			w = 0
		}
		want += w
		if got[i] != w && math.Abs(got[i]-w) > 1e-15*w {
			t.Fatalf("exp(%v) = %v, math.Exp says %v (relative error %.2g)", v, got[i], w, math.Abs(got[i]-w)/w)
		}
	}
	if math.Abs(sum-want) > 1e-12*want {
		t.Fatalf("sum %v, want %v", sum, want)
	}
	// Temperature and shift: e^((v − best)·inv).
	tab.weigh(got[:1], []float32{-3}, 1, 0.5, nil)
	if w := math.Exp(-2); math.Abs(got[0]-w) > 1e-15*w {
		t.Fatalf("e^((−3 − 1)/2) = %v, want %v", got[0], w)
	}
}

// cpuLoop runs f b.N times and reports the process CPU time per call.
func cpuLoop(b *testing.B, f func()) {
	start := processCPU()
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
