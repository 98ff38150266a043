package delta

import (
	"fmt"
	"math"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// Ignore is the target of a position that does not count in the loss.
const Ignore = -1

// Anchor is the target of a position where the delta should leave the
// output to the template: its loss there is KL(softmax(bias) ‖ softmax(z)),
// zero when the delta's row is flat, so the delta is trained to stay out of
// the template's way (an instruction's name, which the template copies from
// the prompt) instead of being left unconstrained; BiasedCrossEntropySum
// can add the variance of the row, which holds it flat also where the
// template is unsure. It needs a bias.
const Anchor = -2

// CrossEntropy returns the mean cross-entropy of the rows of logits
// ([len(targets) × vocab]) against targets, skipping positions whose target
// is Ignore, and overwrites logits with d(loss)/d(logits):
// (softmax − onehot)/count on counted rows, 0 on ignored ones. With no
// counted position the loss is 0. It panics on a target outside the
// vocabulary.
//
// Summing micro-batches' gradients and scaling by 1/micro-batches in the
// optimiser step gives the mean of the micro-batch means.
func CrossEntropy(p *kernels.Pool, logits []float32, targets []int32, vocab int) float64 {
	loss, _ := BiasedCrossEntropy(p, logits, nil, targets, vocab, 1)
	return loss
}

// BiasedCrossEntropy is CrossEntropy of z = logits + bias, row by row, with
// the gradient with respect to logits multiplied by gradScale; it also
// returns the number of counted positions. bias may be nil.
//
// This is the CMC objective: bias holds the frozen template's
// log-probabilities (its raw logits give the same loss and gradient, since
// a constant per row cancels in the softmax), and gradScale = −1 turns the
// forget term of grad_diff into gradient ascent.
//
// A NaN or +Inf z in a counted row makes the loss NaN: the softmax's
// clamped exponentials would otherwise turn it into a finite, meaningless
// number, and a diverged run would go on training on garbage. −Inf is a
// probability of 0 (the template cache writes it for the tokens it
// dropped) and counts as such; at the target it makes the loss +Inf.
func BiasedCrossEntropy(p *kernels.Pool, logits, bias []float32, targets []int32, vocab int, gradScale float32) (loss float64, count int) {
	count = countTargets(logits, bias, targets, vocab)
	if count == 0 {
		clear(logits)
		return 0, 0
	}
	sum := crossEntropySum(p, logits, bias, targets, vocab, gradScale/float32(count), 0)
	return sum / float64(count), count
}

// BiasedCrossEntropySum is BiasedCrossEntropy without the mean: it returns
// the sum of the counted rows' cross-entropies, and each counted row's
// gradient is gradScale·(softmax − onehot). With gradScale = 1/n for the n
// counted positions of a whole optimiser step, the micro-batches' gradients
// sum to that of the step's per-token mean, however unevenly its tokens
// fall into micro-batches. At an Anchor position the row's loss is the KL
// plus flatness times the variance of the delta's row (anchorLoss;
// BiasedCrossEntropy uses the KL alone).
func BiasedCrossEntropySum(p *kernels.Pool, logits, bias []float32, targets []int32, vocab int, gradScale, flatness float32) (sum float64, count int) {
	count = countTargets(logits, bias, targets, vocab)
	if count == 0 {
		clear(logits)
		return 0, 0
	}
	return crossEntropySum(p, logits, bias, targets, vocab, gradScale, flatness), count
}

// countTargets counts the positions whose target is not Ignore. It panics
// on a target outside the vocabulary or lengths that do not match.
func countTargets(logits, bias []float32, targets []int32, vocab int) (count int) {
	if len(logits) != len(targets)*vocab || (bias != nil && len(bias) != len(logits)) {
		panic(fmt.Sprintf("delta: cross-entropy of %d logits and %d bias for %d targets of %d", len(logits), len(bias), len(targets), vocab))
	}
	for i, y := range targets {
		switch {
		case y == Ignore:
		case y == Anchor && bias == nil:
			panic(fmt.Sprintf("delta: an Anchor target at %d with no template bias", i))
		case y == Anchor:
			count++
		case y < 0 || int(y) >= vocab:
			panic(fmt.Sprintf("delta: target %d at %d outside the vocabulary of %d", y, i, vocab))
		default:
			count++
		}
	}
	return count
}

// crossEntropySum overwrites each row of logits with g·(softmax(z) −
// onehot(target)), z = row + bias, or with zeros where the target is
// Ignore, or with g times anchorLoss's gradient where it is Anchor, and
// returns the sum of the rows' losses, −log softmax(z)[target] or anchorLoss.
func crossEntropySum(p *kernels.Pool, logits, bias []float32, targets []int32, vocab int, g, flatness float32) float64 {
	// Rows are summed in fixed blocks, then the blocks in order, so the
	// loss does not depend on how the pool schedules them.
	const blocks = 64
	var partial [blocks]float64
	n := len(targets)
	nb := min(n, blocks)
	p.For(nb, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			for i := b * n / nb; i < (b+1)*n/nb; i++ {
				row := logits[i*vocab : (i+1)*vocab]
				y := targets[i]
				if y == Ignore {
					clear(row)
					continue
				}
				if y == Anchor {
					partial[b] += anchorLoss(row, bias[i*vocab:(i+1)*vocab], g, flatness)
					continue
				}
				if bias != nil {
					kernels.Axpy(1, bias[i*vocab:(i+1)*vocab], row)
				}
				if !usable(row) {
					partial[b] = math.NaN()
				}
				mx := maxOf(row)
				target := row[y]
				sum := kernels.ExpShifted(row, mx)
				partial[b] += math.Log(float64(sum)) + float64(mx) - float64(target)
				kernels.Scale(g/sum, row)
				row[y] -= g
			}
		}
	})
	var loss float64
	for _, l := range partial[:nb] {
		loss += l
	}
	return loss
}

