package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/gguf"
)

// TestGenerateSelfDeltaPrintsGolden runs the whole delta path, not the
// shortcut alpha 0 takes: stories260K steered by itself as the delta at
// alpha 1 scores log_softmax(x) + x, whose argmax is x's, so greedy
// generation must print the reference text. Both models read the same raw
// prompt, so a misaligned delta context or a wrong row of its logits
// changes the text.
func TestGenerateSelfDeltaPrintsGolden(t *testing.T) {
	b, err := os.ReadFile(fixture(t, "models/stories260K/golden_greedy_once_upon_a_time.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Text string `json:"greedy_text_including_prompt"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	model := fixture(t, "models/stories260K/stories260K.gguf")
	out, err := cmcCommand("generate", "--model", model, "--delta", model, "--alpha", "1",
		"--template", "raw", "--delta-template", "raw", "--prompt", "Once upon a time",
		"--temp", "0", "--max-tokens", "60", "--threads", "1").Output()
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if got := strings.TrimSuffix(string(out), "\n"); got != g.Text {
		t.Errorf("self-delta at alpha 1 printed\n%q\nwant the golden greedy text\n%q", got, g.Text)
	}
}

// TestAlphaFlagRange: every command that takes --alpha refuses a value out
// of range before loading anything, naming the flag and the range.
func TestAlphaFlagRange(t *testing.T) {
	for _, cmd := range []string{"generate", "chat", "serve", "eval"} {
		for _, alpha := range []string{"1e308", "-11", "NaN", "Inf"} {
			out, err := cmcCommand(cmd, "--model", "/nonexistent.gguf", "--alpha", alpha, "--prompt", "x", "--data", "/nonexistent.json").CombinedOutput()
			if err == nil {
				t.Fatalf("%s --alpha %s succeeded", cmd, alpha)
			}
			if !strings.Contains(string(out), "--alpha") || !strings.Contains(string(out), "between -10 and 10") || strings.Contains(string(out), "nonexistent.gguf") {
				t.Errorf("%s --alpha %s: %s; want the flag and its range named before the model is opened", cmd, alpha, out)
			}
		}
	}
}

// TestGenerateNaNDeltaFails: a delta whose weights are NaN is an error
// naming the file and the NaN (its loader or, failing that, the non-finite
// logits at the first step), not an empty text and exit 0.
func TestGenerateNaNDeltaFails(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	m, err := delta.New(delta.Config{Dim: 16, HiddenDim: 32, NLayers: 1, NHeads: 2, NKVHeads: 2, VocabSize: 512, SeqLen: 64, SharedClassifier: true}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Params {
		m.Params[i] = float32(math.NaN())
	}
	tok, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	nan := filepath.Join(t.TempDir(), "nan.gguf")
	if err := m.ExportGGUF(nan, delta.ExportOptions{Tokenizer: tok}); err != nil {
		t.Fatal(err)
	}
	out, err := cmcCommand("generate", "--model", model, "--delta", nan, "--alpha", "1", "--prompt", "Once",
		"--temp", "0", "--max-tokens", "5", "--threads", "1").CombinedOutput()
	if err == nil {
		t.Fatalf("generate with a NaN delta exited 0:\n%s", out)
	}
	if !strings.Contains(string(out), "nan.gguf") && !strings.Contains(string(out), "delta model") ||
		!strings.Contains(string(out), "NaN") && !strings.Contains(string(out), "not finite") {
		t.Errorf("NaN delta: %s; want the delta and its NaN named", out)
	}
}

// TestGenerateNaNUserFails: a user model whose output weights are NaN
// (llama.cpp loads it) ends with an error naming the user model's
// non-finite logits at the first step, not an empty text and exit 0.
func TestGenerateNaNUserFails(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	data, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// stories260K ties its output to the token embeddings: poison those.
	poisoned := false
	for _, ti := range f.Tensors {
		if ti.Name != "token_embd.weight" && ti.Name != "output.weight" || ti.Type != gguf.TypeF32 {
			continue
		}
		start := f.DataOffset + int64(ti.Offset)
		for i := start; i < start+int64(ti.Elements())*4; i += 4 {
			copy(data[i:], []byte{0x00, 0x00, 0xc0, 0x7f}) // a float32 NaN
		}
		poisoned = true
	}
	if !poisoned {
		t.Fatal("stories260K has no float32 embedding or output tensor to poison")
	}
	nan := filepath.Join(t.TempDir(), "nan-user.gguf")
	if err := os.WriteFile(nan, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := cmcCommand("generate", "--model", nan, "--prompt", "Once", "--temp", "0", "--max-tokens", "5", "--threads", "1").CombinedOutput()
	if err == nil {
		t.Fatalf("generate with a NaN user model exited 0:\n%s", out)
	}
	if !strings.Contains(string(out), "NaN") && !strings.Contains(string(out), "not finite") {
		t.Errorf("NaN user model: %s; want its NaN named", out)
	}
	t.Logf("%s", out)
}

// TestGenerateWithinTheContext: a generation that runs into the end of the
// user model's context finishes with "length" and exits 0; a prompt that
// does not fit is an error naming both sizes, before any decoding.
func TestGenerateWithinTheContext(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	// llama.cpp rounds a context up to 256 tokens.
	cmd := cmcCommand("generate", "--model", model, "--prompt", "Once upon a time", "--temp", "0",
		"--max-tokens", "0", "--ctx", "256", "--threads", "1", "--stats")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("generation to the end of the context: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "finish=length") {
		t.Errorf("no finish=length in\n%s", out)
	}
	long := strings.Repeat("Once upon a time there was a cat. ", 60)
	cmd = cmcCommand("generate", "--model", model, "--prompt", long, "--ctx", "256", "--threads", "1")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the user model's context (--ctx) holds 256") {
		t.Errorf("an over-long prompt: %v\n%s", err, out)
	}
}
