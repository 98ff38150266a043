//go:build amd64 && !noasm

package kernels

import (
	"math"

	"golang.org/x/sys/cpu"
)

// The assembly needs AVX2 and FMA; x/sys/cpu also checks, via XGETBV, that
// the OS saves the YMM (and for AVX-512 the ZMM) registers.
var (
	haveAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	haveAVX512 = haveAVX2 && cpu.X86.HasAVX512F
)

// fastKernel is the micro-kernel for this CPU, chosen once; its zero value
// (a 0×0 tile) means the pure-Go code.
var fastKernel = chooseKernel(haveAVX2, haveAVX512)

func chooseKernel(avx2, avx512 bool) microKernel {
	switch {
	case avx512:
		return microKernel{mr: 12, nr: 32, avx512: true}
	case avx2:
		return microKernel{mr: 6, nr: 16}
	}
	return microKernel{}
}

// compute runs pr on the tiled assembly kernels when there are enough rows
// and columns to fill a tile, and otherwise as dot products and axpys, which
// is what a matrix-vector product is.
func (pr *product) compute(scratch []float32) {
	if pr.tiled() {
		pr.computeTiled(fastKernel, scratch)
		return
	}
	if pr.l == nt && haveAVX2 {
		pr.computeNTByFourRows()
		return
	}
	pr.computeByRows(dot, axpy)
}

// computeNTByFourRows is computeByRows for c = a·bᵀ with the dot products
// taken four rows of b at a time, which is what decoding one token spends
// its time in: one dot product at a time is bound by the latency of its
// final horizontal sum and by the call around it (about 60% of memory
// bandwidth on the 288-wide products of stories15M), four at a time by the
// memory. The last k%8 steps and the last n%4 rows run as plain dots.
func (pr *product) computeNTByFourRows() {
	m, n, k := pr.m, pr.n, pr.k
	k8 := k / 8 * 8
	for i := range m {
		arow := pr.a[i*pr.lda : i*pr.lda+k]
		crow := pr.c[i*pr.ldc : i*pr.ldc+n]
		j := 0
		for ; j+4 <= n && k8 > 0; j += 4 {
			dot4AVX2(k8, &arow[0], &pr.b[j*pr.ldb], uintptr(pr.ldb)*4, &crow[j], pr.accumulate)
			if k8 < k {
				for r := range 4 {
					row := pr.b[(j+r)*pr.ldb : (j+r)*pr.ldb+k]
					crow[j+r] += dotGeneric(arow[k8:], row[k8:])
				}
			}
		}
		for ; j < n; j++ {
			s := dot(arow, pr.b[j*pr.ldb:j*pr.ldb+k])
			if pr.accumulate {
				s += crow[j]
			}
			crow[j] = s
		}
	}
}

func (pr *product) tiled() bool {
	return fastKernel.mr > 0 && pr.m >= minTiledSide && pr.n >= minTiledSide
}

// minTiledSide is the smallest m and n worth a padded tile; below it the
// vector path wastes less.
const minTiledSide = 4

func (pr *product) grain() grain {
	if !pr.tiled() {
		return grain{rows: 1, cols: 16}
	}
	// Packing an element of b takes about 0.45 ns, as long as the kernel
	// takes for 90 flops at 200 GFLOP/s: 45 rows of 2 flops per element.
	return grain{rows: fastKernel.mr, cols: fastKernel.nr, packRows: 45}
}

func dot(a, b []float32) float32 {
	if haveAVX2 && len(a) > 0 {
		return dotAVX2(&a[0], &b[0], len(a))
	}
	return dotGeneric(a, b)
}

func axpy(alpha float32, x, y []float32) {
	if haveAVX2 && len(x) > 0 {
		axpyAVX2(alpha, &x[0], &y[0], len(x))
		return
	}
	axpyGeneric(alpha, x, y)
}

