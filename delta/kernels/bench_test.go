package kernels

import (
	"fmt"
	"testing"
)

// benchShapes are the products of one training step of the stories15M-shaped
// delta at 1024 tokens (forward NT, and the NN and TN of the backward pass),
// plus the m=1 matvecs of decoding.
var benchShapes = []struct {
	name    string
	m, n, k int
}{
	{"qkvo_1024x288x288", 1024, 288, 288},
	{"w13_1024x768x288", 1024, 768, 288},
	{"w2_1024x288x768", 1024, 288, 768},
	{"cls_1024x32000x288", 1024, 32000, 288},
	{"decode_cls_1x32000x288", 1, 32000, 288},
	{"decode_w13_1x768x288", 1, 768, 288},
}

// benchLayouts maps each layout to the shape the backward pass feeds it:
// forward Y[T×out] = X·Wᵀ is NT (m=T, n=out, k=in); the input gradient
// dX[T×in] = dY·W is NN (m=T, n=in, k=out); the weight gradient
// dW[out×in] = dYᵀ·X is TN (m=out, n=in, k=T).
func benchProduct(l layout, m, n, k int) (mm, nn_, kk int) {
	switch l {
	case nn:
		return m, k, n
	case tn:
		return n, k, m
	}
	return m, n, k
}

func benchmarkMatMul(b *testing.B, l layout) {
	for _, s := range benchShapes {
		if s.m == 1 && l == tn {
			continue // decoding has no weight gradients
		}
		m, n, k := benchProduct(l, s.m, s.n, s.k)
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/threads=%d", s.name, threads), func(b *testing.B) {
				p := NewPool(threads)
				defer p.Close()
				aLen, bLen := m*k, n*k
				x, y, c := make([]float32, aLen), make([]float32, bLen), make([]float32, m*n)
				for i := range x {
					x[i] = float32(i%7) * 0.1
				}
				for i := range y {
					y[i] = float32(i%5) * 0.1
				}
				// One product before timing, so that the first touch of
				// c's pages (131 MB for the classifier) is not counted.
				p.matMul(l, c, n, x, lda(l, m, k), y, ldb(l, n, k), m, n, k, false)
				cpu0 := processCPU()
				for b.Loop() {
					p.matMul(l, c, n, x, lda(l, m, k), y, ldb(l, n, k), m, n, k, false)
				}
				flops := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				if cpu := processCPU() - cpu0; cpu > 0 {
					// On a shared machine the wall clock also counts
					// the time other processes had our cores; flops
					// per CPU-second show what the kernel does with
					// the cores it gets.
					b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
				}
			})
		}
	}
}

func lda(l layout, m, k int) int {
	if l == tn {
		return m
	}
	return k
}

func ldb(l layout, n, k int) int {
	if l == nt {
		return k
	}
	return n
}

func BenchmarkMatMulNT(b *testing.B) { benchmarkMatMul(b, nt) }
func BenchmarkMatMulNN(b *testing.B) { benchmarkMatMul(b, nn) }
func BenchmarkMatMulTN(b *testing.B) { benchmarkMatMul(b, tn) }

// benchmarkVector times fn on vectors of the model's sizes; bytes is the
// memory traffic per element, for the MB/s column.
func benchmarkVector(b *testing.B, bytes int64, fn func(x, y []float32)) {
	for _, n := range []int{288, 768, 32000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			x, y := make([]float32, n), make([]float32, n)
			for b.Loop() {
				fn(x, y)
			}
			b.SetBytes(bytes * int64(n))
		})
	}
}

func BenchmarkDot(b *testing.B) {
	var sink float32
	benchmarkVector(b, 8, func(x, y []float32) { sink += Dot(x, y) })
	_ = sink
}

func BenchmarkAxpy(b *testing.B) { benchmarkVector(b, 12, func(x, y []float32) { Axpy(0.5, x, y) }) }

func BenchmarkScale(b *testing.B) { benchmarkVector(b, 8, func(x, _ []float32) { Scale(0.999, x) }) }

// BenchmarkFor measures what a parallel call costs beyond its work: handing
// chunks to the workers and waiting for them.
func BenchmarkFor(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	fn := func(lo, hi int) {}
	for b.Loop() {
		p.For(2, fn)
	}
}

func BenchmarkExpShifted(b *testing.B) {
	impls := map[string]func([]float32, float32) float32{"asm": ExpShifted, "generic": expShiftedGeneric}
	for name, expShifted := range impls {
		b.Run(name, func(b *testing.B) {
			// One row of classifier logits; the speed does not depend
			// on the values, so the results are fed back in.
			x := make([]float32, 32000)
			for i := range x {
				x[i] = float32(i%100) * 0.1
			}
			for b.Loop() {
				expShifted(x, 10)
			}
			b.SetBytes(4 * int64(len(x)))
		})
	}
}

func BenchmarkMax(b *testing.B) {
	var sink float32
	benchmarkVector(b, 4, func(x, _ []float32) { sink += Max(x) })
	_ = sink
}

func BenchmarkSigmoid(b *testing.B) {
	benchmarkVector(b, 8, func(x, y []float32) { Sigmoid(y, x) })
}

// BenchmarkAdamW updates the stories15M-shaped model's 15.2M parameters on
// one thread, in assembly and in plain Go.
func BenchmarkAdamW(b *testing.B) {
	const n = 15_200_000
	s := AdamWStep{GradScale: 1, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, StepSize: 1e-3, Bc2Sqrt: 0.04, Decay: 0.9999}
	impls := map[string]func(p, g, m, v []float32){
		"asm":     func(p, g, m, v []float32) { AdamW(p, g, m, v, s) },
		"generic": func(p, g, m, v []float32) { adamWGeneric(p, g, m, v, &s) },
	}
	for name, adamW := range impls {
		b.Run(name, func(b *testing.B) {
			p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
			adamW(p, g, m, v) // touch the pages before timing
			for b.Loop() {
				adamW(p, g, m, v)
			}
			b.SetBytes(8 * 4 * n) // reads and writes all four arrays
		})
	}
}
