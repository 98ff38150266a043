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
	rows    []int32 // the labelled positions b·T+t, ascending
	targets []int32 // the label of each row
	sign    float32 // +1: minimise CE; −1: maximise it (forget set)
	// scale is sign / the labelled tokens of this sign in the whole step:
	// the gradient factor that makes the step's loss a per-token mean.
	scale float32
	err   error
}

// seqLogits are the template's logits at the labelled rows of sequence seq
// of the current micro-batch ([its rows × vocab]). The template streams
// them one sequence at a time, so that its memory is one sequence's rows,
// not a micro-batch's.
type seqLogits struct {
	seq  int
	logT []float32
	wait time.Duration
	err  error
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
	// The hand-overs are unbuffered: the template works at most one
	// sequence ahead of the delta's loss, and two buffers of one sequence's
	// template logits are alive, the one the loss reads and the one the
	// template fills. They are recycled rather than left to the garbage
	// collector.
	batches := make(chan *microBatch)
	seqs := make(chan seqLogits)
	free := make(chan []float32, 2)
	workers.Add(1)
	go func() {
		defer workers.Done()
		t.runTemplate(ctx, plan, batches, seqs, free)
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
			start := time.Now()
			ce, n, wait, err := t.trainMicroBatch(ctx, &st, mb, chunk, seqs, free)
			if err != nil {
				return err
			}
			st.TemplateTime += wait
			st.DeltaTime += time.Since(start) - wait
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

// trainMicroBatch runs the delta's forward, loss and backward on mb, its
// classifier chunk by chunk of labelled rows, each chunk within one
// sequence; the template's logits of each sequence arrive on seqs as the
// loss reaches it. It returns the sum of the cross-entropies, the number of
// labelled tokens and the time spent waiting for the template.
func (t *Trainer) trainMicroBatch(ctx context.Context, st *Step, mb *microBatch, chunk int, seqs <-chan seqLogits, free chan<- []float32) (ce float64, n int, wait time.Duration, err error) {
	v := t.Model.Config.VocabSize
	var cur seqLogits // the sequence whose template logits the loss reads
	curFirst := 0     // its first row
	release := func() {
		if cur.logT != nil {
			select {
			case free <- cur.logT:
			default:
			}
			cur.logT = nil
		}
	}
	defer release()
	err = t.Model.TrainRows(mb.ids, mb.B, mb.T, mb.rows, chunkEnds(mb, chunk), func(lo, hi int, logits []float32) error {
		var bias []float32
		if t.Template != nil {
			if b := int(mb.rows[lo]) / mb.T; cur.logT == nil || cur.seq != b {
				release()
				start := time.Now()
				select {
				case cur = <-seqs:
				case <-ctx.Done():
					return ctx.Err()
				}
				wait += time.Since(start)
				if err := ctx.Err(); err != nil {
					return err // the template may have been aborted by it
				}
				if cur.err != nil {
					return cur.err
				}
				if cur.seq != b {
					return fmt.Errorf("train: the template sent the logits of sequence %d where the loss needs sequence %d", cur.seq, b)
				}
				curFirst = lo
			}
			bias = cur.logT[(lo-curFirst)*v : (hi-curFirst)*v]
		}
		sum, k := controlledCE(t.Model, logits, bias, mb, lo, hi)
		if math.IsNaN(sum) || math.IsInf(sum, 0) {
			return t.nonFinite(*st, bias)
		}
		ce, n = ce+sum, n+k
		return nil
	})
	return ce, n, wait, err
}

// chunkEnds cuts mb's rows into chunks of at most chunk rows that each lie
// within one sequence, and returns where each chunk ends.
func chunkEnds(mb *microBatch, chunk int) []int {
	var ends []int
	for lo := 0; lo < len(mb.rows); {
		seq, hi := int(mb.rows[lo])/mb.T, lo+1
		for hi < len(mb.rows) && hi-lo < chunk && int(mb.rows[hi])/mb.T == seq {
			hi++
		}
		ends = append(ends, hi)
		lo = hi
	}
	return ends
}

// nonFinite explains a NaN or infinite loss: whose logits were not finite
// (bias holds the template's of the rows at fault), at which step.
func (t *Trainer) nonFinite(st Step, bias []float32) error {
	whose := "the delta's logits or their sum with the template's"
	if t.Opt.Step > 0 {
		whose += fmt.Sprintf(" (lr %.3g; training diverged?)", t.Opt.Config.LearningRate(t.Opt.Step-1))
	} else {
		whose += " (the delta's weights?)"
	}
	for i, v := range bias {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			whose = fmt.Sprintf("the template's logits (%v for token %d)", v, i%t.Model.Config.VocabSize)
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

// runTemplate pads each planned micro-batch and hands it over, then the
// template's logits at the labelled rows of each of its sequences, one
// sequence at a time, until the plan ends or ctx is done. It checks ctx
// before every sequence, so that a template that cannot be aborted still
// stops within one sequence.
func (t *Trainer) runTemplate(ctx context.Context, plan <-chan plannedBatch, batches chan<- *microBatch, seqs chan<- seqLogits, free <-chan []float32) {
	vocab := t.Model.Config.VocabSize
	positional, _ := t.Template.(PositionTemplate)
	var whole []float32 // one sequence's logits, for a template without positions
	var positions []int32
	for p := range plan {
		mb, err := t.pad(p)
		if err != nil {
			mb = &microBatch{err: err}
		}
		select {
		case batches <- mb:
		case <-ctx.Done():
			return
		}
		if mb.err != nil {
			return
		}
		if t.Template == nil {
			continue
		}
		// Sequence b's rows are the run of mb.rows in [b·T, (b+1)·T).
		r := 0
		for b, i := range p.idx {
			if ctx.Err() != nil {
				return
			}
			first := r
			positions = positions[:0]
			for ; r < len(mb.rows) && int(mb.rows[r]) < (b+1)*mb.T; r++ {
				positions = append(positions, mb.rows[r]-int32(b*mb.T))
			}
			if r == first {
				continue // no labels: the loss never asks for this sequence
			}
			start := time.Now()
			var buf []float32
			select {
			case buf = <-free:
			default:
			}
			if need := len(positions) * vocab; cap(buf) >= need {
				buf = buf[:need]
			} else {
				buf = make([]float32, need)
			}
			s := p.from[i]
			if positional != nil {
				err = positional.SequenceLogitsAt(s.Tokens, positions, buf)
			} else {
				whole = slices.Grow(whole[:0], len(s.Tokens)*vocab)[:len(s.Tokens)*vocab]
				if err = t.Template.SequenceLogits(s.Tokens, whole); err == nil {
					for j, pos := range positions {
						copy(buf[j*vocab:(j+1)*vocab], whole[int(pos)*vocab:])
					}
				}
			}
			out := seqLogits{seq: b, logT: buf, wait: time.Since(start)}
			if err != nil {
				out.err = fmt.Errorf("template logits for %s: %w", s.Source, err)
			}
			select {
			case seqs <- out:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
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
// given the template's logits there (bias, nil without a template), and
// overwrites logits (the delta's, [hi−lo × vocab]) with
// scale · d(CE)/d(delta logits), so that a step's micro-batches sum to the
// gradient of its per-token mean. The template's raw logits serve as well
// as its log-probs: log_softmax only shifts each row by a constant, which
// the softmax cancels. It returns the sum of CE over the rows and their
// number.
func controlledCE(m *delta.Model, logits, bias []float32, mb *microBatch, lo, hi int) (float64, int) {
	return delta.BiasedCrossEntropySum(m.Pool, logits, bias, mb.targets[lo:hi], m.Config.VocabSize, mb.scale)
}
