package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/delta"
)

// Template is the frozen template LLM of training.
type Template interface {
	VocabSize() int
	// SequenceLogits writes the logits of every position of tokens, decoded
	// from an empty context, into dst ([len(tokens) × VocabSize()]).
	SequenceLogits(tokens []int32, dst []float32) error
}

// PositionTemplate is a Template that can compute its logits at chosen
// positions only. Training needs them at the labelled positions alone, and
// the prompt's would cost the template's classifier and a vocabulary-wide
// row of memory each.
type PositionTemplate interface {
	Template
	// SequenceLogitsAt decodes tokens from an empty context and writes the
	// logits of the given positions (ascending, each below len(tokens))
	// into dst ([len(positions) × VocabSize()]).
	SequenceLogitsAt(tokens, positions []int32, dst []float32) error
}

// Objective names what training minimises.
type Objective string

const (
	// SFT is cross-entropy of log_softmax(template) + delta on the responses.
	SFT Objective = "sft"
	// GradDiff is unlearning: −CE on the forget set + CE on the retain set.
	GradDiff Objective = "grad_diff"
)

// TrainConfig sets up a training run.
type TrainConfig struct {
	Objective  Objective
	BatchSize  int // sequences per micro-batch
	Accumulate int // micro-batches per optimiser step
	Epochs     int // passes over the training (or forget) set
	Seed       uint64
}

// StepsPerEpoch is the number of optimiser steps in one pass over n sequences.
func (c TrainConfig) StepsPerEpoch(n int) int {
	per := c.BatchSize * c.Accumulate
	return (n + per - 1) / per
}

// Step reports one optimiser step.
type Step struct {
	Step, Epoch        int
	Loss               float64 // the objective: mean cross-entropy over the step's labelled tokens
	ForgetCE, RetainCE float64 // grad_diff's two parts (0 for sft)
	LR, GradNorm       float64
	Tokens             int           // response tokens in the step
	TemplateTime       time.Duration // the template's logits and log_softmax, on their own goroutine
	DeltaTime          time.Duration // forward, loss, backward and update of the delta
	Wall               time.Duration // the step end to end: below Template+Delta when they overlap
}

// Trainer trains a delta against a frozen template.
type Trainer struct {
	// Template is nil for plain language-model pretraining of the delta
	// (z = delta logits alone).
	Template Template
	Model    *delta.Model
	Opt      *delta.AdamW
	Config   TrainConfig
	// Train holds the sft sequences, or the forget set for grad_diff.
	Train []data.Sequence
	// Retain is grad_diff's retain set, cycled through as needed.
	Retain []data.Sequence
	// PadToken fills the unused tail of shorter sequences in a batch.
	PadToken int32
	// OnStep is called after every optimiser step; returning an error stops
	// training (e.g. a failed checkpoint).
	OnStep func(Step) error

	chunkRows int // rows of delta logits alive at once; 0: lossChunk floats' worth
}

// TotalSteps is the number of optimiser steps of the whole run.
func (t *Trainer) TotalSteps() int {
	return t.Config.Epochs * t.Config.StepsPerEpoch(len(t.Train))
}

// microBatch is B sequences padded to one length T, with the template's
// logits at the labelled positions once they are ready. Only labelled
// positions get vocabulary-wide rows (template logits, delta logits and
// their gradient, the latter a chunk at a time): a prompt costs the
// transformer, not the classifier.
type microBatch struct {
	ids     []int32 // [B·T] tokens
	B, T    int
	rows    []int32   // the labelled positions b·T+t, ascending
	targets []int32   // the label of each row
	logT    []float32 // [len(rows) × vocab] the template's logits at rows
	sign    float32   // +1: minimise CE; −1: maximise it (forget set)
	// scale is sign / the labelled tokens of this sign in the whole step:
	// the gradient factor that makes the step's loss a per-token mean.
	scale float32
	wait  time.Duration
	err   error
}

// AbortableTemplate is a Template that can abandon a SequenceLogits in
// progress: Run hands it a context that is cancelled when training stops,
// so that Ctrl-C or a failed step does not wait for a long decode.
type AbortableTemplate interface {
	Template
	// SetAbortContext makes SequenceLogits return an error wrapping
	// ctx.Err() soon after ctx is done; nil stops watching. It is never
	// called during a SequenceLogits.
	SetAbortContext(ctx context.Context)
}

// lossChunk is the number of delta logits alive at once in a training
// pass: 16 MiB of them.
const lossChunk = 4 << 20

