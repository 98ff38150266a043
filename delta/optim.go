package delta

import (
	"fmt"
	"math"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// AdamWConfig holds the optimiser's hyper-parameters and learning-rate
// schedule. Zero Beta1, Beta2 and Eps mean PyTorch's defaults (0.9, 0.999,
// 1e-8), which the CMC reference training (Hugging Face Trainer) uses.
type AdamWConfig struct {
	LR          float64 // peak learning rate
	MinLR       float64 // learning rate at the end of the cosine decay
	WarmupSteps int     // linear warm-up: step s < WarmupSteps uses LR·(s+1)/WarmupSteps
	DecaySteps  int     // step at which the cosine reaches MinLR (held after); 0: no decay
	Beta1       float64
	Beta2       float64
	Eps         float64
	WeightDecay float64 // decoupled decay, applied to weight matrices only
	ClipNorm    float64 // clip the global gradient norm to this; 0: no clipping
}

func (c AdamWConfig) betas() (b1, b2, eps float64) {
	b1, b2, eps = c.Beta1, c.Beta2, c.Eps
	if b1 == 0 {
		b1 = 0.9
	}
	if b2 == 0 {
		b2 = 0.999
	}
	if eps == 0 {
		eps = 1e-8
	}
	return b1, b2, eps
}

// LearningRate is the learning rate of update number step (0-based): linear
// warm-up, then cosine decay from LR to MinLR over [WarmupSteps, DecaySteps].
func (c AdamWConfig) LearningRate(step int) float64 {
	if step < c.WarmupSteps {
		return c.LR * float64(step+1) / float64(c.WarmupSteps)
	}
	if c.DecaySteps <= c.WarmupSteps {
		return c.LR
	}
	progress := min(1, float64(step-c.WarmupSteps)/float64(c.DecaySteps-c.WarmupSteps))
	return c.MinLR + 0.5*(1+math.Cos(math.Pi*progress))*(c.LR-c.MinLR)
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), whose
// state is the first and second moments of every parameter and the number
// of updates taken. Weight decay pulls the weight matrices (embedding, wq,
// wk, wv, wo, w1, w2, w3, wcls) towards zero; the RMSNorm gains are left
// alone, because decaying a gain towards 0 rather than towards its natural
// value 1 only shrinks the activations (as in llama2.c's and nanoGPT's
// training, which decay only tensors of 2 or more dimensions).
type AdamW struct {
	Config AdamWConfig
	Step   int       // updates taken; the schedule's position
	M, V   []float32 // first and second moment of every parameter, like Model.Params
}

// NewAdamW returns an optimiser with zero state for m's parameters.
func NewAdamW(m *Model, c AdamWConfig) *AdamW {
	return &AdamW{Config: c, M: make([]float32, len(m.Params)), V: make([]float32, len(m.Params))}
}

// Update applies one optimiser step to m from its accumulated gradients and
// returns the global gradient norm before clipping. gradScale multiplies
// the gradients first: 1/k after summing k micro-batches gives their mean.
// Update consumes the gradients: it leaves them zero, ready for the next
// step's first Backward (clearing them in the same pass that reads them
// saves a pass over memory).
func (o *AdamW) Update(m *Model, gradScale float32) (gradNorm float64) {
	if len(o.M) != len(m.Params) || len(m.Grads) != len(m.Params) {
		panic(fmt.Sprintf("delta: AdamW state of %d for %d parameters and %d gradients", len(o.M), len(m.Params), len(m.Grads)))
	}
	p, g := m.Pool, m.Grads

	// The norm is summed in fixed blocks, then the blocks in order, so it
	// is the same however the pool schedules them.
	const blocks = 64
	var partial [blocks]float64
	nb := min(len(g), blocks)
	p.For(nb, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			// float32 dot products of a few thousand squares, summed in
			// float64: vector speed, and rounding far below what clipping
			// can notice
			var ss float64
			for block := g[b*len(g)/nb : (b+1)*len(g)/nb]; len(block) > 0; {
				n := min(len(block), 4096)
				ss += float64(kernels.Dot(block[:n], block[:n]))
				block = block[n:]
			}
			partial[b] = ss
		}
	})
	var ss float64
	for _, s := range partial[:nb] {
		ss += s
	}
	gradNorm = math.Sqrt(ss) * math.Abs(float64(gradScale))
	// the scale and the clipping factor multiply each gradient as it is read
	scale := gradScale
	if c := o.Config.ClipNorm; c > 0 && gradNorm > c {
		scale = float32(float64(gradScale) * c / gradNorm)
	}

	b1, b2, eps := o.Config.betas()
	lr := o.Config.LearningRate(o.Step)
	o.Step++
	// bias corrections of the moments' zero initialisation
	bc1 := 1 - math.Pow(b1, float64(o.Step))
	bc2 := 1 - math.Pow(b2, float64(o.Step))
	stepSize := float32(lr / bc1)
	bc2Sqrt := float32(math.Sqrt(bc2))
	fb1, fb2, feps := float32(b1), float32(b2), float32(eps)

	matrixDecay := float32(1 - lr*o.Config.WeightDecay)
	// one parallel loop over all parameters, each thread taking the part
	// of every tensor that falls in its range
	p.For(len(m.Params), func(lo, hi int) {
		for _, t := range m.Tensors {
			from, to := max(lo, t.Offset), min(hi, t.Offset+t.Size())
			if from >= to {
				continue
			}
			decay := float32(1)
			if t.Matrix {
				decay = matrixDecay
			}
			params, grads := m.Params[from:to], g[from:to]
			kernels.AdamW(params, grads, o.M[from:to], o.V[from:to], kernels.AdamWStep{
				GradScale: scale, Beta1: fb1, Beta2: fb2, Eps: feps,
				StepSize: stepSize, Bc2Sqrt: bc2Sqrt, Decay: decay,
			})
		}
	})
	return gradNorm
}
