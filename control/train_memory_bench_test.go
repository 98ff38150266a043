package control

import (
	"context"
	"runtime"
	"testing"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
)

// wideTemplate is a fake template with a large vocabulary whose logits
// cost nothing to compute, so that a benchmark measures the trainer's
// memory, not a model's.
type wideTemplate struct{ vocab int }

func (w wideTemplate) VocabSize() int { return w.vocab }
func (w wideTemplate) SequenceLogits(tokens []int32, dst []float32) error {
	for i := range tokens {
		dst[i*w.vocab+int(tokens[i])%w.vocab] = 1
	}
	return nil
}
func (w wideTemplate) SequenceLogitsEach(tokens, positions []int32, emit func([]float32) error) error {
	rows := make([]float32, 64*w.vocab) // as llama.cpp's buffer of one batch
	for len(positions) > 0 {
		n := min(64, len(positions))
		clear(rows)
		for j, p := range positions[:n] {
			rows[j*w.vocab+int(tokens[p])%w.vocab] = 1
		}
		if err := emit(rows[:n*w.vocab]); err != nil {
			return err
		}
		positions = positions[n:]
	}
	return nil
}

// BenchmarkTrainMemory trains a tiny delta against a 32k-vocabulary
// template, micro-batches of 4 × 256 tokens whose first half is an
// unlabelled prompt, and reports the largest live heap at the end of a step
// (peak-heap-MB), when the template already fills the next micro-batch's
// buffer: memory that grows with batch × positions × vocabulary shows here.
//
//	go test ./control -run '^$' -bench TrainMemory -benchtime 1x
func BenchmarkTrainMemory(b *testing.B) {
	const vocab, T = 32000, 256
	seqs := sequences(16, T, vocab, 1)
	for i := range seqs {
		for j := range T / 2 {
			seqs[i].Labels[j] = data.NoToken
		}
	}
	m, err := delta.New(delta.Config{Dim: 32, HiddenDim: 64, NLayers: 2, NHeads: 4, NKVHeads: 4, VocabSize: vocab, SeqLen: T, SharedClassifier: true}, 1)
	if err != nil {
		b.Fatal(err)
	}
	m.Pool = kernels.NewPool(1)
	defer m.Pool.Close()
	var peak uint64
	for range b.N {
		tr := newTrainer(b, wideTemplate{vocab}, m, seqs, TrainConfig{Objective: SFT, BatchSize: 4, Accumulate: 2, Epochs: 1, Seed: 1})
		tr.OnStep = func(Step) error {
			runtime.GC() // what is alive, not what awaits collection
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			return nil
		}
		if err := tr.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}
