package kernels

import "fmt"

// Dot returns the dot product of a and b, which must have the same length.
func Dot(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("kernels: Dot: lengths %d and %d differ", len(a), len(b)))
	}
	return dot(a, b)
}

// Axpy adds alpha·x to y; x and y must have the same length.
func Axpy(alpha float32, x, y []float32) {
	if len(x) != len(y) {
		panic(fmt.Sprintf("kernels: Axpy: lengths %d and %d differ", len(x), len(y)))
	}
	axpy(alpha, x, y)
}

// Scale multiplies every element of x by alpha.
func Scale(alpha float32, x []float32) {
	scale(alpha, x)
}