// ErrNonFinite reports a loss or gradient that is NaN or infinite: training
// diverged (a learning rate far too high) or a model holds non-finite
// weights. The model in memory is then unusable; the last checkpoint is not.
var ErrNonFinite = errors.New("not finite")

// Run trains from the optimiser's current step (0, or where a checkpoint
// left off) to the end, or until ctx is cancelled; it then returns ctx's
// error, with the model at the last completed step. Run returns only after
// its goroutines have stopped, so the caller may free the template at once.
func (t *Trainer) Run(ctx context.Context) (err error) {
	if err := t.check(); err != nil {
		return err
	}
	total := t.TotalSteps()
	if t.Opt.Step >= total {
		return nil
	}
	// The template runs one micro-batch ahead of the delta, so that neither
	// waits for the other when there are cores for both. Its goroutine and
	// the planner's are joined before Run returns, whatever ends the run:
	// a template still decoding after its caller freed it would crash.
	ctx, cancel := context.WithCancel(ctx)
	var workers sync.WaitGroup
	abortable, _ := t.Template.(AbortableTemplate)
	if abortable != nil {
		abortable.SetAbortContext(ctx)
	}
	defer func() {
		cancel()
		workers.Wait()
		if abortable != nil {
			abortable.SetAbortContext(nil)
		}
	}()
	plan := t.plan(ctx, &workers, t.Opt.Step, total)
	// The hand-over is unbuffered, so that two buffers of template logits
	// (rows·vocab floats each) are alive, not three: the one the delta
	// uses and the one the template fills. They are recycled rather than
	// left to the garbage collector.
	batches := make(chan *microBatch)
	free := make(chan []float32, 2)
	workers.Add(1)
	go func() {
		defer workers.Done()
		t.runTemplate(ctx, plan, batches, free)
	}()

	per := t.Config.Accumulate
	if t.Config.Objective == GradDiff {
		per *= 2
	}
	spe := t.Config.StepsPerEpoch(len(t.Train))
	// The delta's logits live a chunk of rows at a time: lossChunk floats,
	// and never fewer than 8 rows, so the classifier's products stay
	// efficient.
	chunk := max(8, lossChunk/t.Model.Config.VocabSize)
	if t.chunkRows > 0 {
		chunk = t.chunkRows
	}
	for step := t.Opt.Step; step < total; step++ {
		st := Step{Step: step + 1, Epoch: step/spe + 1}
		stepStart := time.Now()
		// AdamW.Update leaves the gradients cleared for the next step; an
		// interrupted step's partial gradients are never applied.
		var forget, retain float64
		var nForget, nRetain int
		for i := 0; i < per; i++ {
			var mb *microBatch
			select {
			case mb = <-batches:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := ctx.Err(); err != nil {
				return err // the template may have been aborted by it
			}
			if mb.err != nil {
				return mb.err
			}
			st.TemplateTime += mb.wait
			start := time.Now()
			var ce float64
			var n int
			t.Model.TrainRows(mb.ids, mb.B, mb.T, mb.rows, chunk, func(lo, hi int, logits []float32) {
				sum, k := controlledCE(t.Model, logits, mb, lo, hi)
				ce, n = ce+sum, n+k
			})
			if math.IsNaN(ce) || math.IsInf(ce, 0) {
				return t.nonFinite(st, mb)
			}
			st.DeltaTime += time.Since(start)
			if mb.logT != nil {
				free <- mb.logT
			}
			st.Tokens += n
			if mb.sign < 0 {
				forget, nForget = forget+ce, nForget+n
			} else {
				retain, nRetain = retain+ce, nRetain+n
			}
		}
		start := time.Now()
		st.LR = t.Opt.Config.LearningRate(t.Opt.Step)
		// the micro-batches' gradients already sum to the step's mean
		st.GradNorm = t.Opt.Update(t.Model, 1)
		st.DeltaTime += time.Since(start)
		if math.IsNaN(st.GradNorm) || math.IsInf(st.GradNorm, 0) {
			return fmt.Errorf("train: step %d (epoch %d): gradient norm is %v (lr %.3g; training diverged?): %w", st.Step, st.Epoch, st.GradNorm, st.LR, ErrNonFinite)
		}
		st.ForgetCE, st.RetainCE = forget/float64(max(nForget, 1)), retain/float64(max(nRetain, 1))
		st.Loss = st.RetainCE - st.ForgetCE
		if t.Config.Objective == SFT {
			st.ForgetCE, st.RetainCE = 0, 0
		}
		st.Wall = time.Since(stepStart)
		if t.OnStep != nil {
			if err := t.OnStep(st); err != nil {
				return err
			}
		}
	}
	return nil
}

// nonFinite explains a NaN or infinite micro-batch loss: whose logits were
// not finite, at which step.
func (t *Trainer) nonFinite(st Step, mb *microBatch) error {
	whose := "the delta's logits or their sum with the template's"
	if t.Opt.Step > 0 {
		whose += fmt.Sprintf(" (lr %.3g; training diverged?)", t.Opt.Config.LearningRate(t.Opt.Step-1))
	} else {
		whose += " (the delta's weights?)"
	}
	for i, v := range mb.logT {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			whose = fmt.Sprintf("the template's logits (%v at row %d)", v, i/t.Model.Config.VocabSize)
			break
		}
	}
	return fmt.Errorf("train: step %d (epoch %d): loss is not a number: %s: %w", st.Step, st.Epoch, whose, ErrNonFinite)
}

