//go:build amd64 && !noasm

package kernels

import (
	"fmt"
	"testing"
)

// TestTiledKernels runs the tiled product with every micro-kernel this CPU
// can execute, not only the one the API picks, and with both the pool's and
// the inline scratch size, which cut n into blocks differently.
func TestTiledKernels(t *testing.T) {
	kernels := map[string]microKernel{}
	if haveAVX2 {
		kernels["AVX2"] = chooseKernel(true, false)
	}
	if haveAVX512 {
		kernels["AVX512"] = chooseKernel(true, true)
	}
	if len(kernels) == 0 {
		t.Skip("CPU has no AVX2+FMA")
	}
	shapes := append(nonEmpty(testShapes),
		shape{m: 12, n: 640, k: 800}, shape{m: 30, n: 700, k: 385}, shape{m: 13, n: 321, k: 768, padA: 3, padB: 5, padC: 7})
	for name, kern := range kernels {
		for _, scratchLen := range []int{scratchFloats, inlineScratchFloats} {
			for _, l := range []layout{nt, nn, tn} {
				t.Run(fmt.Sprintf("%s/scratch=%d/%v", name, scratchLen, l), func(t *testing.T) {
					scratch := make([]float32, scratchLen)
					tiled := func(pr *product) { pr.computeTiled(kern, scratch) }
					for _, s := range shapes {
						checkProduct(t, l, s, false, tiled)
						checkProduct(t, l, s, true, tiled)
					}
				})
			}
		}
	}
}
