package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
)

// Template is the frozen template LLM of training.
type Template interface {
	VocabSize() int
	// SequenceLogits writes the logits of every position of tokens, decoded
	// from an empty context, into dst ([len(tokens) × VocabSize()]).
	SequenceLogits(tokens []int32, dst []float32) error
}

// StreamingTemplate is a Template that computes its logits at chosen
// positions only and hands them over as it goes. Training needs them at the
// labelled positions alone (the prompt's would cost the template's
// classifier and a vocabulary-wide row of memory each), and a few rows at a
// time rather than a whole sequence's.
type StreamingTemplate interface {
	Template
	// SequenceLogitsEach decodes tokens from an empty context and calls
	// emit with the logits of the next of the given positions (ascending,
	// each below len(tokens)) as they are ready: [n × VocabSize()] for n
	// positions, valid until emit returns. An error from emit stops the
	// decode and is returned.
	SequenceLogitsEach(tokens, positions []int32, emit func(rows []float32) error) error
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
	// TemplateJitter J, from 0 to below 1, shows each sequence the template
	// at its own temperature in each epoch: the template's logits times a
	// factor drawn uniformly from [1−J, 1+J] (log-probs times it give the
	// same softmax, so the template cache's rows are scaled alike). A delta
	// fitted to one exact template learns shifts that hinge on its
	// confidence (a large raise where it is unsure), which overshoot on a
	// user LLM that is surer; jittered, it learns shifts that hold across
	// confidences (TestJitterCarriesToSurerUsers). 0: off.
	TemplateJitter float64
	// AnchorFlatness λ ≥ 0 adds, at an anchored word (data.Anchor, the
	// words an example leaves to the template), λ times the variance of the
	// delta's logits over the vocabulary to the anchor's KL. The KL weighs
	// each token by the template's probability, so it lets the delta raise a
	// token the template finds unlikely almost for free, and on a user LLM
	// that finds it likely the raise takes the slot the user was to copy
	// into (TestAnchorFlatnessKeepsUsersOwnWord). 0: the KL alone.
	AnchorFlatness float64
}

// templateScale is the factor of the template's logits for sequence idx in
// epoch epoch, of the set that sign marks within a run (+1: sft's training
// set or grad_diff's retain set; −1: grad_diff's forget set): 1 without
// jitter, else a draw fixed by the seed, so that a resumed run sees the
// factors the uninterrupted one would have.
func (c TrainConfig) templateScale(epoch int, sign float32, idx int) float32 {
	if c.TemplateJitter == 0 {
		return 1
	}
	set := uint64(0)
	if sign < 0 {
		set = 1
	}
	// A PCG on the stack, read as rand.Rand.Float64 reads it (the 53 low
	// bits over 2⁵³), so that no sequence allocates a generator.
	var r rand.PCG
	r.Seed(c.Seed, uint64(epoch)<<33|set<<32|uint64(idx))
	u := float64(r.Uint64()<<11>>11) / (1 << 53)
	return float32(1 + c.TemplateJitter*(2*u-1))
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

// rowLogits are the template's logits at rows [first, first+n) of the
// current micro-batch, all of sequence seq ([n × vocab]): one chunk of the
// delta's loss. The template streams them chunk by chunk, so that its
// memory is a few chunks' rows, not a sequence's or a micro-batch's.
type rowLogits struct {
	seq, first int
	logT       []float32
	wait       time.Duration // the template's time on them
	err        error
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
// pass (16 MiB of them), and the size of a chunk of template logits.
const lossChunk = 4 << 20

// templateAhead is how many chunks of logits the template may compute
// before the delta's loss asks for them: memory (16 MiB each) against the
// template's idle time while the delta runs its forward and backward.
const templateAhead = 6

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
	// The template runs ahead of the delta, so that neither waits for the
	// other when there are cores for both. Its goroutine and the planner's
	// are joined before Run returns, whatever ends the run: a template still
	// decoding after its caller freed it would crash.
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
	// The delta's loss reads the logits a chunk of rows at a time:
	// lossChunk floats, and never fewer than 8 rows, so the classifier's
	// products stay efficient.
	chunk := max(8, lossChunk/t.Model.Config.VocabSize)
	if t.chunkRows > 0 {
		chunk = t.chunkRows
	}
	// The template works up to templateAhead chunks ahead of the delta's
	// loss (also while the delta runs its forward and backward passes), so
	// at most templateAhead+2 chunks of template logits are alive: those
	// queued, the one the loss reads and the one the template fills. They
	// are recycled rather than left to the garbage collector.
	batches := make(chan *microBatch)
	rows := make(chan rowLogits, templateAhead)
	free := make(chan []float32, templateAhead+2)
	workers.Add(1)
	go func() {
		defer workers.Done()
		t.runTemplate(ctx, plan, chunk, batches, rows, free)
	}()

	per := t.Config.Accumulate
	if t.Config.Objective == GradDiff {
		per *= 2
	}
	spe := t.Config.StepsPerEpoch(len(t.Train))
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
			ce, n, tmpl, blocked, err := t.trainMicroBatch(ctx, &st, mb, chunk, rows, free)
			if err != nil {
				return err
			}
			st.TemplateTime += tmpl
			st.DeltaTime += time.Since(start) - blocked
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
// sequence; the template's logits of each chunk arrive on rows as the loss
// reaches it. It returns the sum of the cross-entropies, the number of
// labelled tokens, the template's time on them and the time the delta was
// blocked waiting for it.
func (t *Trainer) trainMicroBatch(ctx context.Context, st *Step, mb *microBatch, chunk int, rows <-chan rowLogits, free chan<- []float32) (ce float64, n int, tmpl, blocked time.Duration, err error) {
	v := t.Model.Config.VocabSize
	var cur rowLogits // the chunk of template logits the loss reads
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
			release()
			start := time.Now()
			select {
			case cur = <-rows:
			case <-ctx.Done():
				return ctx.Err()
			}
			blocked += time.Since(start)
			tmpl += cur.wait
			if err := ctx.Err(); err != nil {
				return err // the template may have been aborted by it
			}
			if cur.err != nil {
				return cur.err
			}
			if seq := int(mb.rows[lo]) / mb.T; cur.seq != seq || cur.first != lo || len(cur.logT) != (hi-lo)*v {
				return fmt.Errorf("train: the template sent rows %d+%d of sequence %d where the loss needs rows %d-%d of sequence %d", cur.first, len(cur.logT)/v, cur.seq, lo, hi, seq)
			}
			bias = cur.logT
		}
		sum, k := controlledCE(t.Model, logits, bias, mb, lo, hi, float32(t.Config.AnchorFlatness))
		if math.IsNaN(sum) || math.IsInf(sum, 0) {
			return t.nonFinite(*st, bias, sum)
		}
		ce, n = ce+sum, n+k
		return nil
	})
	return ce, n, tmpl, blocked, err
}

