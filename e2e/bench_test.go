package e2e

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/llama"
)

// BenchmarkDecode15M compares incremental inference of the Go delta
// engine with llama.cpp running the same stories15M-shaped model
// (exported as F32 GGUF) on the same number of threads: one token at a
// time after a 16-token prompt, 128 tokens per iteration.
func BenchmarkDecode15M(b *testing.B) {
	vf, err := gguf.Open(fixture(b, "gguf-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		b.Fatal(err)
	}
	defer vf.Close()
	m, err := delta.New(delta.Config{Dim: 288, HiddenDim: 768, NLayers: 6, NHeads: 6, NKVHeads: 6, VocabSize: 32000, SeqLen: 256, SharedClassifier: true}, 1)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "stories15M-random.gguf")
	if err := m.ExportGGUF(path, delta.ExportOptions{Tokenizer: vf}); err != nil {
		b.Fatal(err)
	}
	threads := runtime.GOMAXPROCS(0)
	const prompt, gen = 16, 128
	tokens := make([]int32, prompt+gen)
	for i := range tokens {
		tokens[i] = int32(100 + 37*i%31000)
	}

	b.Run("cmc", func(b *testing.B) {
		m.Pool = kernels.NewPool(threads)
		defer m.Pool.Close()
		s := m.NewSession(prompt + gen)
		for i := 0; i < b.N; i++ {
			s.Trim(0)
			s.Decode(tokens[:prompt])
			for _, t := range tokens[prompt:] {
				s.Decode([]int32{t})
			}
		}
		b.ReportMetric(float64(gen*b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("llama.cpp", func(b *testing.B) {
		lm, err := llama.LoadModel(path, llama.ModelParams{})
		if err != nil {
			b.Fatal(err)
		}
		defer lm.Close()
		ctx, err := lm.NewContext(llama.ContextParams{Size: prompt + gen, Threads: threads, KVF32: true})
		if err != nil {
			b.Fatal(err)
		}
		defer ctx.Close()
		for i := 0; i < b.N; i++ {
			ctx.Clear()
			if _, err := ctx.Append(tokens[:prompt]); err != nil {
				b.Fatal(err)
			}
			for j := prompt; j < len(tokens); j++ {
				if _, err := ctx.Append(tokens[j : j+1]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(gen*b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
}
