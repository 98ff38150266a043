package control

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// fakeLM is a bigram model: the logits after a token are a fixed row of a
// table. It records its context so tests can check what a generator fed it.
type fakeLM struct {
	table [][]float32 // [vocab][vocab]
	ctx   []int32
	calls int
}

func newFakeLM(vocab int, seed uint64, sharpness float32) *fakeLM {
	r := rand.New(rand.NewPCG(seed, 1))
	t := make([][]float32, vocab)
	for i := range t {
		t[i] = make([]float32, vocab)
		for j := range t[i] {
			t[i][j] = sharpness * float32(r.NormFloat64())
		}
	}
	return &fakeLM{table: t}
}

func (f *fakeLM) VocabSize() int { return len(f.table) }
func (f *fakeLM) Len() int       { return len(f.ctx) }
func (f *fakeLM) Append(tokens []int32) ([]float32, error) {
	f.calls++
	f.ctx = append(f.ctx, tokens...)
	return f.table[f.ctx[len(f.ctx)-1]], nil
}
func (f *fakeLM) Trim(pos int) error { f.ctx = f.ctx[:pos]; return nil }

// fakeTok tokenises by greedy longest match over its pieces.
type fakeTok struct{ pieces []string }

func (t fakeTok) Tokenize(text string, _, _ bool) ([]int32, error) {
	var ids []int32
	for len(text) > 0 {
		best := -1
		for id, p := range t.pieces {
			if p != "" && strings.HasPrefix(text, p) && (best < 0 || len(p) > len(t.pieces[best])) {
				best = id
			}
		}
		if best < 0 {
			text = text[1:] // unknown byte: dropped
			continue
		}
		ids = append(ids, int32(best))
		text = text[len(t.pieces[best]):]
	}
	return ids, nil
}

func (t fakeTok) AppendPiece(dst []byte, id int32, _ bool) []byte {
	return append(dst, t.pieces[id]...)
}

var letters = fakeTok{pieces: []string{"<s>", "a", "b", "c", "d", " ", "e", "f"}}

