package control

import (
	"testing"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
)

// BenchmarkDeltaStep measures the delta's share of one generated token for
// a small delta with a Llama-2-sized vocabulary: decoding one token and
// adding its logits to the user's log-probs.
func BenchmarkDeltaStep(b *testing.B) {
	m, err := delta.New(delta.Config{Dim: 64, HiddenDim: 172, NLayers: 2, NHeads: 4, NKVHeads: 4, VocabSize: 32000, SeqLen: 512, SharedClassifier: true}, 1)
	if err != nil {
		b.Fatal(err)
	}
	m.Pool = kernels.NewPool(1)
	defer m.Pool.Close()
	d := NewDeltaLM(m, 512)
	user := make([]float32, 32000)
	scores := make([]float32, 32000)
	g := &Generator{}
	b.Run("decode", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if d.Len() >= 500 {
				d.Trim(0)
			}
			d.Append([]int32{int32(i % 32000)})
		}
	})
	b.Run("logsoftmax", func(b *testing.B) {
		scratch := make([]float32, 32000)
		for i := 0; i < b.N; i++ {
			logSoftmax(scores, user, scratch)
		}
	})
	b.Run("add", func(b *testing.B) {
		dl := make([]float32, 32000)
		g.Alpha = 1
		for i := 0; i < b.N; i++ {
			g.addDelta(scores, dl)
		}
	})
}
