package llama

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// hiddenErr is a context that is done from the start but whose Err can be
// made to answer nil a given number of times: Decode's own check before a
// llama_decode then passes, so the abort must come from inside llama.cpp,
// through the callback SetAbortContext installs.
type hiddenErr struct {
	context.Context
	done  chan struct{}
	hide  atomic.Int32 // Err calls left that answer nil
	calls atomic.Int32
}

func newHiddenErr() *hiddenErr {
	c := &hiddenErr{Context: context.Background(), done: make(chan struct{})}
	close(c.done)
	return c
}

func (c *hiddenErr) Done() <-chan struct{} { return c.done }

func (c *hiddenErr) Err() error {
	c.calls.Add(1)
	if c.hide.Add(-1) >= 0 {
		return nil
	}
	return context.Canceled
}

// TestAbortInsideDecode aborts a llama_decode from its callback and checks
// that the cache keeps what was decoded before the call, and that the
// context decodes correctly once the abort context is cleared.
func TestAbortInsideDecode(t *testing.T) {
	g := readGolden(t)
	m := loadModel(t, "models/stories260K/stories260K.gguf", ModelParams{})
	seq := append(append([]int32{}, g.PromptIDs...), g.GreedyIDs[:20]...)
	n := m.Vocab().Size()

	ref, err := m.NewContext(ContextParams{Size: 64, Threads: 1, KVF32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want := make([]float32, n)
	if err := ref.Decode(seq, OutputLast, want); err != nil {
		t.Fatal(err)
	}

	c, err := m.NewContext(ContextParams{Size: 64, Threads: 1, KVF32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const kept = 5
	if err := c.Decode(seq[:kept], OutputNone, nil); err != nil {
		t.Fatal(err)
	}

	ctx := newHiddenErr()
	c.SetAbortContext(ctx)
	<-c.watchDone // the flag llama.cpp polls is set before the decode starts
	ctx.hide.Store(1)
	ctx.calls.Store(0)
	err = c.Decode(seq[kept:], OutputLast, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("aborted decode: got %v, want an error wrapping context.Canceled", err)
	}
	if ctx.calls.Load() != 2 {
		t.Fatalf("Decode checked the context %d times, want 2 (before llama_decode, then after its abort)", ctx.calls.Load())
	}
	if c.Len() != kept {
		t.Fatalf("Len after an aborted decode = %d, want the %d positions decoded before it", c.Len(), kept)
	}
	if c.LastLogits() != nil {
		t.Fatal("LastLogits after an aborted decode is not nil")
	}

	// Still done: the next Decode is refused before reaching llama.cpp.
	if err := c.Decode(seq[kept:], OutputLast, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("decode with a done abort context: got %v", err)
	}

	c.SetAbortContext(nil)
	got := make([]float32, n)
	if err := c.Decode(seq[kept:], OutputLast, got); err != nil {
		t.Fatalf("decode after clearing the abort context: %v", err)
	}
	if d := maxAbsDiff(got, want); d > 1e-4 {
		t.Fatalf("logits after an abort differ from an uninterrupted run by %g", d)
	}
}

// TestAbortFromAnotherGoroutine cancels long prefills from another
// goroutine: the running Decode returns context.Canceled, and the context
// works again after Clear.
func TestAbortFromAnotherGoroutine(t *testing.T) {
	g := readGolden(t)
	m := loadModel(t, "models/stories260K/stories260K.gguf", ModelParams{})
	c, err := m.NewContext(ContextParams{Size: 512, Batch: 512, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	long := make([]int32, c.Size())
	for i := range long {
		long[i] = g.GreedyIDs[i%len(g.GreedyIDs)]
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.SetAbortContext(ctx)
	started := make(chan struct{})
	go func() {
		<-started
		cancel()
	}()
	// Prefill again and again until the cancellation lands; it may land
	// inside llama_decode or between two calls, and both must end the same.
	deadline := time.Now().Add(time.Minute) // a guard against a hang, not a timing assertion
	for i := 0; ; i++ {
		c.Clear()
		err := c.Decode(long, OutputLast, nil)
		if i == 0 {
			close(started)
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled prefill: got %v, want context.Canceled", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("prefills never saw the cancellation")
		}
	}

	c.SetAbortContext(nil)
	c.Clear()
	logits := make([]float32, len(g.PromptIDs)*c.VocabSize())
	if err := c.Decode(g.PromptIDs, OutputAll, logits); err != nil {
		t.Fatal(err)
	}
	nv := c.VocabSize()
	for p, want := range g.Logits {
		if d := maxAbsDiff(logits[p*nv:(p+1)*nv], want); d > 1e-2 {
			t.Fatalf("position %d after a cancelled prefill: logits differ from the golden by %g", p, d)
		}
	}
}

// Generation decodes one token at a time: with an abort context watched,
// the log capture and the logits check in place, that allocates nothing.
func TestDecodeOneTokenDoesNotAllocate(t *testing.T) {
	m := loadModel(t, "models/stories260K/stories260K.gguf", ModelParams{})
	c, err := m.NewContext(ContextParams{Size: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.SetAbortContext(ctx)
	if err := c.Decode([]int32{1, 403, 407}, OutputLast, nil); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(50, func() {
		if c.Len() > 60 {
			if err := c.Trim(3); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Decode([]int32{261}, OutputLast, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode of one token allocates %v times", allocs)
	}
}