func scale(alpha float32, x []float32) {
	if haveAVX2 && len(x) > 0 {
		scaleAVX2(alpha, &x[0], len(x))
		return
	}
	scaleGeneric(alpha, x)
}

// adamW runs whole vectors of eight in assembly and the rest in Go.
func adamW(params, grads, m, v []float32, s *AdamWStep) {
	if n := len(params) / 8 * 8; haveAVX2 && n > 0 {
		adamWAVX2(&params[0], &grads[0], &m[0], &v[0], n, s)
		params, grads, m, v = params[n:], grads[n:], m[n:], v[n:]
	}
	adamWGeneric(params, grads, m, v, s)
}

// sigmoid runs whole vectors of eight in assembly and the rest in Go.
func sigmoid(dst, x []float32) {
	if n := len(x) / 8 * 8; haveAVX2 && n > 0 {
		sigmoidAVX2(&dst[0], &x[0], n)
		dst, x = dst[n:], x[n:]
	}
	sigmoidGeneric(dst, x)
}

// maxOf runs whole vectors of eight in assembly and the rest in Go.
func maxOf(x []float32) float32 {
	m := float32(math.Inf(-1))
	if n := len(x) / 8 * 8; haveAVX2 && n > 0 {
		m = maxAVX2(&x[0], n)
		x = x[n:]
	}
	return max(m, maxGeneric(x))
}

// expShifted runs whole vectors of eight in assembly and the rest in Go.
func expShifted(x []float32, shift float32) float32 {
	var sum float32
	if n := len(x) / 8 * 8; haveAVX2 && n > 0 {
		sum = expShiftedAVX2(&x[0], n, shift)
		x = x[n:]
	}
	return sum + expShiftedGeneric(x, shift)
}

//go:noescape
func dotAVX2(a, b *float32, n int) float32

// dot4AVX2 sets (or with accumulate adds to) c[r] the dot product of x
// with the row b + r·ldb bytes, for r = 0…3, over k > 0 elements, k a
// multiple of 8.
//
//go:noescape
func dot4AVX2(k int, x, b *float32, ldb uintptr, c *float32, accumulate bool)

//go:noescape
func axpyAVX2(alpha float32, x, y *float32, n int)

//go:noescape
func scaleAVX2(alpha float32, x *float32, n int)

// adamWAVX2 is adamWGeneric on n > 0 elements, n a multiple of 8.
//
//go:noescape
func adamWAVX2(params, grads, m, v *float32, n int, s *AdamWStep)

// sigmoidAVX2 is sigmoidGeneric on n > 0 elements, n a multiple of 8.
//
//go:noescape
func sigmoidAVX2(dst, x *float32, n int)

// maxAVX2 is maxGeneric on n > 0 elements, n a multiple of 8.
//
//go:noescape
func maxAVX2(x *float32, n int) float32

// expShiftedAVX2 is expShiftedGeneric on n > 0 elements, n a multiple of 8.
//
//go:noescape
func expShiftedAVX2(x *float32, n int, shift float32) float32

// The micro-kernels compute one tile c[mr×nr] (+)= A·B over k steps. Element
// (r, p) of A is at a + r·rowStep + p·kStep bytes, which reads a row-major
// A (rowStep = lda·4, kStep = 4) and a transposed one (rowStep = 4,
// kStep = lda·4) alike, so A is never copied. B is a packed panel: k rows
// of nr contiguous floats. Rows of c are ldc bytes apart.

//go:noescape
func kernel6x16AVX2(k int, a *float32, rowStep, kStep uintptr, b, c *float32, ldc uintptr, accumulate bool)

//go:noescape
func kernel12x32AVX512(k int, a *float32, rowStep, kStep uintptr, b, c *float32, ldc uintptr, accumulate bool)

//go:noescape
func transpose8x8AVX(dst *float32, ldd uintptr, src *float32, lds uintptr, blocks int)

//go:noescape
func copyRowsAVX(dst *float32, ldd uintptr, src *float32, lds uintptr, rows, width int)