// chunkEnds cuts mb's rows into chunks of at most chunk rows that each lie
// within one sequence, from its first row on, and returns where each chunk
// ends: the cuts runTemplate makes too.
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
func (t *Trainer) nonFinite(st Step, bias []float32, loss float64) error {
	whose := "the delta's logits or their sum with the template's"
	if t.Opt.Step > 0 {
		whose += fmt.Sprintf(" (lr %.3g; training diverged?)", t.Opt.Config.LearningRate(t.Opt.Step-1))
	} else {
		whose += " (the delta's weights?)"
	}
	if math.IsInf(loss, 1) {
		whose += ", or a label the template gives probability 0"
	}
	for i, v := range bias {
		// −Inf is a probability of 0, which the template cache writes
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 1) {
			whose = fmt.Sprintf("the template's logits (%v for token %d)", v, i%t.Model.Config.VocabSize)
			break
		}
	}
	return fmt.Errorf("train: step %d (epoch %d): loss is %v: %s: %w", st.Step, st.Epoch, loss, whose, ErrNonFinite)
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
	case !(c.TemplateJitter >= 0 && c.TemplateJitter < 1):
		return fmt.Errorf("train: template jitter %v: want from 0 to below 1, so that every factor stays above 0", c.TemplateJitter)
	case c.TemplateJitter != 0 && t.Template == nil:
		return errors.New("train: template jitter without a template")
	case !(c.AnchorFlatness >= 0 && c.AnchorFlatness <= math.MaxFloat32):
		return fmt.Errorf("train: anchor flatness %v: want a finite number from 0 up", c.AnchorFlatness)
	case c.AnchorFlatness != 0 && t.Template == nil:
		return errors.New("train: anchor flatness without a template: with no template there are no anchored words")
	case t.Template != nil && t.Template.VocabSize() != t.Model.Config.VocabSize:
		return fmt.Errorf("train: template vocabulary has %d tokens, delta %d: they must share one vocabulary", t.Template.VocabSize(), t.Model.Config.VocabSize)
	}
	return nil
}

// plannedBatch names the sequences of one micro-batch.
type plannedBatch struct {
	from  []data.Sequence
	idx   []int // which of from, in order
	sign  float32
	epoch int
	// stepTokens counts the labelled tokens of this sign in the whole
	// optimiser step, known before its first micro-batch runs.
	stepTokens int
}

// labelled counts the positions of p's sequences that take a loss.
func (p plannedBatch) labelled(template bool) int {
	n := 0
	for _, i := range p.idx {
		for _, y := range p.from[i].Labels {
			if _, ok := lossTarget(y, template); ok {
				n++
			}
		}
	}
	return n
}

