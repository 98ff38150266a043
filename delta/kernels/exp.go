package kernels

import "math"

// The exponential follows Cephes' expf: x = n·ln2 + r with n an integer and
// |r| ≤ ln2/2, e^r from a degree-7 polynomial, and 2^n added to the
// exponent bits.
const (
	expMin   = -87
	expMax   = 88
	expLog2e = 1.44269504088896341
	// ln2 = expLn2Hi + expLn2Lo; n·expLn2Hi is exact for |n| ≤ 2¹⁵.
	expLn2Hi = 0.693359375
	expLn2Lo = -2.12194440e-4
	expC0    = 1.9875691500e-4
	expC1    = 1.3981999507e-3
	expC2    = 8.3334519073e-3
	expC3    = 4.1665795894e-2
	expC4    = 1.6666665459e-1
	expC5    = 5.0000001201e-1
)

// expShiftedGeneric is ExpShifted in Go, one element at a time; the
// assembly computes the same steps eight elements at a time.
func expShiftedGeneric(x []float32, shift float32) float32 {
	var sum float32
	for i, v := range x {
		e := exp32(v - shift)
		x[i] = e
		sum += e
	}
	return sum
}

func exp32(x float32) float32 {
	x = min(max(x, expMin), expMax)
	// Adding and subtracting 1.5·2²³ rounds to the nearest integer, as
	// the assembly's VROUNDPS does.
	n := x*expLog2e + 0x1.8p23
	n -= 0x1.8p23
	r := x - n*expLn2Hi - n*expLn2Lo
	p := ((((expC0*r+expC1)*r+expC2)*r+expC3)*r+expC4)*r + expC5
	e := p*(r*r) + r + 1
	return math.Float32frombits(math.Float32bits(e) + uint32(int32(n))<<23)
}

// sigmoidGeneric sets dst[i] = 1/(1 + e^−x[i]), with exp32's clamp.
func sigmoidGeneric(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = 1 / (1 + exp32(-v))
	}
}