func (t *Trainer) check() error {
	c := t.Config
	switch {
	case c.BatchSize < 1 || c.Accumulate < 1 || c.Epochs < 1:
		return fmt.Errorf("train: batch size %d, accumulation %d and epochs %d must all be at least 1", c.BatchSize, c.Accumulate, c.Epochs)
	case len(t.Train) == 0:
		return errors.New("train: no training sequences")
	case c.Objective == GradDiff && len(t.Retain) == 0:
		return errors.New("train: grad_diff needs a retain set")
	case c.Objective != SFT && c.Objective != GradDiff:
		return fmt.Errorf("train: unknown objective %q (want sft or grad_diff)", c.Objective)
	case t.Template != nil && t.Template.VocabSize() != t.Model.Config.VocabSize:
		return fmt.Errorf("train: template vocabulary has %d tokens, delta %d: they must share one vocabulary", t.Template.VocabSize(), t.Model.Config.VocabSize)
	}
	return nil
}

// plannedBatch names the sequences of one micro-batch.
type plannedBatch struct {
	from []data.Sequence
	idx  []int // which of from, in order
	sign float32
	// stepTokens counts the labelled tokens of this sign in the whole
	// optimiser step, known before its first micro-batch runs.
	stepTokens int
}

// labelled counts the positions of p's sequences that have a label.
func (p plannedBatch) labelled() int {
	n := 0
	for _, i := range p.idx {
		for _, y := range p.from[i].Labels {
			if y != data.NoToken {
				n++
			}
		}
	}
	return n
}

