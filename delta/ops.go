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
	kernels.Scale(1/expShifted(p, maxOf(p)), p)
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

// expShifted replaces every x (all ≤ shift) with e^(x−shift) and returns
// their sum: the softmax over the vocabulary, the hottest loop outside the
// matrix products. Four partial sums let consecutive elements overlap.
func expShifted(xs []float32, shift float32) float32 {
	var sum [4]float32
	for i := 0; i < len(xs); i += 4 {
		v := xs[i:min(i+4, len(xs))]
		for j, x := range v {
			// below e^−87 ≈ 1.6e−38, the bottom of the normal floats,
			// nothing counts against a sum ≥ 1
			e := exp(max32(x-shift, -87))
			v[j] = e
			sum[j] += e
		}
	}
	return (sum[0] + sum[1]) + (sum[2] + sum[3])
}

// sigmoids sets out[i] = σ(x[i]) = 1/(1 + e^−x[i]).
func sigmoids(out, x []float32) {
	for i, v := range x {
		// beyond ±87 σ is 0 or 1 to float32 precision
		out[i] = 1 / (1 + exp(min32(max32(-v, -87), 87)))
	}
}

// exp is e^x for x in [−87, 87] in float32 arithmetic, accurate to a few
// ulp and small enough to be inlined into the loops above. It splits
// x = (64·e + j)·ln2/64 + r with |r| ≤ ln2/128, so e^x = 2^e · 2^(j/64) · e^r,
// takes 2^(j/64) from a table, e^r from its cubic Taylor polynomial (the
// next term is below 4e−11) and 2^e from the exponent bits.
func exp(x float32) float32 {
	// k = round(x·64/ln2): adding and subtracting 1.5·2²³ rounds to an
	// integer in float32 arithmetic
	k := x*92.33248261689366 + 12582912
	k -= 12582912
	r := x - k*0.010833740234375 + k*3.3155381258549027e-6 // ln2/64 in two parts, the first exact in k·ln2/64
	i := int32(k)
	return exp2Sixtyfourths[i&63] * (1 + r*(1+r*(0.5+r*(1.0/6)))) * math.Float32frombits(uint32(i>>6+127)<<23)
}

// exp2Sixtyfourths[j] = 2^(j/64), read-only after initialisation.
var exp2Sixtyfourths = func() (t [64]float32) {
	for j := range t {
		t[j] = float32(math.Exp2(float64(j) / 64))
	}
	return t
}()

// max32 and min32 skip the builtin's NaN and signed-zero handling, which
// costs more than the exponential itself here.
func max32(a, b float32) float32 {
	if a > b {
		return a
	}
	return b
}

func min32(a, b float32) float32 {
	if a < b {
		return a
	}
	return b
}

// fit returns buf resliced to n elements, reallocating only when its
// capacity is too small; the contents are not preserved.
func fit(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
