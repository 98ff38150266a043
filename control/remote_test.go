package control

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"
	"testing"
)

// fakeRemote serves a local bigram model the way an engine does: it gets
// text, tokenises it afresh, and answers with the k best next tokens by text.
// Token 0 ends the text; it is offered with no text, as engines that do not
// print special tokens offer it.
type fakeRemote struct {
	lm    *fakeLM
	tok   fakeTok
	calls int
	texts []string // every text asked about
}

func (f *fakeRemote) TopK(_ context.Context, text string, k int) ([]Candidate, error) {
	f.calls++
	f.texts = append(f.texts, text)
	ids, _ := f.tok.Tokenize(text, false, false)
	f.lm.ctx = f.lm.ctx[:0]
	logits, _ := f.lm.Append(append([]int32{0}, ids...))
	lp := make([]float32, len(logits))
	logSoftmax(lp, logits, make([]float32, len(logits)))
	order := make([]int32, len(lp))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(lp[b], lp[a]) })
	var cands []Candidate
	for _, id := range order[:min(k, len(order))] {
		c := Candidate{Text: f.tok.pieces[id], LogProb: float64(lp[id])}
		if id == 0 {
			c = Candidate{LogProb: float64(lp[id]), End: true}
		}
		cands = append(cands, c)
	}
	return cands, nil
}

// A user vocabulary whose texts tokenise one way only (no piece is a prefix
// of another), so an engine that re-tokenises the text sees the very tokens
// that were generated; and a delta vocabulary that spells "ab" in two tokens.
var (
	remoteUserTok  = fakeTok{pieces: []string{"<s>", "ab", "c", "d", " ", "e", "f", "g"}}
	remoteDeltaTok = fakeTok{pieces: []string{"<s>", "a", "b", "c", "d", " ", "abc", "e"}}
)

// prefixTextMap is PM-MinED on text for remoteDeltaTok: the same text, else
// the longest delta text the piece starts with.
func prefixTextMap(text string) (int32, bool) {
	best := int32(-1)
	for id, p := range remoteDeltaTok.pieces[1:] {
		if p == text {
			return int32(id + 1), true
		}
		if strings.HasPrefix(text, p) && (best < 0 || len(p) > len(remoteDeltaTok.pieces[best])) {
			best = int32(id + 1)
		}
	}
	return best, false
}

// localTokenMap is the same rule over the user vocabulary, for the local
// generator; the end token maps to the delta's end token.
func localTokenMap() *TokenMap {
	m := &TokenMap{ToDelta: []int32{0}, Exact: []bool{true}}
	for _, p := range remoteUserTok.pieces[1:] {
		d, exact := prefixTextMap(p)
		m.ToDelta, m.Exact = append(m.ToDelta, d), append(m.Exact, exact)
	}
	return m
}

