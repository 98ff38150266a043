// Package kernels holds the dense float32 arithmetic that the delta model
// spends its time in: three matrix-product layouts (one per pass of a
// linear layer), the elementwise loops around them (dot, axpy, scale, max,
// the exponentials of a softmax, the sigmoid, the AdamW update), and a Pool
// that spreads the work over a fixed set of goroutines.
//
// Matrices are dense row-major []float32 with an explicit row stride (the
// *Strided variants) or a packed one (rows of exactly the column count).
// The result c must not overlap the operands a and b.
// Every kernel has a pure-Go twin; on amd64 with AVX2 and FMA (and AVX-512
// where present) the hot loops run in assembly, and the tests compare the two.
// Build with -tags noasm to use only the pure-Go code.
package kernels

import "fmt"

// layout names which operands of a product are stored transposed.
type layout int

const (
	nt layout = iota // c = a · bᵀ, a is m×k, b is n×k
	nn               // c = a · b, a is m×k, b is k×n
	tn               // c = aᵀ · b, a is k×m, b is k×n
)

func (l layout) String() string {
	return [...]string{"MatMulNT", "MatMulNN", "MatMulTN"}[l]
}

// MatMulNT computes c[m×n] (+)= a[m×k] · b[n×k]ᵀ: activations times a weight
// stored in PyTorch's [out,in] layout, the forward pass of a linear layer.
// With accumulate false c is overwritten, otherwise added to.
func (p *Pool) MatMulNT(c, a, b []float32, m, n, k int, accumulate bool) {
	p.MatMulNTStrided(c, n, a, k, b, k, m, n, k, accumulate)
}

// MatMulNN computes c[m×n] (+)= a[m×k] · b[k×n]: the input gradient of a
// linear layer, dX = dY·W.
func (p *Pool) MatMulNN(c, a, b []float32, m, n, k int, accumulate bool) {
	p.MatMulNNStrided(c, n, a, k, b, n, m, n, k, accumulate)
}

// MatMulTN computes c[m×n] (+)= a[k×m]ᵀ · b[k×n]: the weight gradient of a
// linear layer, dW += dYᵀ·X.
func (p *Pool) MatMulTN(c, a, b []float32, m, n, k int, accumulate bool) {
	p.MatMulTNStrided(c, n, a, m, b, n, m, n, k, accumulate)
}

// MatMulNTStrided is MatMulNT on matrices whose rows are ldc, lda and ldb
// elements apart, such as one head's columns of a [T×dim] activation.
func (p *Pool) MatMulNTStrided(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int, accumulate bool) {
	p.matMul(nt, c, ldc, a, lda, b, ldb, m, n, k, accumulate)
}

// MatMulNNStrided is MatMulNN with explicit row strides.
func (p *Pool) MatMulNNStrided(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int, accumulate bool) {
	p.matMul(nn, c, ldc, a, lda, b, ldb, m, n, k, accumulate)
}

// MatMulTNStrided is MatMulTN with explicit row strides.
func (p *Pool) MatMulTNStrided(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int, accumulate bool) {
	p.matMul(tn, c, ldc, a, lda, b, ldb, m, n, k, accumulate)
}

// product is one matrix product with its operands; parallel calls split it
// into sub-products over rows or columns of c.
type product struct {
	l          layout
	c, a, b    []float32
	ldc        int
	lda, ldb   int
	m, n, k    int
	accumulate bool
}

func (p *Pool) matMul(l layout, c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int, accumulate bool) {
	pr := product{l: l, c: c, a: a, b: b, ldc: ldc, lda: lda, ldb: ldb, m: m, n: n, k: k, accumulate: accumulate}
	pr.check()
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !accumulate {
			for i := range m {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	p.run(&pr)
}

// check panics with a message naming the kernel when the dimensions do not
// fit the slices; the kernels themselves index without bounds checks in
// assembly, so this is the only guard.
func (pr *product) check() {
	if pr.m < 0 || pr.n < 0 || pr.k < 0 {
		panic(fmt.Sprintf("kernels: %v: negative dimension m=%d n=%d k=%d", pr.l, pr.m, pr.n, pr.k))
	}
	// Rows and columns of a and b as stored.
	aRows, aCols := pr.m, pr.k
	bRows, bCols := pr.k, pr.n
	switch pr.l {
	case nt:
		bRows, bCols = pr.n, pr.k
	case tn:
		aRows, aCols = pr.k, pr.m
	}
	checkMatrix(pr.l, "c", pr.c, pr.m, pr.n, pr.ldc)
	checkMatrix(pr.l, "a", pr.a, aRows, aCols, pr.lda)
	checkMatrix(pr.l, "b", pr.b, bRows, bCols, pr.ldb)
}

func checkMatrix(l layout, name string, x []float32, rows, cols, ld int) {
	if ld < cols {
		panic(fmt.Sprintf("kernels: %v: %s has %d columns but row stride %d", l, name, cols, ld))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("kernels: %v: %s is %d×%d with stride %d and needs %d elements, has %d", l, name, rows, cols, ld, need, len(x)))
	}
}