// anchorChunk is how many entries of a row anchorLoss works on at a
// time, in buffers on the stack: it needs softmax(bias) and softmax(z)
// while keeping the delta's row, and has no scratch row of its own; the
// vector exponential of a chunk costs a fraction of math.Exp entry by entry.
const anchorChunk = 512

// anchorLoss returns the loss at an Anchor position,
//
//	KL(p ‖ q) + flatness · Var(d),  p = softmax(bias), q = softmax(d + bias),
//
// d the delta's row and Var its variance over the vocabulary, and
// overwrites d with g times the loss's gradient with respect to it,
// g·(q − p) + g·flatness·2(d − mean(d))/vocab; NaN when z holds a NaN or
// +Inf. KL = logsumexp(z) − logsumexp(bias) − Σ p·d, so a −Inf in bias (a
// token the template cache dropped) adds nothing.
//
// The KL is zero when the row is flat, but it weighs each token by the
// template's probability: raising a token the template finds very unlikely
// costs it almost nothing, and on a user LLM that finds the token likely
// the raise wins. The variance weighs every token alike (TrainConfig.AnchorFlatness).
func anchorLoss(d, bias []float32, g, flatness float32) float64 {
	var e, zc [anchorChunk]float32
	n := len(d)
	// The template's normaliser, Σ exp(bias − mb)·d, z's largest entry and,
	// with a flatness term, d's mean.
	mb, mz := maxOf(bias), float32(math.Inf(-1))
	var sb, pd, sd float64
	for lo := 0; lo < n; lo += anchorChunk {
		hi := min(lo+anchorChunk, n)
		eb := e[:copy(e[:], bias[lo:hi])]
		sb += float64(kernels.ExpShifted(eb, mb))
		pd += float64(kernels.Dot(eb, d[lo:hi]))
		z := zc[:copy(zc[:], d[lo:hi])]
		kernels.Axpy(1, bias[lo:hi], z)
		if !usable(z) {
			return math.NaN()
		}
		mz = max(mz, maxOf(z))
		if flatness != 0 {
			for _, v := range d[lo:hi] {
				sd += float64(v)
			}
		}
	}
	mean := sd / float64(n)
	mean32 := float32(mean)
	// z's normaliser and d's variance (the loss has one more exponential
	// pass than the KL alone would need, since d must outlive it for the
	// variance's gradient).
	var sz, ss float64
	for lo := 0; lo < n; lo += anchorChunk {
		hi := min(lo+anchorChunk, n)
		z := zc[:copy(zc[:], d[lo:hi])]
		kernels.Axpy(1, bias[lo:hi], z)
		sz += float64(kernels.ExpShifted(z, mz))
		if flatness != 0 {
			for _, v := range d[lo:hi] {
				x := float64(v) - mean
				ss += x * x
			}
		}
	}
	kl := float64(mz) + math.Log(sz) - float64(mb) - math.Log(sb) - pd/sb
	// The gradient, chunk by chunk, into d.
	gq, gp := g/float32(sz), -g/float32(sb)
	gf := 2 * g * flatness / float32(n)
	for lo := 0; lo < n; lo += anchorChunk {
		hi := min(lo+anchorChunk, n)
		z := zc[:copy(zc[:], d[lo:hi])]
		kernels.Axpy(1, bias[lo:hi], z)
		kernels.ExpShifted(z, mz)
		kernels.Scale(gq, z)
		eb := e[:copy(e[:], bias[lo:hi])]
		kernels.ExpShifted(eb, mb)
		kernels.Axpy(gp, eb, z)
		if flatness != 0 {
			for i, v := range d[lo:hi] {
				z[i] += gf * (v - mean32)
			}
		}
		copy(d[lo:hi], z)
	}
	return kl + float64(flatness)*ss/float64(n)
}

// usable reports whether no element of x is NaN or +Inf; −Inf, a
// probability of 0, is fine.
func usable(x []float32) bool {
	if finite(x) {
		return true // the common case, fast
	}
	for _, v := range x {
		if v != v || v > math.MaxFloat32 {
			return false
		}
	}
	return true
}

// finite reports whether no element of x is NaN or ±Inf. It adds, to each
// element's exponent field, one unit: only the all-ones exponent of NaN
// and Inf carries into the sign bit. Branch-free, it costs a fraction of
// the row's exponentials.
func finite(x []float32) bool {
	const exponent, unit = 0x7f800000, 0x00800000
	var acc0, acc1 uint32
	i := 0
	for ; i+2 <= len(x); i += 2 {
		acc0 |= math.Float32bits(x[i])&exponent + unit
		acc1 |= math.Float32bits(x[i+1])&exponent + unit
	}
	for ; i < len(x); i++ {
		acc0 |= math.Float32bits(x[i])&exponent + unit
	}
	return (acc0|acc1)&0x80000000 == 0
}
