package kernels

import "fmt"

// Dot returns the dot product of a and b, which must have the same length.
func Dot(a, b []float32) float32 {
	checkSameLength("Dot", a, b)
	return dot(a, b)
}

// Axpy adds alpha·x to y; x and y must have the same length.
func Axpy(alpha float32, x, y []float32) {
	checkSameLength("Axpy", x, y)
	axpy(alpha, x, y)
}

// Scale multiplies every element of x by alpha.
func Scale(alpha float32, x []float32) {
	scale(alpha, x)
}

// ExpShifted replaces every x[i] by e^(x[i]−shift) and returns their sum:
// the numerators and the denominator of a softmax whose largest input is
// shift. Exponents are clamped to [−87, 88], so every result is a finite,
// normal float32 (e^−87 ≈ 1.6e−38 counts for nothing against a sum ≥ 1).
func ExpShifted(x []float32, shift float32) float32 {
	return expShifted(x, shift)
}

// Sigmoid sets dst[i] = σ(x[i]) = 1/(1 + e^−x[i]); dst and x must have the
// same length and may be the same slice. Exponents are clamped as in
// ExpShifted, so σ is at least about 6e−39 and at most 1.
func Sigmoid(dst, x []float32) {
	checkSameLength("Sigmoid", dst, x)
	sigmoid(dst, x)
}

// Max returns the largest element of x, −Inf for an empty x. With NaNs in
// x the result is unspecified.
func Max(x []float32) float32 {
	return maxOf(x)
}

// checkSameLength panics unless a and b have the same length.
func checkSameLength(name string, a, b []float32) {
	if len(a) != len(b) {
		panic(fmt.Sprintf("kernels: %s: lengths %d and %d differ", name, len(a), len(b)))
	}
}
