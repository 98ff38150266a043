package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/gguf"
)

// TestQuantizeCommand: `cmc quantize IN OUT Q8_0` writes a model whose
// matrices are Q8_0 and that generate runs; a bad type is a usage error
// naming the valid ones.
func TestQuantizeCommand(t *testing.T) {
	// stories260K's feed-forward rows (172) fit no quantization block, so
	// the input is a random model of the same vocabulary with rows of 256.
	tok, err := gguf.Open(fixture(t, "models/stories260K/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	m, err := delta.New(delta.Config{Dim: 256, HiddenDim: 512, NLayers: 1, NHeads: 4, NKVHeads: 4, VocabSize: 512, SeqLen: 64}, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "random-f32.gguf")
	if err := m.ExportGGUF(model, delta.ExportOptions{Tokenizer: tok}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "random-q8.gguf")
	if b, err := cmcCommand("quantize", "--threads", "1", model, out, "q8_0").CombinedOutput(); err != nil {
		t.Fatalf("quantize: %v\n%s", err, b)
	} else if !strings.Contains(string(b), "wrote "+out) {
		t.Errorf("quantize printed %q", b)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	q8 := 0
	for _, ti := range f.Tensors {
		if ti.Type == gguf.TypeQ8_0 {
			q8++
		}
	}
	f.Close()
	if q8 == 0 {
		t.Fatalf("no Q8_0 tensor in %s", out)
	}
	if b, err := cmcCommand("generate", "--model", out, "--no-delta", "--prompt", "Once upon a time", "--temp", "0", "--max-tokens", "8", "--threads", "1").CombinedOutput(); err != nil || !strings.HasPrefix(string(b), "Once upon a time") {
		t.Fatalf("generate with the Q8_0 model: %v\n%s", err, b)
	}

	bad := filepath.Join(dir, "bad.gguf")
	b, err := cmcCommand("quantize", model, bad, "Q3_X").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "Q4_K_M") {
		t.Errorf("bad type: %v\n%s", err, b)
	}
	// llama.cpp's refusal comes with its reason, and leaves nothing.
	stories := fixture(t, "models/stories260K/stories260K.gguf")
	b, err = cmcCommand("quantize", stories, bad, "Q8_0").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "multiple of the type's block size") {
		t.Errorf("stories260K to Q8_0: %v\n%s", err, b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("after the failures %s holds %d files, want the two models", dir, len(entries))
	}
}
