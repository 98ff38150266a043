package control

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// watchedTemplate is a template that knows when it is used: it counts its
// calls and the calls in flight, and reports any call that starts after the
// test declared it freed (as cmd/cmc frees the llama.cpp context once Run
// returns).
type watchedTemplate struct {
	inner bigramTemplate
	t     *testing.T
	// onCall runs at the start of call n (1-based) and may block.
	onCall func(n int)

	calls, inFlight atomic.Int32
	freed           atomic.Bool
}

func (w *watchedTemplate) VocabSize() int { return w.inner.VocabSize() }
func (w *watchedTemplate) SequenceLogits(tokens []int32, dst []float32) error {
	n := int(w.calls.Add(1))
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	if w.freed.Load() {
		w.t.Errorf("template call %d after Run returned: use after free", n)
	}
	if w.onCall != nil {
		w.onCall(n)
	}
	// Still decoding: give a Run that does not wait the chance to return.
	time.Sleep(time.Millisecond)
	return w.inner.SequenceLogits(tokens, dst)
}

// returned declares the template freed and fails the test if a call is
// still in flight.
func (w *watchedTemplate) returned() {
	w.t.Helper()
	w.freed.Store(true)
	if n := w.inFlight.Load(); n != 0 {
		w.t.Errorf("Run returned with %d template calls in flight", n)
	}
}

// abortableWatched adds SetAbortContext, as the llama.cpp context has.
type abortableWatched struct {
	*watchedTemplate
	mu    sync.Mutex
	abort context.Context
}

func (a *abortableWatched) SetAbortContext(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.abort = ctx
}

func (a *abortableWatched) abortContext() context.Context {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.abort
}

// TestRunAbortsAndJoinsTemplateOnCancel: Ctrl-C while the template is in a
// long decode aborts that decode, and Run returns only once the template's
// goroutine is out of it.
func TestRunAbortsAndJoinsTemplateOnCancel(t *testing.T) {
	const vocab = 12
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &abortableWatched{watchedTemplate: &watchedTemplate{inner: randomTemplate(vocab, 1), t: t}}
	w.onCall = func(n int) {
		if n != 3 {
			return
		}
		abort := w.abortContext()
		if abort == nil {
			t.Error("Run did not give the template an abort context")
			cancel()
			return
		}
		cancel() // Ctrl-C arrives during this decode ...
		select {
		case <-abort.Done(): // ... which it aborts; winding down takes a while
			time.Sleep(20 * time.Millisecond)
		case <-time.After(10 * time.Second):
			t.Error("the decode in progress was never aborted")
		}
	}
	m := tinyDelta(t, vocab, 1)
	tr := newTrainer(t, w, m, sequences(16, 8, vocab, 2), TrainConfig{Objective: SFT, BatchSize: 2, Accumulate: 1, Epochs: 4, Seed: 1})
	err := tr.Run(ctx)
	w.returned()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if a := w.abortContext(); a != nil {
		t.Errorf("after Run the template still watches %v, which aborts every later decode", a)
	}
}

// TestRunJoinsTemplateOnStepError: a failing step (a checkpoint that cannot
// be written) ends Run while the template works one micro-batch ahead: Run
// must wait for it before returning the error.
func TestRunJoinsTemplateOnStepError(t *testing.T) {
	const vocab = 12
	w := &watchedTemplate{inner: randomTemplate(vocab, 1), t: t}
	// The step error is returned while the template decodes the next
	// micro-batch, slowly.
	reported := make(chan struct{})
	w.onCall = func(n int) {
		if n == 3 {
			<-reported
			time.Sleep(20 * time.Millisecond)
		}
	}
	m := tinyDelta(t, vocab, 1)
	tr := newTrainer(t, w, m, sequences(16, 8, vocab, 2), TrainConfig{Objective: SFT, BatchSize: 2, Accumulate: 1, Epochs: 4, Seed: 1})
	full := errors.New("write checkpoint: no space left on device")
	tr.OnStep = func(s Step) error {
		close(reported)
		return full
	}
	err := tr.Run(context.Background())
	w.returned()
	if !errors.Is(err, full) {
		t.Fatalf("Run returned %v, want the step's error", err)
	}
}