func generate(t *testing.T, g *Generator, user, delta []int32, opt Options) Result {
	t.Helper()
	res, err := g.Generate(context.Background(), user, delta, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestAlphaZeroIsUserAlone: with alpha 0 the delta must not change a single
// sampled token, and is not even run.
func TestAlphaZeroIsUserAlone(t *testing.T) {
	opt := Options{MaxTokens: 40, Sample: SampleOptions{Temperature: 0.9, TopK: 5, TopP: 0.95, Seed: 7}}
	alone := generate(t, &Generator{User: newFakeLM(8, 1, 2), UserTok: letters}, []int32{0}, nil, opt)
	d := newFakeLM(8, 2, 5)
	withZero := generate(t, &Generator{User: newFakeLM(8, 1, 2), UserTok: letters, Delta: d, DeltaTok: letters, Alpha: 0}, []int32{0}, []int32{0}, opt)
	if !slices.Equal(alone.Tokens, withZero.Tokens) || alone.Text != withZero.Text {
		t.Fatalf("alpha 0 changed the output:\n%q\n%q", alone.Text, withZero.Text)
	}
	if d.calls != 0 {
		t.Errorf("alpha 0 still ran the delta %d times", d.calls)
	}
}

// TestDeltaShiftsScores: a delta that strongly prefers one token makes a
// greedy user pick it, and its context follows the user's tokens.
func TestDeltaShiftsScores(t *testing.T) {
	d := newFakeLM(8, 2, 0)
	for i := range d.table {
		d.table[i][3] = 50 // "c"
	}
	g := &Generator{User: newFakeLM(8, 1, 1), UserTok: letters, Delta: d, DeltaTok: letters, Alpha: 1}
	res := generate(t, g, []int32{0}, []int32{0, 5}, Options{MaxTokens: 6})
	if res.Text != "cccccc" {
		t.Fatalf("text %q, want cccccc", res.Text)
	}
	if want := []int32{0, 5, 3, 3, 3, 3, 3}; !slices.Equal(d.ctx, want) {
		t.Errorf("delta context %v, want %v (prompt then each token but the last)", d.ctx, want)
	}
}

// TestCrossVocabContext: with different vocabularies the delta's context
// must always spell the generated text, whether tokens were appended
// through exact map entries or rebuilt by re-tokenising.
func TestCrossVocabContext(t *testing.T) {
	user := fakeTok{pieces: []string{"<s>", "ab", "c", "a", "b", "cd", " ", "bca"}}
	dtok := fakeTok{pieces: []string{"<s>", "a", "b", "c", "d", " ", "abc", "e"}}
	// PM-MinED-like map: same string -> same, else a prefix.
	m := &TokenMap{ToDelta: []int32{0, 1, 3, 1, 2, 3, 5, 2}, Same: []bool{true, false, true, true, true, false, true, false}}
	for seed := uint64(0); seed < 20; seed++ {
		d := newFakeLM(8, seed+100, 1)
		g := &Generator{User: newFakeLM(8, seed, 1), UserTok: user, Delta: d, DeltaTok: dtok, Map: m, Alpha: 1}
		res := generate(t, g, []int32{0}, []int32{0}, Options{MaxTokens: 30, Sample: SampleOptions{Temperature: 1, Seed: seed}})
		// The last user token's delta update is pending (decoded on the next
		// step), so compare the delta context with the text before it.
		var spelled []byte
		for _, id := range d.ctx[1:] {
			spelled = dtok.AppendPiece(spelled, id, false)
		}
		if !strings.HasPrefix(res.Text, string(spelled)) {
			t.Fatalf("seed %d: delta context spells %q, generated text %q", seed, spelled, res.Text)
		}
		before := strings.TrimSuffix(res.Text, string(user.pieces[res.Tokens[len(res.Tokens)-1]]))
		if len(spelled) < len(before)-3 {
			t.Fatalf("seed %d: delta context %q lags behind the text %q", seed, spelled, before)
		}
		if res.DeltaRetokenised == 0 {
			t.Fatalf("seed %d: no inexact token was generated; the test does not exercise re-tokenisation", seed)
		}
	}
}

func TestStopStrings(t *testing.T) {
	// A user model that spells "ab ab ab ..." deterministically.
	u := newFakeLM(8, 1, 0)
	u.table[0][1], u.table[1][2], u.table[2][5], u.table[5][1] = 9, 9, 9, 9
	var pieces []string
	g := &Generator{User: u, UserTok: letters}
	res, err := g.Generate(context.Background(), []int32{0}, nil, Options{MaxTokens: 50, Stop: []string{"b a"}},
		func(p string) error { pieces = append(pieces, p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != "a" || res.FinishReason != "stop" || strings.Join(pieces, "") != "a" {
		t.Fatalf("text %q (pieces %q), finish %s; want the text before the stop string", res.Text, pieces, res.FinishReason)
	}
	res = generate(t, &Generator{User: u, UserTok: letters, EndOfGeneration: func(id int32) bool { return false }}, []int32{0}, nil, Options{MaxTokens: 5})
	if res.Text != "ab ab" || res.FinishReason != "length" {
		t.Fatalf("text %q finish %s, want \"ab ab\" length", res.Text, res.FinishReason)
	}
}

func TestStopWriterKeepsUTF8Whole(t *testing.T) {
	var got []string
	w := newStopWriter(nil, func(p string) error { got = append(got, p); return nil })
	euro := []byte("€") // three bytes
	for _, b := range euro {
		if _, err := w.write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "€" {
		t.Fatalf("pieces %q, want one whole character", got)
	}
}

func TestSampler(t *testing.T) {
	scores := []float32{0.1, 2, -1, 1.5, float32(math.Inf(-1))}
	if id := NewSampler(SampleOptions{}, 5).Sample(scores); id != 1 {
		t.Errorf("greedy picked %d", id)
	}
	if id := NewSampler(SampleOptions{Temperature: 1, TopK: 1, Seed: 3}, 5).Sample(scores); id != 1 {
		t.Errorf("top-k 1 picked %d", id)
	}
	// Frequencies at temperature 1 follow the softmax.
	s := NewSampler(SampleOptions{Temperature: 1, Seed: 42}, 5)
	counts := make([]int, 5)
	const n = 20000
	for i := 0; i < n; i++ {
		counts[s.Sample(scores)]++
	}
	var z float64
	for _, v := range scores {
		z += math.Exp(float64(v))
	}
	for id, v := range scores {
		want := math.Exp(float64(v)) / z
		if got := float64(counts[id]) / n; math.Abs(got-want) > 0.015 {
			t.Errorf("token %d drawn %.3f of the time, want %.3f", id, got, want)
		}
	}
	// Top-p 0.5 keeps only the best token here (p = 0.53).
	s = NewSampler(SampleOptions{Temperature: 1, TopP: 0.5, Seed: 1}, 5)
	for i := 0; i < 100; i++ {
		if id := s.Sample(scores); id != 1 {
			t.Fatalf("top-p 0.5 drew %d", id)
		}
	}
	// Top-k 2 never draws outside the two best.
	s = NewSampler(SampleOptions{Temperature: 5, TopK: 2, Seed: 1}, 5)
	for i := 0; i < 200; i++ {
		if id := s.Sample(scores); id != 1 && id != 3 {
			t.Fatalf("top-k 2 drew %d", id)
		}
	}
}

func TestSamplerAllocatesNothing(t *testing.T) {
	scores := make([]float32, 32000)
	for i := range scores {
		scores[i] = float32(i%97) / 10
	}
	s := NewSampler(SampleOptions{Temperature: 0.8, TopK: 40, TopP: 0.9, Seed: 1}, len(scores))
	if n := testing.AllocsPerRun(20, func() { s.Sample(scores) }); n != 0 {
		t.Fatalf("Sample allocates %v times per call", n)
	}
}

// TestScoreMatchesGeneration: scoring the tokens a greedy generation chose
// gives, at every step, the log-probability of the best token.
func TestScoreMatchesGeneration(t *testing.T) {
	user := fakeTok{pieces: []string{"<s>", "ab", "c", "a", "b", "cd", " ", "bca"}}
	dtok := fakeTok{pieces: []string{"<s>", "a", "b", "c", "d", " ", "abc", "e"}}
	m := &TokenMap{ToDelta: []int32{0, 1, 3, 1, 2, 3, 5, 2}, Same: []bool{true, false, true, true, true, false, true, false}}
	mk := func() *Generator {
		return &Generator{User: newFakeLM(8, 3, 1), UserTok: user, Delta: newFakeLM(8, 4, 1), DeltaTok: dtok, Map: m, Alpha: 1.5}
	}
	res := generate(t, mk(), []int32{0}, []int32{0}, Options{MaxTokens: 12})
	alone, ctl, err := mk().Score(context.Background(), []int32{0}, []int32{0}, res.Tokens)
	if err != nil {
		t.Fatal(err)
	}
	if len(alone) != len(res.Tokens) || len(ctl) != len(res.Tokens) {
		t.Fatalf("%d and %d scores for %d tokens", len(alone), len(ctl), len(res.Tokens))
	}
	for i, lp := range ctl {
		if lp > 1e-6 {
			t.Fatalf("token %d: log-prob %g is not a log-probability", i, lp)
		}
		// Greedy picked the argmax, so its probability is at least 1/vocab.
		if lp < math.Log(1.0/8)-1e-5 {
			t.Fatalf("token %d: greedy choice has log-prob %g < log(1/8)", i, lp)
		}
	}
	// Without a delta both columns are the user's own log-probs.
	g := mk()
	g.Delta = nil
	a2, c2, err := g.Score(context.Background(), []int32{0}, nil, res.Tokens)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a2, c2) || !slices.Equal(a2, alone) {
		t.Fatal("scores without a delta differ from the user's own")
	}
}
