package llama

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/internal/hostile"
)

// Invalid UTF-8 is spelled in byte tokens, one per byte, and SentencePiece
// adds a leading "▁", so with BOS and EOS a text needs more tokens than
// bytes+2: the buffer grows to what llama.cpp asks for.
func TestTokenizeInvalidUTF8(t *testing.T) {
	path := filepath.Join(t.TempDir(), "add-eos.gguf")
	edit := hostile.Edit{Set: func(w *gguf.Writer) { w.SetBool("tokenizer.ggml.add_eos_token", true) }}
	if err := hostile.RewriteGGUF(fixture(t, "models/stories260K/stories260K.gguf"), path, edit); err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(path, ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v := m.Vocab()
	text := strings.Repeat("\xff", 160)
	ids, err := v.Tokenize(text, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 1 + len(text) + 1; len(ids) != want || ids[0] != v.BOS() || ids[len(ids)-1] != v.EOS() {
		t.Fatalf("%d tokens (first %d, last %d), want %d: BOS, \"▁\", one byte token per byte, EOS", len(ids), ids[0], ids[len(ids)-1], want)
	}
	// Appending keeps what dst held.
	got, err := v.AppendTokens([]int32{7, 8}, text, true, false)
	if err != nil || !equalIDs(got[:2], []int32{7, 8}) || !equalIDs(got[2:], ids) {
		t.Fatalf("AppendTokens: %d tokens, %v", len(got), err)
	}
	if _, err := v.Detokenize(ids, false, false); err != nil {
		t.Fatalf("detokenize: %v", err)
	}
}
