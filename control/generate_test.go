package control

import (
	"context"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// fakeLM's logits depend on the whole context: a row of a table chosen by
// the last token plus, weighted by mix, noise drawn from a hash of every
// token so far. A generator that feeds a wrong token anywhere, trims at the
// wrong position or misaligns a row gets other logits, not just other
// bookkeeping. (With mix 0 it is a plain bigram model, which tests that
// script exact outputs use.) It records its context so tests can check what
// a generator fed it.
type fakeLM struct {
	table [][]float32 // [vocab][vocab]
	mix   float32
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
	return &fakeLM{table: t, mix: sharpness}
}

// clone is an independent fake with the same logits.
func (f *fakeLM) clone() *fakeLM {
	return &fakeLM{table: f.table, mix: f.mix}
}

func (f *fakeLM) VocabSize() int { return len(f.table) }
func (f *fakeLM) Len() int       { return len(f.ctx) }
func (f *fakeLM) Append(tokens []int32) ([]float32, error) {
	f.calls++
	f.ctx = append(f.ctx, tokens...)
	return f.logits(f.ctx), nil
}
func (f *fakeLM) Trim(pos int) error { f.ctx = f.ctx[:pos]; return nil }

// logits are the fake's output after ctx.
func (f *fakeLM) logits(ctx []int32) []float32 {
	h := fnv.New64a()
	for _, t := range ctx {
		h.Write([]byte{byte(t), byte(t >> 8)})
	}
	r := rand.New(rand.NewPCG(h.Sum64(), 2))
	out := slices.Clone(f.table[ctx[len(ctx)-1]])
	for j := range out {
		if f.mix != 0 {
			out[j] += f.mix * float32(r.NormFloat64())
		}
	}
	return out
}

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
	m := &TokenMap{ToDelta: []int32{0, 1, 3, 1, 2, 3, 5, 2}, Exact: []bool{true, false, true, true, true, false, true, false}}
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
		// After an exact last token only that token is pending; after an
		// inexact one, re-tokenising may have left more of the tail pending.
		last := res.Tokens[len(res.Tokens)-1]
		if before := strings.TrimSuffix(res.Text, user.pieces[last]); m.Exact[last] && string(spelled) != before {
			t.Fatalf("seed %d: delta context spells %q, want the text before the last token, %q", seed, spelled, before)
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
	m := &TokenMap{ToDelta: []int32{0, 1, 3, 1, 2, 3, 5, 2}, Exact: []bool{true, false, true, true, true, false, true, false}}
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

// TestSelfDeltaIsUserAlone: the user model as its own delta at alpha 1
// scores log_softmax(x) + x, whose argmax is the argmax of x, so greedy
// output must equal the user's alone, token for token. The fakes' logits
// depend on the whole context, so the delta's context must match the
// user's at every step. Both paths are checked: appending exact map
// entries, and re-tokenising the text after every token (a map that says
// no entry is exact), where a wrong trim position would show.
func TestSelfDeltaIsUserAlone(t *testing.T) {
	identity := &TokenMap{ToDelta: make([]int32, 8), Exact: make([]bool, 8)}
	for u := range identity.ToDelta {
		identity.ToDelta[u] = int32(u)
	}
	for seed := uint64(0); seed < 10; seed++ {
		user := newFakeLM(8, seed, 1.5)
		opt := Options{MaxTokens: 30}
		alone := generate(t, &Generator{User: user.clone(), UserTok: letters}, []int32{0, 1}, nil, opt)
		for _, m := range []*TokenMap{nil, identity} {
			d := user.clone()
			g := &Generator{User: user.clone(), UserTok: letters, Delta: d, DeltaTok: letters, Map: m, Alpha: 1}
			res := generate(t, g, []int32{0, 1}, []int32{0, 1}, opt)
			if !slices.Equal(res.Tokens, alone.Tokens) {
				t.Fatalf("seed %d, map %v: self-delta at alpha 1 generated %v (%q), the user alone %v (%q)", seed, m != nil, res.Tokens, res.Text, alone.Tokens, alone.Text)
			}
			// The last token is still pending for the delta.
			want := append([]int32{0, 1}, res.Tokens[:len(res.Tokens)-1]...)
			if !slices.Equal(d.ctx, want) {
				t.Fatalf("seed %d, map %v: delta context %v, want %v", seed, m != nil, d.ctx, want)
			}
			if m != nil && res.DeltaRetokenised != len(res.Tokens) {
				t.Fatalf("seed %d: %d re-tokenisations for %d tokens; the test does not exercise them", seed, res.DeltaRetokenised, len(res.Tokens))
			}
		}
	}
}

// TestStopEarliestWins: the stop string that starts first in the text ends
// it, whatever the order of the list.
func TestStopEarliestWins(t *testing.T) {
	w := newStopWriter([]string{"b", "a"}, nil)
	stopped, err := w.write([]byte("ab"))
	if err != nil || !stopped || w.kept() != "" {
		t.Fatalf("stops [b a] on \"ab\": stopped %v, kept %q; want stopped with \"\"", stopped, w.kept())
	}
	w = newStopWriter([]string{"cd", "bc"}, nil)
	for _, p := range []string{"a", "b", "c", "d"} {
		if stopped, _ = w.write([]byte(p)); stopped {
			break
		}
	}
	if !stopped || w.kept() != "a" {
		t.Fatalf("stops [cd bc] on \"abcd\": kept %q, want \"a\"", w.kept())
	}
}

// TestNonFiniteLogitsFail: a model with NaN weights is an error at the first
// step, naming which model, not an empty text with exit 0.
func TestNonFiniteLogitsFail(t *testing.T) {
	bad := newFakeLM(8, 1, 0)
	for i := range bad.table {
		bad.table[i][2] = float32(math.NaN())
	}
	_, err := (&Generator{User: bad, UserTok: letters}).Generate(context.Background(), []int32{0}, nil, Options{MaxTokens: 5}, nil)
	if err == nil || !strings.Contains(err.Error(), "user model") || !strings.Contains(err.Error(), "not finite") {
		t.Fatalf("NaN user logits: err %v, want one naming the user model's non-finite logits", err)
	}
	g := &Generator{User: newFakeLM(8, 1, 1), UserTok: letters, Delta: bad.clone(), DeltaTok: letters, Alpha: 1}
	_, err = g.Generate(context.Background(), []int32{0}, []int32{0}, Options{MaxTokens: 5}, nil)
	if err == nil || !strings.Contains(err.Error(), "delta model") || !strings.Contains(err.Error(), "not finite") {
		t.Fatalf("NaN delta logits: err %v, want one naming the delta's non-finite logits", err)
	}
}

func TestCheckAlpha(t *testing.T) {
	for _, a := range []float64{0, 1, -1, 0.5, MaxAlpha, -MaxAlpha} {
		if err := CheckAlpha(a); err != nil {
			t.Errorf("alpha %g rejected: %v", a, err)
		}
	}
	for _, a := range []float64{1e308, -11, MaxAlpha + 0.001, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := CheckAlpha(a); err == nil {
			t.Errorf("alpha %g accepted", a)
		}
	}
}
