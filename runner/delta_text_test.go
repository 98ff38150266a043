package runner

import (
	"context"
	"slices"
	"testing"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/pmmined/vocabfile"
)

// forcedLM is a fake user model that generates a fixed sequence after its
// prompt, then its end token.
type forcedLM struct {
	seq, ctx []int32
	start    int
	end      int32
	logits   []float32
}

func (f *forcedLM) VocabSize() int { return len(f.logits) }
func (f *forcedLM) Len() int       { return len(f.ctx) }
func (f *forcedLM) Trim(pos int) error {
	f.ctx = f.ctx[:pos]
	return nil
}
func (f *forcedLM) Append(tokens []int32) ([]float32, error) {
	f.ctx = append(f.ctx, tokens...)
	clear(f.logits)
	next := f.end
	if i := len(f.ctx) - f.start; i < len(f.seq) {
		next = f.seq[i]
	}
	f.logits[next] = 10
	return f.logits, nil
}

// flatLM is a fake delta whose logits are all zero: it never moves the
// user's choice, so the test sees only how its context follows the text.
type flatLM struct {
	ctx    []int32
	logits []float32
}

func (f *flatLM) VocabSize() int { return len(f.logits) }
func (f *flatLM) Len() int       { return len(f.ctx) }
func (f *flatLM) Trim(pos int) error {
	f.ctx = f.ctx[:pos]
	return nil
}
func (f *flatLM) Append(tokens []int32) ([]float32, error) {
	f.ctx = append(f.ctx, tokens...)
	return f.logits, nil
}

// TestDeltaContextSpellsTheResponseAsTraining: a byte-level user model
// (GPT-2's vocabulary) generates a response for a SentencePiece delta
// (stories260K's): whichever way each token reaches the delta (an exact
// map entry, or re-tokenising the tail of the text), the delta's context
// holds the response tokenised as training tokenises it, after its prompt
// (data.TokenizeJoined); "Once" at the start of a response has no space.
func TestDeltaContextSpellsTheResponseAsTraining(t *testing.T) {
	userPath := testfixture.Path(t, "gguf-vocab/ggml-vocab-gpt-2.gguf")
	deltaPath := testfixture.Path(t, "models/stories260K/stories260K.gguf")
	user, err := llama.LoadModel(userPath, llama.ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	dlt, err := llama.LoadModel(deltaPath, llama.ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dlt.Close()
	uv, err := vocabfile.ReadGGUF(userPath)
	if err != nil {
		t.Fatal(err)
	}
	dv, err := vocabfile.ReadGGUF(deltaPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pmmined.Build(uv, dv, pmmined.PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	tm := &control.TokenMap{ToDelta: m.ToDelta, Exact: make([]bool, len(m.ToDelta))}
	exact := 0
	for u := range m.ToDelta {
		tm.Exact[u] = m.Exact(int32(u))
	}

	prompt := data.OpenInstruct{}.Prompt(data.Example{Instruction: "Tell me a story."})
	for _, response := range []string{
		"Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her big red ball!",
		" Once upon a time, a dog and a cat were friends. They ran to the park every day, and they were very happy.",
	} {
		seq, err := user.Vocab().Tokenize(response, false, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range seq {
			if tm.Exact[u] {
				exact++
			}
		}
		userPrompt, err := user.Vocab().Tokenize(prompt, true, false)
		if err != nil {
			t.Fatal(err)
		}
		deltaPrompt, err := dlt.Vocab().Tokenize(prompt, true, false)
		if err != nil {
			t.Fatal(err)
		}
		u := &forcedLM{seq: seq, start: len(userPrompt), end: user.Vocab().EOS(), logits: make([]float32, user.Vocab().Size())}
		d := control.Track(&flatLM{logits: make([]float32, dlt.Vocab().Size())})
		g := &control.Generator{User: u, UserTok: user.Vocab(), EndOfGeneration: user.Vocab().IsEOG,
			Delta: d, DeltaTok: dlt.Vocab(), Map: tm, Alpha: 1}
		res, err := g.Generate(context.Background(), userPrompt, deltaPrompt, control.Options{MaxTokens: len(seq) + 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Text != response {
			t.Fatalf("generated %q, want %q", res.Text, response)
		}
		joined, split, err := data.TokenizeJoined(dlt.Vocab(), prompt, response)
		if err != nil {
			t.Fatal(err)
		}
		want := joined[split:]
		got := d.Tokens()[len(deltaPrompt):]
		// The delta has not decoded the last token(s) chosen for the end.
		if len(got) < len(want)-3 || !slices.Equal(got, want[:min(len(got), len(want))]) {
			t.Errorf("%q: the delta's context after its prompt\n%v\nwant training's tokens\n%v", response, got, want)
		}
		if res.DeltaRetokenised == 0 {
			t.Errorf("%q: no token was re-tokenised: the test does not reach that path", response)
		}
	}
	if exact == 0 {
		t.Error("no user token maps exactly: the test does not reach that path")
	}
}