// TestCancelIsAnsweredWithinAMicroBatch: with many micro-batches per step,
// Ctrl-C stops at the next micro-batch, not at the end of the step, and the
// interrupted step's partial gradients are never applied.
func TestCancelIsAnsweredWithinAMicroBatch(t *testing.T) {
	const vocab, accumulate = 12, 8
	const cancelAt = accumulate + 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watchedTemplate{inner: randomTemplate(vocab, 1), t: t}
	w.onCall = func(n int) {
		if n == cancelAt { // step 2, micro-batch 4
			cancel()
		}
	}
	m := tinyDelta(t, vocab, 1)
	tr := newTrainer(t, w, m, sequences(32, 8, vocab, 2), TrainConfig{Objective: SFT, BatchSize: 1, Accumulate: accumulate, Epochs: 2, Seed: 1})
	var afterStep1 []float32
	tr.OnStep = func(s Step) error {
		afterStep1 = slices.Clone(m.Params)
		return nil
	}
	err := tr.Run(ctx)
	w.returned()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if tr.Opt.Step != 1 {
		t.Fatalf("the optimiser took %d steps, want 1 (the interrupted step must not be applied)", tr.Opt.Step)
	}
	if !slices.Equal(m.Params, afterStep1) {
		t.Fatal("the interrupted step's partial gradients changed the weights")
	}
	if n := w.calls.Load(); n > cancelAt {
		t.Fatalf("the template ran %d sequences, %d after Ctrl-C", n, n-cancelAt)
	}
}

// TestNonFiniteStopsTraining: NaN weights, a learning rate that makes the
// loss overflow and a template with NaN logits each stop training with an
// error naming the step, before a bad step is reported (and checkpointed).
func TestNonFiniteStopsTraining(t *testing.T) {
	const vocab = 12
	seqs := sequences(16, 8, vocab, 2)
	cfg := TrainConfig{Objective: SFT, BatchSize: 4, Accumulate: 1, Epochs: 20, Seed: 1}
	nanTemplate := randomTemplate(vocab, 1)
	for _, row := range nanTemplate.table {
		row[3] = float32(math.NaN())
	}
	for _, tc := range []struct {
		name  string
		tmpl  Template
		setup func(*Trainer)
		want  []string
	}{
		{"NaN delta", randomTemplate(vocab, 1), func(tr *Trainer) {
			for i := range tr.Model.Params {
				tr.Model.Params[i] = float32(math.NaN())
			}
		}, []string{"step 1 ", "delta"}},
		{"lr 1e30", randomTemplate(vocab, 1), func(tr *Trainer) {
			tr.Opt.Config.LR, tr.Opt.Config.MinLR, tr.Opt.Config.WarmupSteps = 1e30, 1e30, 0
		}, []string{"step ", "diverged"}},
		{"NaN template", nanTemplate, func(*Trainer) {}, []string{"step 1 ", "template"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyDelta(t, vocab, 1)
			m.Pool = kernels.NewPool(1)
			defer m.Pool.Close()
			tr := newTrainer(t, tc.tmpl, m, seqs, cfg)
			tc.setup(tr)
			var reported []Step
			tr.OnStep = func(s Step) error {
				if math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0) || math.IsNaN(s.GradNorm) {
					t.Errorf("step %d reported with loss %v, gradient norm %v", s.Step, s.Loss, s.GradNorm)
				}
				reported = append(reported, s)
				return nil
			}
			err := tr.Run(context.Background())
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("Run returned %v, want ErrNonFinite", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(reported) >= tr.TotalSteps() {
				t.Errorf("all %d steps ran", len(reported))
			}
		})
	}
}

// TestZeroProbabilityTemplateTrains: a template logit of −Inf is a
// probability of 0 (the template cache writes it for dropped tokens), not a
// fault: training goes on as long as no label falls there.
func TestZeroProbabilityTemplateTrains(t *testing.T) {
	const vocab = 12
	seqs := sequences(16, 8, vocab, 2)
	labels := map[int32]bool{}
	for _, s := range seqs {
		for _, y := range s.Labels {
			labels[y] = true
		}
	}
	never := int32(-1)
	for id := int32(0); id < vocab; id++ {
		if !labels[id] {
			never = id
		}
	}
	if never < 0 {
		t.Fatal("every token is a label: the fixture cannot leave one out")
	}
	tmpl := randomTemplate(vocab, 1)
	for _, row := range tmpl.table {
		row[never] = float32(math.Inf(-1))
	}
	m := tinyDelta(t, vocab, 1)
	tr := newTrainer(t, tmpl, m, seqs, TrainConfig{Objective: SFT, BatchSize: 4, Accumulate: 1, Epochs: 2, Seed: 1})
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}
