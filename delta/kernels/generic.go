package kernels

import "math"

// The pure-Go kernels: what other architectures and -tags noasm run, and the
// reference the assembly is tested against. They are written for clarity
// first; the unrolled loops only keep them from being needlessly slow.

// computeByRows computes pr one row of c at a time, as dot products (NT) or
// as sums of scaled rows of b (NN, TN), so that the inner loops run over
// contiguous memory. It is the whole pure-Go matrix product (with
// dotGeneric and axpyGeneric), and the assembly's path for matrix-vector
// products (with their assembly twins).
func (pr *product) computeByRows(dot func(a, b []float32) float32, axpy func(alpha float32, x, y []float32)) {
	m, n, k := pr.m, pr.n, pr.k
	for i := range m {
		crow := pr.c[i*pr.ldc : i*pr.ldc+n]
		if pr.l == nt {
			arow := pr.a[i*pr.lda : i*pr.lda+k]
			for j := range crow {
				s := dot(arow, pr.b[j*pr.ldb:j*pr.ldb+k])
				if pr.accumulate {
					s += crow[j]
				}
				crow[j] = s
			}
			continue
		}
		if !pr.accumulate {
			clear(crow)
		}
		for p := range k {
			var aip float32
			if pr.l == nn {
				aip = pr.a[i*pr.lda+p]
			} else {
				aip = pr.a[p*pr.lda+i]
			}
			axpy(aip, pr.b[p*pr.ldb:p*pr.ldb+n], crow)
		}
	}
}

// dotGeneric returns the dot product of a and b[:len(a)], with four partial
// sums so that the additions do not wait on each other.
func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpyGeneric adds alpha·x to y[:len(x)].
func axpyGeneric(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

// maxGeneric returns the largest element of x, −Inf for an empty x.
func maxGeneric(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}

// scaleGeneric multiplies x by alpha in place.
func scaleGeneric(alpha float32, x []float32) {
	for i := range x {
		x[i] *= alpha
	}
}
