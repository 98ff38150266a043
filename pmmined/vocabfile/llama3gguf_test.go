package vocabfile_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/pmmined/vocabfile"
	"github.com/cmc-dev/cmc/vocab"
)

// TestLlama3GGUFMatchesLlamaCppVectors builds the Llama-3 vocabulary GGUF
// from Meta's tiktoken ranks and tokenizes llama.cpp's llama-bpe test
// strings with it in llama.cpp: every id list must equal llama.cpp's own
// (made with the GGUF of the real model).
func TestLlama3GGUFMatchesLlamaCppVectors(t *testing.T) {
	dir := "../../../shared/fixtures/tokenizers/llama3"
	ranks := filepath.Join(dir, "tokenizer.model")
	inp := filepath.Join(dir, "ggml-vocab-llama-bpe.gguf.inp")
	for _, p := range []string{ranks, inp} {
		if _, err := os.Stat(p); err != nil {
			testfixture.Missing(t, "fixture %s: %v", p, err)
		}
	}
	out := filepath.Join(t.TempDir(), "ggml-vocab-llama-bpe.gguf")
	if err := vocabfile.WriteLlama3GGUF(out, ranks); err != nil {
		t.Fatal(err)
	}

	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.Vocab()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// 280147 merges, as in Meta-Llama-3's tokenizer.json.
	if len(v.Pieces) != 128256 || len(v.Merges) != 280147 || v.Pre != "llama-bpe" {
		t.Fatalf("%d tokens, %d merges, pre-tokenizer %q; want 128256, 280147, llama-bpe", len(v.Pieces), len(v.Merges), v.Pre)
	}
	// The first merge of every GPT-style BPE: two spaces ("Ġ" is a space).
	if v.Merges[0] != "Ġ Ġ" || v.Pieces[128009] != "<|eot_id|>" || v.Types[128009] != vocab.TokenControl {
		t.Fatalf("merge 0 %q, token 128009 %q type %d", v.Merges[0], v.Pieces[128009], v.Types[128009])
	}

	m, err := llama.LoadModel(out, llama.ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	texts, want := readVectors(t, inp)
	for i, text := range texts {
		got, err := m.Vocab().Tokenize(text, false, false)
		if err != nil {
			t.Fatalf("string %d: %v", i, err)
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("string %d %q:\n got %v\nwant %v", i, text, got, want[i])
		}
	}
}

// TestMergesFromRanks: on a tiny rank table, every split of a token into
// two tokens is a merge, in the token's rank order and then by the ranks of
// the halves; a token that no two tokens make is an error.
func TestMergesFromRanks(t *testing.T) {
	pieces := []string{"a", "b", "c", "ab", "bc", "abc", "cab", "abab"}
	v := &vocab.Vocab{Model: "gpt2", Pieces: pieces, Types: slices.Repeat([]vocab.TokenType{vocab.TokenNormal}, len(pieces))}
	got, err := vocabfile.MergesFromRanks(v)
	if err != nil {
		t.Fatal(err)
	}
	// "abc" splits as a+bc and ab+c: by the left halves' ranks, "a bc"
	// (0) comes before "ab c" (3).
	if want := []string{"a b", "b c", "a bc", "ab c", "c ab", "ab ab"}; !slices.Equal(got, want) {
		t.Fatalf("merges %q, want %q", got, want)
	}
	v.Pieces[7] = "acb" // neither a+cb nor ac+b are tokens
	if _, err := vocabfile.MergesFromRanks(v); err == nil || !strings.Contains(err.Error(), "acb") {
		t.Fatalf("a token no two tokens make: %v", err)
	}
	v.Types[7] = vocab.TokenControl // specials take no part
	if _, err := vocabfile.MergesFromRanks(v); err != nil {
		t.Fatal(err)
	}
}

func readVectors(t *testing.T, inp string) ([]string, [][]int32) {
	t.Helper()
	in, err := os.ReadFile(inp)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(strings.TrimSuffix(inp, ".inp") + ".out")
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(in), "\n__ggml_vocab_test__\n")
	texts = texts[:len(texts)-1] // the file ends with a separator
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d strings, %d id lines", inp, len(texts), len(lines))
	}
	want := make([][]int32, len(lines))
	for i, line := range lines {
		for _, f := range strings.Fields(line) {
			id, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s line %d: %v", inp, i+1, err)
			}
			want[i] = append(want[i], int32(id))
		}
	}
	return texts, want
}
