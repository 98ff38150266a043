package delta

import (
	"math"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// rope holds cos and sin of pos·freq_i for positions [0, n), growing on
// demand so that positions are never capped. freq_i = θ^(−2i/head_size)
// rotates the adjacent pair (2i, 2i+1) of every head, as llama2.c does
// (and llama.cpp's "normal" RoPE for the llama architecture).
type rope struct {
	half     int // head_size / 2
	theta    float64
	cos, sin []float32 // [pos][half]
}

func newRope(c Config) rope {
	return rope{half: c.HeadSize() / 2, theta: c.theta()}
}

// grow makes positions [0, n) available; tables at least double, so a
// generation loop that keeps going past the end allocates O(log n) times.
func (r *rope) grow(n int) {
	have := len(r.cos) / r.half
	if n <= have {
		return
	}
	n = max(n, 2*have)
	cos := make([]float32, n*r.half)
	sin := make([]float32, n*r.half)
	copy(cos, r.cos)
	copy(sin, r.sin)
	for pos := have; pos < n; pos++ {
		for i := 0; i < r.half; i++ {
			// float64 keeps the angle exact at large positions.
			freq := math.Pow(r.theta, -float64(2*i)/float64(2*r.half))
			s, c := math.Sincos(float64(pos) * freq)
			cos[pos*r.half+i] = float32(c)
			sin[pos*r.half+i] = float32(s)
		}
	}
	r.cos, r.sin = cos, sin
}

// rotate applies RoPE at position pos to x, the concatenation of heads of
// 2·half values each. The sign of sign (+1 forward, −1 inverse) selects the
// rotation or its transpose, which is what the backward pass needs.
func (r *rope) rotate(x []float32, pos int, sign float32) {
	cos := r.cos[pos*r.half : (pos+1)*r.half]
	sin := r.sin[pos*r.half : (pos+1)*r.half]
	for h := 0; h < len(x); h += 2 * r.half {
		head := x[h : h+2*r.half]
		for i := 0; i < r.half; i++ {
			c, s := cos[i], sign*sin[i]
			x0, x1 := head[2*i], head[2*i+1]
			head[2*i] = x0*c - x1*s
			head[2*i+1] = x0*s + x1*c
		}
	}
}

// rmsnorm writes out = x / rms(x) ⊙ gain for one row and returns 1/rms(x),
// which the backward pass reuses.
func rmsnorm(out, x, gain []float32, eps float32) float32 {
	ss := kernels.Dot(x, x)
	inv := float32(1 / math.Sqrt(float64(ss/float32(len(x))+eps)))
	for i, v := range x {
		out[i] = v * inv * gain[i]
	}
	return inv
}

// rmsnormBackward adds to dx the gradient through out = x·inv ⊙ gain for
// one row, given dout:
//
//	dx = inv·(gain⊙dout) − x·inv³/n·Σ(gain⊙dout⊙x)
func rmsnormBackward(dx, dout, x, gain []float32, inv float32) {
	var dot float32
	for i, d := range dout {
		dot += gain[i] * d * x[i]
	}
	k := dot * inv * inv * inv / float32(len(x))
	for i, d := range dout {
		dx[i] += inv*gain[i]*d - k*x[i]
	}
}

// softmax replaces p with exp(p − max p) / Σ exp(p − max p).
func softmax(p []float32) {
	m := p[0]
	for _, v := range p[1:] {
		m = max(m, v)
	}
	kernels.Scale(1/expShifted(p, m), p)
}

// expShifted replaces every x (all ≤ shift) with e^(x−shift) and returns
// their sum. It is expf's algorithm unrolled into the loop: arguments are
// ≤ 0, so there is no overflow, and clamping at −87 (e^−87 ≈ 1.6e−38, the
// bottom of the normal floats) costs nothing against a sum ≥ 1. This is the
// softmax over the vocabulary, the hottest loop outside the matrix products.
func expShifted(xs []float32, shift float32) float32 {
	const (
		ln2Hi = 0.693359375
		ln2Lo = -2.12194440e-4
		log2e = 1.44269504088896341
	)
	var sum float32
	for i, x := range xs {
		x = max(x-shift, -87)
		k := float32(int32(x*log2e - 0.5)) // round to nearest for x ≤ 0
		r := x - k*ln2Hi - k*ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		e := (p*r*r + r + 1) * math.Float32frombits(uint32(int32(k)+127)<<23)
		xs[i] = e
		sum += e
	}
	return sum
}

// sigmoid is 1/(1+e^−x).
func sigmoid(x float32) float32 {
	return 1 / (1 + expf(-x))
}

// expf is e^x in float32 arithmetic, accurate to a few ulp, and faster than
// math.Exp (SiLU calls it for every hidden activation). It reduces x = k·ln2 + r with |r| ≤ ln2/2,
// evaluates a degree-6 polynomial for e^r and scales by 2^k through the
// exponent bits (Cephes expf).
func expf(x float32) float32 {
	const (
		ln2Hi = 0.693359375
		ln2Lo = -2.12194440e-4
		log2e = 1.44269504088896341
	)
	if x > 88 || x < -87 {
		// near overflow and in the denormals 2^k is not a normal float
		return float32(math.Exp(float64(x)))
	}
	k := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - k*ln2Hi - k*ln2Lo
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	e := p*r*r + r + 1
	return e * math.Float32frombits(uint32(int32(k)+127)<<23)
}

// fit returns buf resliced to n elements, reallocating only when its
// capacity is too small; the contents are not preserved.
func fit(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
