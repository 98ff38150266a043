package delta

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/internal/testfixture"
)

const fixtures = "../../shared/fixtures/"

const (
	stories260KBin  = fixtures + "models/stories260K/stories260K.bin"
	stories260KGGUF = fixtures + "models/stories260K/stories260K.gguf"
	goldenFile      = fixtures + "models/stories260K/golden_greedy_once_upon_a_time.json"
)

// golden is the independent float32 reference run of stories260K.
type golden struct {
	PromptIDs []int32     `json:"prompt_ids"`
	GreedyIDs []int32     `json:"greedy_ids"`
	Text      string      `json:"greedy_text_including_prompt"`
	Logits    [][]float32 `json:"logits"` // [position][vocab] after feeding prompt_ids[0..p]
}

func needFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		testfixture.Missing(t, "fixture %s not available: %v", path, err)
	}
}

func loadGolden(t testing.TB) golden {
	t.Helper()
	needFile(t, goldenFile)
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", goldenFile, err)
	}
	if len(g.Logits) != len(g.PromptIDs) || len(g.GreedyIDs) == 0 {
		t.Fatalf("%s: %d logit rows for %d prompt ids, %d greedy ids", goldenFile, len(g.Logits), len(g.PromptIDs), len(g.GreedyIDs))
	}
	return g
}

func load260KBin(t testing.TB) *Model {
	t.Helper()
	needFile(t, stories260KBin)
	m, err := LoadLlama2C(stories260KBin)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// maxAbsDiff returns max |a_i − b_i|.
func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

func TestLoadLlama2CHeader(t *testing.T) {
	m := load260KBin(t)
	want := Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, SeqLen: 512, SharedClassifier: true}
	if m.Config != want {
		t.Fatalf("config %+v, want %+v", m.Config, want)
	}
}

// checkGoldenForward compares the batch Forward's logits at every prompt
// position with the reference.
func checkGoldenForward(t *testing.T, m *Model, g golden) {
	t.Helper()
	V := m.Config.VocabSize
	logits := m.Forward(g.PromptIDs, 1, len(g.PromptIDs))
	for p, want := range g.Logits {
		if d := maxAbsDiff(logits[p*V:(p+1)*V], want); d > 1e-3 {
			t.Errorf("position %d: max |logit − golden| = %g, want ≤ 1e-3", p, d)
		}
	}
}

func TestGoldenForwardLlama2C(t *testing.T) {
	g := loadGolden(t)
	checkGoldenForward(t, load260KBin(t), g)
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// checkGoldenGreedy decodes the prompt at once, compares the last logits,
// then decodes greedily one token at a time and compares with the
// reference's 60 tokens.
func checkGoldenGreedy(t *testing.T, m *Model, g golden) {
	t.Helper()
	s := m.NewSession(8) // small on purpose: the cache must grow
	logits := s.Decode(g.PromptIDs)
	if d := maxAbsDiff(logits, g.Logits[len(g.Logits)-1]); d > 1e-3 {
		t.Errorf("session prefill: max |logit − golden| = %g, want ≤ 1e-3", d)
	}
	var got []int32
	for range g.GreedyIDs {
		next := argmax(logits)
		got = append(got, next)
		logits = s.Decode([]int32{next})
	}
	for i := range got {
		if got[i] != g.GreedyIDs[i] {
			t.Fatalf("greedy token %d: got %v\nwant %v", i, got, g.GreedyIDs)
		}
	}
	if s.Len() != len(g.PromptIDs)+len(g.GreedyIDs) {
		t.Errorf("Len() = %d after %d tokens", s.Len(), len(g.PromptIDs)+len(g.GreedyIDs))
	}
}

func TestGoldenGreedyLlama2C(t *testing.T) {
	g := loadGolden(t)
	checkGoldenGreedy(t, load260KBin(t), g)
}

// The session, decoding one token at a time (and in uneven chunks), must
// agree with the batch training Forward at every position, including
// positions past the 512 the model was trained with.
func TestSessionMatchesForward(t *testing.T) {
	m := load260KBin(t)
	const T = 600
	ids := make([]int32, T)
	for i := range ids {
		ids[i] = int32((i*7919 + 13) % m.Config.VocabSize)
	}
	V := m.Config.VocabSize
	want := append([]float32(nil), m.Forward(ids, 1, T)...)

	s := m.NewSession(1)
	for pos, n := 0, 1; pos < T; n = n%5 + 1 {
		n = min(n, T-pos)
		got := s.Decode(ids[pos : pos+n])
		pos += n
		if d := maxAbsDiff(got, want[(pos-1)*V:pos*V]); d > 1e-4 {
			t.Fatalf("position %d: session vs Forward max |diff| = %g, want ≤ 1e-4", pos-1, d)
		}
	}

	// trim back and re-decode a different continuation, then the original
	s.Trim(300)
	s.Decode([]int32{5, 6, 7})
	s.Trim(300)
	got := s.Decode(ids[300:310])
	if d := maxAbsDiff(got, want[309*V:310*V]); d > 1e-4 {
		t.Fatalf("after Trim: max |diff| = %g at position 309, want ≤ 1e-4", d)
	}
}

// Forward reuses its buffers across batch shapes: a smaller or larger batch
// in between must not change the result of the same batch.
func TestForwardShapesReuseBuffers(t *testing.T) {
	m := load260KBin(t)
	V := m.Config.VocabSize
	ids := make([]int32, 2*70)
	for i := range ids {
		ids[i] = int32((i*31 + 7) % V)
	}
	first := append([]float32(nil), m.Forward(ids, 2, 70)...)
	m.Forward(ids[:9], 1, 9)
	m.Forward(ids, 1, 140)
	again := m.Forward(ids, 2, 70)
	if d := maxAbsDiff(first, again); d != 0 {
		t.Fatalf("same batch after other shapes: max |diff| %g", d)
	}
	// each sequence of the batch sees only itself
	single := m.Forward(ids[70:], 1, 70)
	if d := maxAbsDiff(single, first[70*V:]); d > 1e-5 {
		t.Fatalf("second sequence alone vs in the batch: max |diff| %g", d)
	}
}

// Sessions only read the model: several decode concurrently on one Pool
// (the Pool runs one parallel call at a time, the others inline) and each
// still reproduces the golden greedy tokens.
func TestConcurrentSessions(t *testing.T) {
	g := loadGolden(t)
	m := load260KBin(t)
	m.Pool = kernels.NewPool(2)
	defer m.Pool.Close()
	errs := make(chan string, 3)
	for range 3 {
		go func() {
			s := m.NewSession(16)
			logits := s.Decode(g.PromptIDs)
			for i, want := range g.GreedyIDs[:20] {
				if got := argmax(logits); got != want {
					errs <- fmt.Sprintf("token %d: %d, want %d", i, got, want)
					return
				}
				logits = s.Decode([]int32{want})
			}
			errs <- ""
		}()
	}
	for range 3 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
