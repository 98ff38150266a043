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
	kernels.Scale(1/kernels.ExpShifted(p, maxOf(p)), p)
}

// maxOf is the largest element of x (not NaN-aware, unlike the builtin max,
// whose NaN and signed-zero handling makes it several times slower). Four
// running maxima let consecutive comparisons overlap.
func maxOf(x []float32) float32 {
	m0 := x[0]
	m1, m2, m3 := m0, m0, m0
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		if v[0] > m0 {
			m0 = v[0]
		}
		if v[1] > m1 {
			m1 = v[1]
		}
		if v[2] > m2 {
			m2 = v[2]
		}
		if v[3] > m3 {
			m3 = v[3]
		}
	}
	for ; i < len(x); i++ {
		if x[i] > m0 {
			m0 = x[i]
		}
	}
	return max(m0, m1, m2, m3)
}

// sigmoids sets out[i] = σ(x[i]) = 1/(1 + e^−x[i]), with the vector
// exponential (which clamps its argument to ±87, where σ is 0 or 1 to
// float32 precision anyway).
func sigmoids(out, x []float32) {
	for i, v := range x {
		out[i] = -v
	}
	kernels.ExpShifted(out, 0)
	for i, e := range out {
		out[i] = 1 / (1 + e)
	}
}

// fit returns buf resliced to n elements, reallocating only when its
// capacity is too small; the contents are not preserved.
func fit(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