// TestRemoteFullVocabularyMatchesLocal: asked for every token of the
// vocabulary, the remote path chooses exactly what the local path chooses
// over the whole vocabulary, delta context included, with and without the
// delta and across vocabularies (re-tokenising the delta's context).
func TestRemoteFullVocabularyMatchesLocal(t *testing.T) {
	retokenised := 0
	for seed := uint64(0); seed < 30; seed++ {
		for _, alpha := range []float32{0, 1, 2.5} {
			localDelta, remoteDelta := newFakeLM(8, seed+100, 1), newFakeLM(8, seed+100, 1)
			local := &Generator{User: newFakeLM(8, seed, 1), UserTok: remoteUserTok, EndOfGeneration: func(id int32) bool { return id == 0 },
				Delta: localDelta, DeltaTok: remoteDeltaTok, Map: localTokenMap(), Alpha: alpha}
			want := generate(t, local, []int32{0, 1}, []int32{0, 1}, Options{MaxTokens: 25})

			rg := &RemoteGenerator{User: &fakeRemote{lm: newFakeLM(8, seed, 1), tok: remoteUserTok}, K: 8,
				Delta: remoteDelta, DeltaTok: remoteDeltaTok, DeltaEOS: 0, Map: prefixTextMap, Alpha: alpha}
			got, err := rg.Generate(context.Background(), "ab", []int32{0, 1}, Options{MaxTokens: 25}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Text != want.Text || got.FinishReason != want.FinishReason {
				t.Fatalf("seed %d alpha %g: remote %q (%s), local %q (%s)", seed, alpha, got.Text, got.FinishReason, want.Text, want.FinishReason)
			}
			if !slices.Equal(remoteDelta.ctx, localDelta.ctx) {
				t.Fatalf("seed %d alpha %g: delta context %v, local %v", seed, alpha, remoteDelta.ctx, localDelta.ctx)
			}
			if got.DeltaRetokenised != want.DeltaRetokenised {
				t.Fatalf("seed %d alpha %g: re-tokenised %d times, local %d", seed, alpha, got.DeltaRetokenised, want.DeltaRetokenised)
			}
			if strings.Join(got.Pieces, "") != got.Text {
				t.Fatalf("pieces %q do not spell %q", got.Pieces, got.Text)
			}
			retokenised += got.DeltaRetokenised
		}
	}
	if retokenised == 0 {
		t.Fatal("no inexact token was generated; the test does not exercise re-tokenisation")
	}
}

// TestRemoteChoosesOnlyTopK: a delta that wants "c" everywhere gets it when
// the engine offers every token, never when "c" is outside the engine's top k.
func TestRemoteChoosesOnlyTopK(t *testing.T) {
	user := newFakeLM(8, 5, 0)
	for i := range user.table {
		// "d" then "e" lead, "c" is last but one: outside the top 2.
		user.table[i][3], user.table[i][5], user.table[i][2], user.table[i][0] = 3, 2, -5, -9
	}
	d := newFakeLM(8, 6, 0)
	for i := range d.table {
		d.table[i][3] = 50 // "c"
	}
	run := func(k int) RemoteResult {
		d.ctx = d.ctx[:0]
		g := &RemoteGenerator{User: &fakeRemote{lm: user, tok: remoteUserTok}, K: k, Delta: d, DeltaTok: remoteDeltaTok, DeltaEOS: 0, Map: prefixTextMap, Alpha: 1}
		res, err := g.Generate(context.Background(), "ab", []int32{0, 1}, Options{MaxTokens: 6}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := run(8); res.Text != "cccccc" {
		t.Fatalf("top 8: %q, want the delta's cccccc", res.Text)
	}
	res := run(2)
	if res.Text != "dddddd" {
		t.Fatalf("top 2: %q, want the user's dddddd (c is not offered)", res.Text)
	}
	for i, r := range res.Ranks {
		if r != 0 {
			t.Fatalf("token %d has rank %d among 2 candidates, want the engine's first", i, r)
		}
	}
	// A milder delta picks the engine's second choice: rank 1.
	for i := range d.table {
		d.table[i][3], d.table[i][7] = 0, 1.5 // "e" of the delta vocabulary
	}
	if res := run(2); res.Text != "eeeeee" || res.Ranks[0] != 1 {
		t.Fatalf("top 2 with a delta for e: %q ranks %v, want eeeeee at rank 1", res.Text, res.Ranks)
	}
}

// scripted is an engine with fixed answers per text.
type scripted map[string][]Candidate

func (s scripted) TopK(_ context.Context, text string, _ int) ([]Candidate, error) {
	return s[text], nil
}

func TestRemoteStops(t *testing.T) {
	eng := scripted{
		"Q:":         {{Text: " one", LogProb: -0.1}, {Text: " two", LogProb: -2}},
		"Q: one":     {{Text: "\xe2\x82", LogProb: -0.01}, {Text: "\ufffd", LogProb: -0.02}, {Text: " two", LogProb: -3}}, // half a character, as bytes and as U+FFFD
		"Q: one two": {{Text: "", LogProb: -0.5, End: true}, {Text: " three", LogProb: -1}},
	}
	var pieces []string
	g := &RemoteGenerator{User: eng, K: 2}
	res, err := g.Generate(context.Background(), "Q:", nil, Options{MaxTokens: 10}, func(p string) error { pieces = append(pieces, p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != " one two" || res.FinishReason != "stop" || strings.Join(pieces, "") != res.Text {
		t.Fatalf("text %q (pieces %q) finish %s, want \" one two\" stop", res.Text, pieces, res.FinishReason)
	}
	if !slices.Equal(res.Ranks, []int{0, 2}) {
		t.Fatalf("ranks %v, want [0 2] (half a character is never chosen)", res.Ranks)
	}
	res, err = g.Generate(context.Background(), "Q:", nil, Options{MaxTokens: 10, Stop: []string{" tw"}}, nil)
	if err != nil || res.Text != " one" || res.FinishReason != "stop" {
		t.Fatalf("stop string: %q %s %v, want \" one\" stop", res.Text, res.FinishReason, err)
	}
	res, err = g.Generate(context.Background(), "Q:", nil, Options{MaxTokens: 1}, nil)
	if err != nil || res.Text != " one" || res.FinishReason != "length" {
		t.Fatalf("max tokens: %q %s %v, want \" one\" length", res.Text, res.FinishReason, err)
	}
	// An end candidate steered up by the delta's end token ends the text.
	d := newFakeLM(8, 1, 0)
	for i := range d.table {
		d.table[i][0] = 10
	}
	g = &RemoteGenerator{User: eng, K: 2, Delta: d, DeltaTok: remoteDeltaTok, DeltaEOS: 0, Map: prefixTextMap, Alpha: 1}
	eng["Q:"] = append(eng["Q:"], Candidate{LogProb: -4, End: true})
	res, err = g.Generate(context.Background(), "Q:", []int32{0}, Options{MaxTokens: 10}, nil)
	if err != nil || res.Text != "" || res.FinishReason != "stop" {
		t.Fatalf("delta for the end: %q %s %v, want an empty text that stopped", res.Text, res.FinishReason, err)
	}
}

func TestRemoteAlphaZeroSkipsDelta(t *testing.T) {
	d := newFakeLM(8, 2, 5)
	eng := &fakeRemote{lm: newFakeLM(8, 1, 2), tok: remoteUserTok}
	g := &RemoteGenerator{User: eng, K: 3, Delta: d, DeltaTok: remoteDeltaTok, Map: prefixTextMap, Alpha: 0}
	res, err := g.Generate(context.Background(), "ab", []int32{0}, Options{MaxTokens: 8, Sample: SampleOptions{Temperature: 1, Seed: 3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.calls != 0 {
		t.Errorf("alpha 0 ran the delta %d times", d.calls)
	}
	if eng.calls != len(res.Pieces)+boolInt(res.FinishReason == "stop") {
		t.Errorf("%d engine calls for %d tokens (%s)", eng.calls, len(res.Pieces), res.FinishReason)
	}
	// Each request carries the prompt and every piece chosen so far.
	for i, text := range eng.texts {
		if want := "ab" + strings.Join(res.Pieces[:i], ""); text != want {
			t.Fatalf("request %d asked about %q, want %q", i, text, want)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// echo is what an engine answers for text with echo on: every token with
// its offset, log-probability and the top k at its position.
func (f *fakeRemote) echo(text string, k int) []EchoedToken {
	ids, _ := f.tok.Tokenize(text, false, false)
	var out []EchoedToken
	offset := 0
	for j, id := range ids {
		top, _ := f.TopK(context.Background(), text[:offset], k)
		f.lm.ctx = f.lm.ctx[:0]
		logits, _ := f.lm.Append(append([]int32{0}, ids[:j]...))
		lp := make([]float32, len(logits))
		logSoftmax(lp, logits, make([]float32, len(logits)))
		out = append(out, EchoedToken{Offset: offset, Text: f.tok.pieces[id], LogProb: float64(lp[id]), Top: top})
		offset += len(f.tok.pieces[id])
	}
	return out
}

// TestRemoteScoreMatchesLocal: with every token among the candidates the
// remote score is the local one; with fewer it still is at alpha 0, and it
// stays a log-probability otherwise.
func TestRemoteScoreMatchesLocal(t *testing.T) {
	const prompt, response = "ab", "cdab efab g"
	target, _ := remoteUserTok.Tokenize(response, false, false)
	for seed := uint64(0); seed < 10; seed++ {
		for _, alpha := range []float32{0, 1.5} {
			local := &Generator{User: newFakeLM(8, seed, 1), UserTok: remoteUserTok, Delta: newFakeLM(8, seed+50, 1),
				DeltaTok: remoteDeltaTok, Map: localTokenMap(), Alpha: alpha}
			wantAlone, wantCtl, err := local.Score(context.Background(), []int32{0, 1}, []int32{0, 1}, target)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []int{8, 2} {
				eng := &fakeRemote{lm: newFakeLM(8, seed, 1), tok: remoteUserTok}
				rg := &RemoteGenerator{User: eng, K: k, Delta: newFakeLM(8, seed+50, 1), DeltaTok: remoteDeltaTok, DeltaEOS: 0, Map: prefixTextMap, Alpha: alpha}
				alone, ctl, err := rg.RemoteScore(context.Background(), prompt, response, []int32{0, 1}, eng.echo(prompt+response, k))
				if err != nil {
					t.Fatal(err)
				}
				if len(alone) != len(target) || len(ctl) != len(target) {
					t.Fatalf("%d and %d scores for %d tokens", len(alone), len(ctl), len(target))
				}
				for i := range target {
					if math.Abs(alone[i]-wantAlone[i]) > 1e-5 {
						t.Fatalf("seed %d k %d token %d: alone %g, local %g", seed, k, i, alone[i], wantAlone[i])
					}
					exact := k == 8 || alpha == 0
					if exact && math.Abs(ctl[i]-wantCtl[i]) > 1e-4 {
						t.Fatalf("seed %d alpha %g k %d token %d: controlled %g, local %g", seed, alpha, k, i, ctl[i], wantCtl[i])
					}
					if ctl[i] > 1e-6 {
						t.Fatalf("seed %d alpha %g k %d token %d: %g is no log-probability", seed, alpha, k, i, ctl[i])
					}
				}
			}
		}
	}
}

// TestRemoteScoreStraddle: an engine token that spans the end of the prompt
// and the start of the response counts as the prompt's (as TOFU masks it);
// the delta still reads the response's part of it before the next token.
func TestRemoteScoreStraddle(t *testing.T) {
	top := []Candidate{{Text: "d", LogProb: -0.5}, {Text: "e", LogProb: -1}}
	echo := []EchoedToken{
		{Offset: 0, Text: "a", LogProb: math.NaN()},
		{Offset: 1, Text: " c", LogProb: -1, Top: top}, // prompt "a " + response "cde"
		{Offset: 3, Text: "d", LogProb: -0.5, Top: top},
		{Offset: 4, Text: "e", LogProb: -1, Top: top},
		{Offset: 5, Text: "f", LogProb: -2, Top: top}, // the engine's new token
	}
	d := newFakeLM(8, 1, 1)
	g := &RemoteGenerator{Delta: d, DeltaTok: remoteDeltaTok, DeltaEOS: 0, Map: prefixTextMap, Alpha: 1}
	alone, ctl, err := g.RemoteScore(context.Background(), "a ", "cde", []int32{0, 1}, echo)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(alone, []float64{-0.5, -1}) || len(ctl) != 2 {
		t.Fatalf("scores %v %v, want the two tokens after the straddling one", alone, ctl)
	}
	// The delta read its prompt, then "c" before scoring "d", then "d"
	// before scoring "e".
	if want := []int32{0, 1, 3, 4}; !slices.Equal(d.ctx, want) {
		t.Fatalf("delta context %v, want %v", d.ctx, want)
	}
}

// TestRemoteScoreEmptyPrompt: with no prompt, the BOS an engine echoes
// (nothing predicts it) is skipped and the text's tokens are scored.
func TestRemoteScoreEmptyPrompt(t *testing.T) {
	top := []Candidate{{Text: "d", LogProb: -0.5}}
	echo := []EchoedToken{
		{Offset: 0, Text: "<s>", LogProb: math.NaN()},
		{Offset: 0, Text: "c", LogProb: -1, Top: top},
		{Offset: 1, Text: "d", LogProb: -0.5, Top: top},
	}
	d := newFakeLM(8, 1, 1)
	g := &RemoteGenerator{Delta: d, DeltaTok: remoteDeltaTok, DeltaEOS: 0, Map: prefixTextMap, Alpha: 1}
	alone, ctl, err := g.RemoteScore(context.Background(), "", "cd", []int32{0}, echo)
	if err != nil || !slices.Equal(alone, []float64{-1, -0.5}) || len(ctl) != 2 {
		t.Fatalf("scores %v %v %v, want the two text tokens", alone, ctl, err)
	}
	if want := []int32{0, 3}; !slices.Equal(d.ctx, want) {
		t.Fatalf("delta context %v, want %v (its prompt, then c)", d.ctx, want)
	}
}
