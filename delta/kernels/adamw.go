package kernels

import (
	"fmt"
	"math"
)

// AdamWStep holds the scalars of one AdamW update, precomputed by the
// optimiser for step t with learning rate lr.
type AdamWStep struct {
	GradScale    float32 // multiplies every gradient first: 1/micro-batches, clipping
	Beta1, Beta2 float32
	Eps          float32
	StepSize     float32 // lr / (1 − β1ᵗ)
	Bc2Sqrt      float32 // √(1 − β2ᵗ)
	Decay        float32 // 1 − lr·weight decay; 1 for none
}

// AdamW applies s to params in place, with the moments m and v, and clears
// grads (so they are ready for the next step's accumulation):
//
//	g = grads[i]·GradScale
//	m[i] = β1·m[i] + (1−β1)·g
//	v[i] = β2·v[i] + (1−β2)·g·g
//	params[i] = params[i]·Decay − StepSize·m[i] / (√v[i] / Bc2Sqrt + Eps)
//
// in float32, operation by operation as written (no fused multiply-adds),
// so that the assembly and the Go twin agree to the bit. All four slices
// must have the same length.
func AdamW(params, grads, m, v []float32, s AdamWStep) {
	if len(grads) != len(params) || len(m) != len(params) || len(v) != len(params) {
		panic(fmt.Sprintf("kernels: AdamW: lengths %d, %d, %d, %d differ", len(params), len(grads), len(m), len(v)))
	}
	adamW(params, grads, m, v, &s)
}

func adamWGeneric(params, grads, m, v []float32, s *AdamWStep) {
	grads, m, v = grads[:len(params)], m[:len(params)], v[:len(params)]
	c1, c2 := 1-s.Beta1, 1-s.Beta2
	// The conversions round each product, which stops the compiler from
	// fusing it into the following addition on CPUs with FMA.
	for i, g := range grads {
		grads[i] = 0
		g *= s.GradScale
		m[i] = float32(s.Beta1*m[i]) + float32(c1*g)
		v[i] = float32(s.Beta2*v[i]) + float32(c2*g*g)
		denom := float32(math.Sqrt(float64(v[i])))/s.Bc2Sqrt + s.Eps
		params[i] = float32(params[i]*s.Decay) - float32(s.StepSize*m[i]/denom)
	}
}