// lossTarget is the delta's target for label y, and whether the position
// takes a loss: not where there is no label, nor at an Anchor when there is
// no template to leave the position to.
func lossTarget(y int32, template bool) (int32, bool) {
	switch {
	case y == data.NoToken, y == data.Anchor && !template:
		return 0, false
	case y == data.Anchor:
		return delta.Anchor, true
	}
	return y, true
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
					batches = append(batches, plannedBatch{from: t.Train, idx: idx, sign: 1, epoch: epoch})
					continue
				}
				batches = append(batches, plannedBatch{from: t.Train, idx: idx, sign: -1, epoch: epoch})
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
				batches = append(batches, plannedBatch{from: t.Retain, idx: ridx, sign: 1, epoch: epoch})
			}
			// Each sign's mean is over the step's tokens, so its count is
			// needed before the first micro-batch's gradient.
			tokens := map[float32]int{}
			for _, b := range batches {
				tokens[b.sign] += b.labelled(t.Template != nil)
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
// template's logits at its labelled rows, chunk by chunk as chunkEnds cuts
// them, until the plan ends or ctx is done. It checks ctx before every
// sequence, so that a template that cannot be aborted still stops within
// one sequence.
func (t *Trainer) runTemplate(ctx context.Context, plan <-chan plannedBatch, chunk int, batches chan<- *microBatch, rows chan<- rowLogits, free <-chan []float32) {
	vocab := t.Model.Config.VocabSize
	streaming, _ := t.Template.(StreamingTemplate)
	var whole []float32 // one sequence's logits, for a template that does not stream
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
			out := chunker{seq: b, first: first, size: min(chunk, r-first), vocab: vocab, scale: t.Config.templateScale(p.epoch, p.sign, i),
				rows: rows, free: free, ctx: ctx, start: time.Now()}
			s := p.from[i]
			if streaming != nil {
				err = streaming.SequenceLogitsEach(s.Tokens, positions, out.add)
			} else {
				whole = slices.Grow(whole[:0], len(s.Tokens)*vocab)[:len(s.Tokens)*vocab]
				if err = t.Template.SequenceLogits(s.Tokens, whole); err == nil {
					for _, pos := range positions {
						if err = out.add(whole[int(pos)*vocab : int(pos+1)*vocab]); err != nil {
							break
						}
					}
				}
			}
			if err == nil {
				err = out.flush()
			}
			if err != nil {
				if ctx.Err() == nil {
					select {
					case rows <- rowLogits{err: fmt.Errorf("template logits for %s: %w", s.Source, err)}:
					case <-ctx.Done():
					}
				}
				return
			}
		}
	}
}

// chunker gathers one sequence's template rows into chunks of size rows
// (the last may be shorter) and hands each over when full.
type chunker struct {
	seq, first, size, vocab int
	scale                   float32 // of the template's logits (TrainConfig.TemplateJitter)
	rows                    chan<- rowLogits
	free                    <-chan []float32
	ctx                     context.Context
	start                   time.Time

	buf    []float32
	filled int // rows in buf
}

// add takes rows ([n × vocab]), handing over every chunk it completes.
func (c *chunker) add(rows []float32) error {
	for len(rows) > 0 {
		if c.buf == nil {
			select {
			case c.buf = <-c.free:
			default:
			}
			if cap(c.buf) < c.size*c.vocab {
				c.buf = make([]float32, c.size*c.vocab)
			}
			c.buf = c.buf[:c.size*c.vocab]
		}
		n := min(c.size-c.filled, len(rows)/c.vocab)
		dst := c.buf[c.filled*c.vocab : (c.filled+n)*c.vocab]
		copy(dst, rows[:n*c.vocab])
		if c.scale != 1 {
			kernels.Scale(c.scale, dst)
		}
		c.filled += n
		rows = rows[n*c.vocab:]
		if c.filled == c.size {
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush hands over the rows gathered so far.
func (c *chunker) flush() error {
	if c.filled == 0 {
		return nil
	}
	out := rowLogits{seq: c.seq, first: c.first, logT: c.buf[:c.filled*c.vocab], wait: time.Since(c.start)}
	select {
	case c.rows <- out:
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	c.first += c.filled
	c.buf, c.filled, c.start = nil, 0, time.Now()
	return nil
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
		if target, ok := lossTarget(y, t.Template != nil); ok {
			mb.rows = append(mb.rows, int32(i))
			mb.targets = append(mb.targets, target)
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
// the softmax cancels. At an anchored word the loss is the anchor's
// instead, KL to the template plus flatness times the variance of the
// delta's row (delta.Anchor). It returns the sum of the losses over the
// rows and their number.
func controlledCE(m *delta.Model, logits, bias []float32, mb *microBatch, lo, hi int, flatness float32) (float64, int) {
	return delta.BiasedCrossEntropySum(m.Pool, logits, bias, mb.targets[lo:hi], m.Config.VocabSize, mb.scale, flatness)
}
