package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/pmmined/vocabfile"
)

type golden struct {
	Prompt    string  `json:"prompt"`
	GreedyIDs []int32 `json:"greedy_ids"`
}

// TestAlphaZeroIsGolden: with the delta at alpha 0, generation through cmc
// gives exactly the reference greedy continuation of stories260K; at
// alpha 1 the same delta changes it.
func TestAlphaZeroIsGolden(t *testing.T) {
	b, err := os.ReadFile(fixture(t, "models/stories260K/golden_greedy_once_upon_a_time.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	user, ctx := stories260K(t, 128)
	d, err := delta.LoadGGUF(fixture(t, "models/stories260K/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	prompt, err := user.Vocab().Tokenize(g.Prompt, true, false)
	if err != nil {
		t.Fatal(err)
	}
	run := func(alpha float32) control.Result {
		ctx.Clear()
		gen := &control.Generator{User: ctx, UserTok: user.Vocab(), EndOfGeneration: user.Vocab().IsEOG,
			Delta: control.NewDeltaLM(d, 128), DeltaTok: user.Vocab(), Alpha: alpha}
		res, err := gen.Generate(context.Background(), prompt, prompt, control.Options{MaxTokens: len(g.GreedyIDs)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := run(0); !slices.Equal(res.Tokens, g.GreedyIDs) {
		t.Fatalf("alpha 0:\n got %v\nwant %v", res.Tokens, g.GreedyIDs)
	}
	// A delta that is the model itself sharpens its own distribution; with
	// alpha -1 it cancels the model out entirely, which must change the text.
	if res := run(-1); slices.Equal(res.Tokens, g.GreedyIDs) {
		t.Fatal("alpha -1 left the greedy output unchanged")
	}
}

// crossVocab runs a generation where user and delta have different
// vocabularies and checks the bookkeeping of the delta's context.
func crossVocab(t *testing.T, userPath, deltaPath string, d *delta.Model) {
	t.Helper()
	user, err := llama.LoadModel(userPath, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	ctx, err := user.NewContext(llama.ContextParams{Size: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	dtok, err := llama.LoadModel(deltaPath, llama.ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dtok.Close()
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
	for u := range tm.Exact {
		tm.Exact[u] = m.Exact(int32(u))
	}
	const query = "Once upon a time, a little dog"
	up, _ := user.Vocab().Tokenize(query, true, false)
	dp, _ := dtok.Vocab().Tokenize(query, true, false)
	dlm := control.NewDeltaLM(d, 256)
	gen := &control.Generator{User: ctx, UserTok: user.Vocab(), Delta: dlm, DeltaTok: dtok.Vocab(), Map: tm, Alpha: 1}
	res, err := gen.Generate(context.Background(), up, dp, control.Options{MaxTokens: 40, Sample: control.SampleOptions{Temperature: 1, Seed: 3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) != 40 {
		t.Fatalf("%d tokens generated, want 40", len(res.Tokens))
	}
	// The delta's context (after its prompt) must spell a prefix of the
	// generated text: it trails by at most the last token.
	var spelled []byte
	for _, id := range dlm.Tokens()[len(dp):] {
		spelled = dtok.Vocab().AppendPiece(spelled, id, false)
	}
	// A SentencePiece delta spells a leading space as its dummy prefix.
	if !strings.HasPrefix(strings.TrimPrefix(res.Text, " "), strings.TrimPrefix(string(spelled), " ")) {
		t.Fatalf("delta context spells %q; generated text %q", spelled, res.Text)
	}
	t.Logf("%d tokens, %d re-tokenisations, %d delta tokens re-decoded; text %q", len(res.Tokens), res.DeltaRetokenised, res.DeltaRedecoded, res.Text)
}

// TestCrossVocabStoriesDeltaOnLlama2User steers a Llama-2-vocabulary model
// with the 512-token stories260K delta.
func TestCrossVocabStoriesDeltaOnLlama2User(t *testing.T) {
	deltaPath := fixture(t, "models/stories260K/stories260K.gguf")
	d, err := delta.LoadGGUF(deltaPath)
	if err != nil {
		t.Fatal(err)
	}
	crossVocab(t, fixture(t, "models/llama-2-tiny-random/llama-2-tiny-random.gguf"), deltaPath, d)
}

// TestCrossVocabLlama2DeltaOnStoriesUser is the reverse: a small random
// delta with the Llama-2 vocabulary steers stories260K.
func TestCrossVocabLlama2DeltaOnStoriesUser(t *testing.T) {
	vf, err := gguf.Open(fixture(t, "gguf-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	v, err := vf.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	d, err := delta.New(delta.Config{Dim: 16, HiddenDim: 32, NLayers: 1, NHeads: 2, NKVHeads: 2, VocabSize: len(v.Pieces), SeqLen: 256, SharedClassifier: true}, 7)
	if err != nil {
		t.Fatal(err)
	}
	deltaPath := filepath.Join(t.TempDir(), "llama2-delta.gguf")
	if err := d.ExportGGUF(deltaPath, delta.ExportOptions{Tokenizer: vf}); err != nil {
		t.Fatal(err)
	}
	crossVocab(t, fixture(t, "models/stories260K/stories260K.gguf"), deltaPath, d)
}
