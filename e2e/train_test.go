package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/llama"
)

const fixtures = "../../shared/fixtures"

func fixture(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(fixtures, rel)
	if _, err := os.Stat(p); err != nil {
		testfixture.Missing(t, "fixture %s not found (expected ../shared/fixtures beside the repository): %v", p, err)
	}
	return p
}

// stories260K loads the real pretrained TinyStories model and a context.
func stories260K(t testing.TB, size int) (*llama.Model, *llama.Context) {
	t.Helper()
	m, err := llama.LoadModel(fixture(t, "models/stories260K/stories260K.gguf"), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx, err := m.NewContext(llama.ContextParams{Size: size, Threads: 1, KVF32: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctx.Close)
	return m, ctx
}

// TestTrainLowersHeldOutNLL trains a small delta against stories260K on
// TinyStories text for a few steps and checks that template + delta
// predicts held-out stories better than the template alone.
func TestTrainLowersHeldOutNLL(t *testing.T) {
	tmpl, tctx := stories260K(t, 128)
	examples, err := data.Read(fixture(t, "datasets/tinystories/tinystories_val_sample.txt"), data.FormatText)
	if err != nil {
		t.Fatal(err)
	}
	v := tmpl.Vocab()
	sp := data.Specials{BOS: v.BOS(), EOS: v.EOS(), AddBOS: true}
	rawTmpl, _ := data.ParseTemplate(data.TemplateRaw)
	seqs, _, err := data.Encode(v, sp, rawTmpl, examples[:360], 96)
	if err != nil {
		t.Fatal(err)
	}
	train, held := seqs[:320], seqs[320:]

	m, err := delta.New(delta.Config{Dim: 32, HiddenDim: 64, NLayers: 2, NHeads: 4, NKVHeads: 4, VocabSize: v.Size(), SeqLen: 128, SharedClassifier: true}, 1)
	if err != nil {
		t.Fatal(err)
	}
	m.Pool = kernels.NewPool(1)
	defer m.Pool.Close()
	cfg := control.TrainConfig{Objective: control.SFT, BatchSize: 8, Accumulate: 1, Epochs: 1, Seed: 1}
	steps := cfg.StepsPerEpoch(len(train))
	opt := delta.NewAdamW(m, delta.AdamWConfig{LR: 3e-3, WarmupSteps: 2, DecaySteps: steps, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, ClipNorm: 1})
	tr := &control.Trainer{Template: tctx, Model: m, Opt: opt, Config: cfg, Train: train, PadToken: v.EOS()}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}

	alone, controlled := heldOutNLL(t, tctx, v, m, held)
	t.Logf("held-out NLL per token: template %.4f, template+delta %.4f (%d steps)", alone, controlled, steps)
	if controlled >= alone {
		t.Fatalf("template+delta NLL %.4f is not below the template's %.4f", controlled, alone)
	}
}

// heldOutNLL scores the labelled part of each sequence through the
// generation path (user = template, same vocabulary, alpha 1).
func heldOutNLL(t *testing.T, ctx *llama.Context, v *llama.Vocab, m *delta.Model, seqs []data.Sequence) (alone, controlled float64) {
	t.Helper()
	var sumA, sumC float64
	var n int
	for _, s := range seqs {
		first := 0
		for first < len(s.Labels) && s.Labels[first] == delta.Ignore {
			first++
		}
		prompt := s.Tokens[:first+1]
		var target []int32
		for _, l := range s.Labels[first:] {
			if l != delta.Ignore {
				target = append(target, l)
			}
		}
		ctx.Clear()
		g := &control.Generator{User: ctx, UserTok: v, Delta: control.NewDeltaLM(m, 128), DeltaTok: v, Alpha: 1}
		a, c, err := g.Score(context.Background(), prompt, prompt, target)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a {
			sumA -= a[i]
			sumC -= c[i]
		}
		n += len(a)
	}
	return sumA / float64(n), sumC / float64(n)
}