// plan lists the micro-batches from optimiser step `from` to `to` in order,
// on a goroutine of workers that ends when ctx does. The order depends only
// on the seed and the epoch, so a resumed run sees exactly the batches the
// uninterrupted run would have.
func (t *Trainer) plan(ctx context.Context, workers *sync.WaitGroup, from, to int) <-chan plannedBatch {
	out := make(chan plannedBatch, 4)
	send := func(p plannedBatch) bool {
		select {
		case out <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	workers.Add(1)
	go func() {
		defer workers.Done()
		defer close(out)
		c := t.Config
		spe := c.StepsPerEpoch(len(t.Train))
		retainNext := 0
		var retainOrder []int
		for step := from; step < to; step++ {
			epoch := step / spe
			order := data.Order(len(t.Train), c.Seed, epoch)
			var batches []plannedBatch
			for mb := 0; mb < c.Accumulate; mb++ {
				first := (step%spe*c.Accumulate + mb) * c.BatchSize
				if first >= len(order) {
					// The last step of an epoch may hold fewer micro-batches:
					// wrap around to keep every step's size equal.
					first %= len(order)
				}
				idx := order[first:min(first+c.BatchSize, len(order))]
				if c.Objective == SFT {
					batches = append(batches, plannedBatch{from: t.Train, idx: idx, sign: 1})
					continue
				}
				batches = append(batches, plannedBatch{from: t.Train, idx: idx, sign: -1})
				// Retain batches cycle through their own shuffled order,
				// positioned from the global micro-batch index.
				global := step*c.Accumulate + mb
				ridx := make([]int, 0, c.BatchSize)
				for i := 0; i < c.BatchSize; i++ {
					k := global*c.BatchSize + i
					rEpoch := k / len(t.Retain)
					if retainOrder == nil || rEpoch != retainNext {
						retainOrder = data.Order(len(t.Retain), c.Seed+1, rEpoch)
						retainNext = rEpoch
					}
					ridx = append(ridx, retainOrder[k%len(t.Retain)])
				}
				batches = append(batches, plannedBatch{from: t.Retain, idx: ridx, sign: 1})
			}
			// Each sign's mean is over the step's tokens, so its count is
			// needed before the first micro-batch's gradient.
			tokens := map[float32]int{}
			for _, b := range batches {
				tokens[b.sign] += b.labelled()
			}
			for _, b := range batches {
				b.stepTokens = tokens[b.sign]
				if !send(b) {
					return
				}
			}
		}
	}()
	return out
}

// runTemplate pads each planned micro-batch and fills in the template's
// logits at its labelled positions, one batch ahead of the delta, until the
// plan ends or ctx is done. It checks ctx before every sequence, so that a
// template that cannot be aborted still stops within one sequence.
func (t *Trainer) runTemplate(ctx context.Context, plan <-chan plannedBatch, out chan<- *microBatch, free <-chan []float32) {
	vocab := t.Model.Config.VocabSize
	positional, _ := t.Template.(PositionTemplate)
	var whole []float32 // one sequence's logits, for a template without positions
	for p := range plan {
		start := time.Now()
		mb, err := t.pad(p)
		if err != nil {
			mb = &microBatch{err: err}
		}
		if t.Template != nil && mb.err == nil {
			var buf []float32
			select {
			case buf = <-free:
			default:
			}
			if need := len(mb.rows) * vocab; cap(buf) >= need {
				mb.logT = buf[:need]
			} else {
				mb.logT = make([]float32, need)
			}
			// Sequence b's rows are the run of mb.rows in [b·T, (b+1)·T).
			var positions []int32
			r := 0
			for b, i := range p.idx {
				if ctx.Err() != nil {
					return
				}
				s := p.from[i]
				first := r
				positions = positions[:0]
				for ; r < len(mb.rows) && int(mb.rows[r]) < (b+1)*mb.T; r++ {
					positions = append(positions, mb.rows[r]-int32(b*mb.T))
				}
				if r == first {
					continue
				}
				dst := mb.logT[first*vocab : r*vocab]
				if positional != nil {
					err = positional.SequenceLogitsAt(s.Tokens, positions, dst)
				} else {
					whole = slices.Grow(whole[:0], len(s.Tokens)*vocab)[:len(s.Tokens)*vocab]
					if err = t.Template.SequenceLogits(s.Tokens, whole); err == nil {
						for j, pos := range positions {
							copy(dst[j*vocab:(j+1)*vocab], whole[int(pos)*vocab:])
						}
					}
				}
				if err != nil {
					mb.err = fmt.Errorf("template logits for %s: %w", s.Source, err)
					break
				}
			}
			mb.wait = time.Since(start)
		}
		select {
		case out <- mb:
		case <-ctx.Done():
			return
		}
		if mb.err != nil {
			return
		}
	}
}

func (t *Trainer) pad(p plannedBatch) (*microBatch, error) {
	width := 0
	for _, i := range p.idx {
		width = max(width, len(p.from[i].Tokens))
	}
	b, err := data.MakeBatch(p.from, p.idx, len(p.idx), width, t.PadToken)
	if err != nil {
		return nil, err
	}
	mb := &microBatch{ids: b.Tokens, B: b.Rows, T: b.Width, sign: p.sign, rows: []int32{}}
	if p.stepTokens > 0 {
		mb.scale = p.sign / float32(p.stepTokens)
	}
	for i, y := range b.Labels {
		if y != data.NoToken {
			mb.rows = append(mb.rows, int32(i))
			mb.targets = append(mb.targets, y)
		}
	}
	return mb, nil
}

// controlledCE computes the CMC loss of a micro-batch's labelled rows
// [lo, hi),
//
//	z = log_softmax(template) + delta;  CE(z, label),
//
// and overwrites logits (the delta's, [hi−lo × vocab]) with
// scale · d(CE)/d(delta logits), so that a step's micro-batches sum to the
// gradient of its per-token mean. The template's raw logits serve as well
// as its log-probs: log_softmax only shifts each row by a constant, which
// the softmax cancels. It returns the sum of CE over the rows and their
// number.
func controlledCE(m *delta.Model, logits []float32, mb *microBatch, lo, hi int) (float64, int) {
	v := m.Config.VocabSize
	var bias []float32
	if mb.logT != nil {
		bias = mb.logT[lo*v : hi*v]
	}
	return delta.BiasedCrossEntropySum(m.Pool, logits, bias, mb.targets[lo:hi], v, mb.scale)
}
