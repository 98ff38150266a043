package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
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
