package control

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// countingTemplate counts the sequences its inner template computes.
type countingTemplate struct {
	Template
	calls int
}

func (c *countingTemplate) SequenceLogits(tokens []int32, dst []float32) error {
	c.calls++
	return c.Template.SequenceLogits(tokens, dst)
}

func TestTemplateCacheRoundTrip(t *testing.T) {
	const vocab = 40
	inner := &countingTemplate{Template: randomTemplate(vocab, 3)}
	dir := t.TempDir()
	c := &CachedTemplate{Inner: inner, Dir: dir, TopK: 8, Key: "test"}
	tokens := []int32{1, 5, 9, 2}
	first := make([]float32, len(tokens)*vocab)
	if err := c.SequenceLogits(tokens, first); err != nil {
		t.Fatal(err)
	}
	cached := make([]float32, len(tokens)*vocab)
	if err := c.SequenceLogits(tokens, cached); err != nil {
		t.Fatal(err)
	}
	if inner.calls != 1 || c.Hits != 1 || c.Misses != 1 {
		t.Fatalf("inner ran %d times, hits %d misses %d; want the second call from disk", inner.calls, c.Hits, c.Misses)
	}
	// The miss served what the hit serves, bit for bit: a run must not depend
	// on whether another job wrote an entry first.
	for i := range first {
		if math.Float32bits(first[i]) != math.Float32bits(cached[i]) {
			t.Fatalf("logit %d: the miss gave %g, the hit %g", i, first[i], cached[i])
		}
	}
	logits := make([]float32, len(tokens)*vocab)
	if err := inner.Template.SequenceLogits(tokens, logits); err != nil {
		t.Fatal(err)
	}
	exact := make([]float32, vocab)
	scratch := make([]float32, vocab)
	for r := range tokens {
		logSoftmax(exact, logits[r*vocab:(r+1)*vocab], scratch)
		row := cached[r*vocab : (r+1)*vocab]
		var mass float64
		kept := 0
		for i, lp := range row {
			mass += math.Exp(float64(lp))
			if math.Abs(float64(lp-exact[i])) < 1e-5 {
				kept++
			}
		}
		if math.Abs(mass-1) > 1e-4 {
			t.Errorf("row %d: cached distribution sums to %g", r, mass)
		}
		if kept < 8 {
			t.Errorf("row %d: only %d log-probs kept exactly, want the top 8", r, kept)
		}
	}

	// A damaged entry is recomputed, not trusted.
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.zst"))
	if len(files) != 1 {
		t.Fatalf("%d cache files, want 1", len(files))
	}
	if err := os.WriteFile(files[0], []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.SequenceLogits(tokens, cached); err != nil {
		t.Fatal(err)
	}
	if inner.calls != 2 {
		t.Fatal("a damaged cache entry was used")
	}
	// Another template key never reads this entry.
	other := &CachedTemplate{Inner: inner, Dir: dir, TopK: 8, Key: "another model"}
	if err := other.SequenceLogits(tokens, cached); err != nil || other.Misses != 1 {
		t.Fatalf("entry of another template key was served (misses %d, %v)", other.Misses, err)
	}
}

// TestTemplateCacheLossGap trains twice, with the exact template and with
// its top-k cache, and bounds the difference of the final held-out loss.
func TestTemplateCacheLossGap(t *testing.T) {
	const vocab = 24
	tmpl := randomTemplate(vocab, 9)
	all := sequences(80, 16, vocab, 11)
	train, held := all[:64], all[64:]
	run := func(tp Template) float64 {
		m := tinyDelta(t, vocab, 2)
		m.Pool = kernels.NewPool(1)
		defer m.Pool.Close()
		tr := newTrainer(t, tp, m, train, TrainConfig{Objective: SFT, BatchSize: 8, Accumulate: 1, Epochs: 4, Seed: 1})
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return heldOutLoss(t, tmpl, m, held)
	}
	exact := run(tmpl)
	cache := &CachedTemplate{Inner: tmpl, Dir: t.TempDir(), TopK: 12, Key: "bigram"}
	cached := run(cache)
	t.Logf("held-out loss: exact template %.4f, top-12 cache %.4f (hits %d, misses %d)", exact, cached, cache.Hits, cache.Misses)
	if cache.Hits == 0 {
		t.Fatal("later epochs did not read the cache")
	}
	if math.Abs(cached-exact) > 0.05*exact {
		t.Fatalf("cache changes the outcome by more than 5%%: %.4f vs %.4f", cached, exact)
	}
}

// TestTemplateKeyHashesTheWholeFile: two model files equal in size and in
// their first 8 MiB (what the key used to hash), differing after it, get
// different keys; the same file keeps its key, from the memo too.
func TestTemplateKeyHashesTheWholeFile(t *testing.T) {
	dir := t.TempDir()
	head := make([]byte, 9<<20)
	for i := range head {
		head[i] = byte(i * 7)
	}
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	if err := os.WriteFile(a, head, 0o644); err != nil {
		t.Fatal(err)
	}
	head[len(head)-1] ^= 1 // one byte past 8 MiB
	if err := os.WriteFile(b, head, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	ka, err := TemplateKey(a, cache)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := TemplateKey(b, cache)
	if err != nil {
		t.Fatal(err)
	}
	if ka == kb {
		t.Fatalf("files differing after 8 MiB share the key %s", ka)
	}
	again, err := TemplateKey(a, cache)
	if err != nil || again != ka {
		t.Fatalf("second key of the same file %q (%v), want %q", again, err, ka)
	}
	// Rewriting a file changes its stamp, so the memo is not trusted.
	if err := os.WriteFile(a, head, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(a, time.Now().Add(time.Hour), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if k, err := TemplateKey(a, cache); err != nil || k != kb {
		t.Fatalf("key of the rewritten file %q (%v), want that of its new content %q", k, err, kb)
	}
	if _, err := TemplateKey(filepath.Join(dir, "missing.gguf"), cache); err == nil {
		t.Fatal("a missing file has a key")
	}
}
