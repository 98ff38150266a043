package delta

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// stories15M is the shape of karpathy's stories15M, the smallest delta of
// the CMC paper.
var stories15M = Config{Dim: 288, HiddenDim: 768, NLayers: 6, NHeads: 6, NKVHeads: 6, VocabSize: 32000, SeqLen: 256, SharedClassifier: true}

// stories110M is the shape of karpathy's stories110M, the largest delta of
// the CMC paper.
var stories110M = Config{Dim: 768, HiddenDim: 2048, NLayers: 12, NHeads: 12, NKVHeads: 12, VocabSize: 32000, SeqLen: 1024, SharedClassifier: true}

// reportTokens reports tokens per second of wall-clock time and per
// CPU-second of the whole process (all threads): on a machine shared with
// other work the first measures the load, the second still the code.
func reportTokens(b *testing.B, tokens int, cpu0 time.Duration) {
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(tokens)/cpu.Seconds(), "tokens/cpu-s")
	}
}

func newBenchModel(b *testing.B, c Config) *Model {
	m, err := New(c, 1)
	if err != nil {
		b.Fatal(err)
	}
	m.Pool = kernels.NewPool(0)
	b.Cleanup(m.Pool.Close)
	return m
}

// BenchmarkTrainStep15M is one training step of a stories15M-shaped model
// on a batch of 4×256 random tokens: forward, cross-entropy, backward and
// an AdamW update. scripts/bench-delta.sh compares it with PyTorch.
func BenchmarkTrainStep15M(b *testing.B) { benchmarkTrainStep(b, stories15M) }

// BenchmarkTrainStep110M is BenchmarkTrainStep15M at the stories110M shape
// (1.7 GB of parameters, gradients and AdamW moments; a few seconds a step).
func BenchmarkTrainStep110M(b *testing.B) { benchmarkTrainStep(b, stories110M) }

// benchmarkTrainStep times training steps on 4×256 random tokens and also
// reports the matrix products' rate, 6 flops per token per weight of a
// matrix (2 forward, 4 backward) as the usual accounting has it, leaving
// out attention's own products and the elementwise work: the figure to set
// against the machine's peak.
func benchmarkTrainStep(b *testing.B, c Config) {
	const B, T = 4, 256
	m := newBenchModel(b, c)
	V := m.Config.VocabSize
	rng := rand.New(rand.NewPCG(1, 2))
	ids, targets := randomIDs(rng, B*T, V), randomIDs(rng, B*T, V)
	o := NewAdamW(m, AdamWConfig{LR: 1e-4, WeightDecay: 0.1, ClipNorm: 1})
	step := func() {
		logits := m.Forward(ids, B, T)
		CrossEntropy(m.Pool, logits, targets, V)
		m.Backward(logits)
		o.Update(m, 1)
	}
	step() // size the buffers outside the timing
	b.ResetTimer()
	cpu0 := processCPU()
	for range b.N {
		step()
	}
	cpu := processCPU() - cpu0
	reportTokens(b, B*T*b.N, cpu0)
	perLayer := 2*c.Dim*c.Dim + 2*c.Dim*c.KVDim() + 3*c.Dim*c.HiddenDim
	flops := 6 * float64(c.NLayers*perLayer+c.VocabSize*c.Dim) * float64(B*T*b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu > 0 {
		b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
	}
}

// BenchmarkDecode15M is incremental inference of a stories15M-shaped model,
// one token at a time with the KV cache, over positions 0…255.
func BenchmarkDecode15M(b *testing.B) {
	m := newBenchModel(b, stories15M)
	s := m.NewSession(256)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := range b.N {
		if s.Len() == 256 {
			s.Trim(0)
		}
		s.Decode([]int32{int32(i % m.Config.VocabSize)})
	}
	reportTokens(b, b.N, cpu0)
}

// BenchmarkPrefill15M decodes a 256-token prompt at once.
func BenchmarkPrefill15M(b *testing.B) {
	m := newBenchModel(b, stories15M)
	s := m.NewSession(256)
	prompt := randomIDs(rand.New(rand.NewPCG(3, 4)), 256, m.Config.VocabSize)
	b.ResetTimer()
	cpu0 := processCPU()
	for range b.N {
		s.Trim(0)
		s.Decode(prompt)
	}
	reportTokens(b, 256*b.N, cpu0)
}

// BenchmarkLossRows128k is the loss of 16 rows of a 128256-token vocabulary
// (Llama-3's) against the template's log-probabilities: "target" is the
// cross-entropy at a next token, "anchor" the KL to the template at an
// Anchor position (a from_template word), whose template probabilities and
// own softmax are each exponentiated twice, and "anchor-flat" the same with
// the flatness term (the row's variance, two scalar passes more). The pairs
// anchor a few tokens per example. BENCHMARKS.md has the ratios.
func BenchmarkLossRows128k(b *testing.B) {
	const vocab, rows = 128256, 16
	r := rand.New(rand.NewPCG(1, 2))
	logits, start, bias := make([]float32, rows*vocab), make([]float32, rows*vocab), make([]float32, rows*vocab)
	for i := range bias {
		bias[i] = 3 * float32(r.NormFloat64())
		start[i] = 0.1 * float32(r.NormFloat64())
	}
	p := kernels.NewPool(1)
	defer p.Close()
	for _, c := range []struct {
		name     string
		target   int32
		flatness float32
	}{{"target", 7, 0}, {"anchor", Anchor, 0}, {"anchor-flat", Anchor, 100}} {
		targets := make([]int32, rows)
		for i := range targets {
			targets[i] = c.target
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				copy(logits, start) // the loss overwrites the row with its gradient
				b.StartTimer()
				BiasedCrossEntropySum(p, logits, bias, targets, vocab, 1, c.flatness)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
