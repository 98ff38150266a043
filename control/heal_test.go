package control

import (
	"context"
	"slices"
	"testing"
)

// answerTok has what a SentencePiece vocabulary has around "Answer: ": a
// lone space and words with and without their leading space.
var answerTok = fakeTok{pieces: []string{"<s>", "Answer:", " ", " The", "The", " cat", "cat", "."}}

// answerLM is a bigram fake that knows " cat" after " The", but after a
// lone space prefers the word without its space, after "The" writes "cat"
// glued to it, and after "Answer:" prefers "The" a little to " The" (so
// only the healing's leading-space mask gives " The").
func answerLM() *fakeLM {
	f := newFakeLM(len(answerTok.pieces), 3, 0)
	f.table[1][4] = 11 // "Answer:" -> "The"
	f.table[1][3] = 10 // "Answer:" -> " The"
	f.table[2][4] = 10 // " " -> "The"
	f.table[2][6] = 9  // " " -> "cat"
	f.table[3][5] = 10 // " The" -> " cat"
	f.table[4][6] = 10 // "The" -> "cat"
	f.table[5][7] = 10 // " cat" -> "."
	f.table[6][7] = 10
	return f
}

// TestHealTrailingSpace: a prompt ending in a lone space is decoded without
// it, by both models, and continued with a token that starts with a space;
// the text does not repeat the prompt's space. Without LeadingSpace, or when
// only one of the prompts ends in a space, nothing is healed.
func TestHealTrailingSpace(t *testing.T) {
	prompt := []int32{0, 1, 2} // <s> "Answer:" " "
	lead := LeadingSpace(answerTok, len(answerTok.pieces))
	if want := []bool{false, false, true, true, false, true, false, false}; !slices.Equal(lead, want) {
		t.Fatalf("LeadingSpace %v, want %v", lead, want)
	}

	user, d := answerLM(), answerLM()
	g := &Generator{User: user, UserTok: answerTok, Delta: d, DeltaTok: answerTok, Alpha: 1, LeadingSpace: lead}
	res := generate(t, g, prompt, prompt, Options{MaxTokens: 3, Heal: true})
	if res.Text != "The cat." || !res.Healed {
		t.Errorf("healed: text %q (healed %v), want \"The cat.\" after the prompt's space", res.Text, res.Healed)
	}
	if want := []int32{0, 1, 3, 5}; !slices.Equal(user.ctx, want) || !slices.Equal(d.ctx, want) {
		t.Errorf("contexts: user %v, delta %v; want %v (the lone space dropped, then \" The\", \" cat\")", user.ctx, d.ctx, want)
	}

	// A flat delta (all logits 0) leaves the user's choices as they are.
	for _, tc := range []struct {
		name        string
		lead        []bool
		deltaPrompt []int32
	}{
		{"no LeadingSpace", nil, prompt},
		{"the delta's prompt ends in a word", lead, []int32{0, 1}},
	} {
		d := newFakeLM(len(answerTok.pieces), 4, 0)
		g := &Generator{User: answerLM(), UserTok: answerTok, Delta: d, DeltaTok: answerTok, Alpha: 1, LeadingSpace: tc.lead}
		res := generate(t, g, prompt, tc.deltaPrompt, Options{MaxTokens: 2, Heal: true})
		if res.Text != "Thecat" || res.Healed {
			t.Errorf("%s: text %q (healed %v), want the unhealed \"Thecat\"", tc.name, res.Text, res.Healed)
		}
	}

	// Scoring a prompt forces its tokens, the space too: no healing.
	g = &Generator{User: answerLM(), UserTok: answerTok, LeadingSpace: lead}
	if res := generate(t, g, prompt, nil, Options{MaxTokens: 1, ScorePrompt: true, Heal: true}); res.Healed || res.PromptLogprobs.Len() != 2 {
		t.Errorf("scored prompt: healed %v, %d prompt log-probs; want no healing and 2", res.Healed, res.PromptLogprobs.Len())
	}
}

// TestRemoteHealsLikeLocal: over a served model the prompt's space is
// healed by text: the engine is first asked after the prompt without it,
// only a candidate that starts with a space may come first, and the text
// and the delta's context are the local generator's.
func TestRemoteHealsLikeLocal(t *testing.T) {
	same := func(text string) (int32, bool) {
		i := slices.Index(answerTok.pieces, text)
		return int32(i), i >= 0
	}
	engine, d := &fakeRemote{lm: answerLM(), tok: answerTok}, answerLM()
	g := &RemoteGenerator{User: engine, K: 8, Delta: d, DeltaTok: answerTok, DeltaEOS: 0, Map: same, Alpha: 1}
	res, err := g.Generate(context.Background(), "Answer: ", []int32{0, 1, 2}, Options{MaxTokens: 3, Heal: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != "The cat." || !res.Healed || engine.texts[0] != "Answer:" {
		t.Errorf("text %q (healed %v), the engine first asked after %q; want \"The cat.\" after \"Answer:\"", res.Text, res.Healed, engine.texts[0])
	}
	if want := []int32{0, 1, 3, 5}; !slices.Equal(d.ctx, want) {
		t.Errorf("delta context %v, want %v, as the local generator's", d.ctx, want)
	}
	engine = &fakeRemote{lm: answerLM(), tok: answerTok}
	g.User = engine
	if res, err := g.Generate(context.Background(), "Answer: ", []int32{0, 1, 2}, Options{MaxTokens: 2}, nil); err != nil || res.Healed || engine.texts[0] != "Answer: " {
		t.Errorf("without Heal: healed %v, first asked after %q (%v); want the prompt as given", res.Healed, engine.texts[0], err)
	}
}
