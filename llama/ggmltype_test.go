package llama

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cmc-dev/cmc/gguf"
)

// TestGoDequantizeMatchesGGML quantises random rows with ggml's quantiser
// and checks that cmc's Go dequantisers give what ggml's own to_float
// gives, for every type the delta loader accepts.
func TestGoDequantizeMatchesGGML(t *testing.T) {
	types := []gguf.TensorType{
		gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ8_0,
		gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K,
		gguf.TypeIQ4_NL, gguf.TypeIQ4_XS,
	}
	const rows, perRow = 4, 512
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, rows*perRow)
	for i := range src {
		// Mixed magnitudes, so that scales and mins of every sub-block differ.
		src[i] = float32(rng.NormFloat64() * (0.01 + float64(i%97)/50))
	}
	for _, typ := range types {
		q, err := QuantizeRows(typ, src, perRow)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		want, err := DequantizeRows(typ, q, len(src))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		got, err := gguf.Dequantize(typ, q, len(src))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		var maxDiff, maxAbs, recon float64
		for i := range want {
			maxDiff = math.Max(maxDiff, math.Abs(float64(got[i]-want[i])))
			maxAbs = math.Max(maxAbs, math.Abs(float64(want[i])))
			recon = math.Max(recon, math.Abs(float64(want[i]-src[i])))
		}
		// Identical formulas; only a fused multiply-add in the C build may
		// move the last bit.
		if maxDiff > 1e-6*maxAbs {
			t.Errorf("%s: Go and ggml dequantisation differ by up to %g (values up to %g)", typ, maxDiff, maxAbs)
		}
		// A sanity check that the data was really quantised and restored.
		if recon == 0 || recon > 0.5*maxAbs {
			t.Errorf("%s: reconstruction error %g of values up to %g", typ, recon, maxAbs)
		}
	}
}
