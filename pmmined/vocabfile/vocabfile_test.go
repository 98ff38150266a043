package vocabfile

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/vocab"
)

const fixtures = "../../../shared/fixtures"

func fixturePath(t *testing.T, rel string) string {
	t.Helper()
	path := filepath.Join(fixtures, rel)
	if _, err := os.Stat(path); err != nil {
		testfixture.Missing(t, "fixture %s absent: %v", path, err)
	}
	return path
}

// The Llama-2 SentencePiece model and llama.cpp's GGUF of it hold the same
// vocabulary.
func TestSentencePieceEqualsGGUF(t *testing.T) {
	for _, c := range []struct{ model, gguf string }{
		{"tokenizers/llama2/tokenizer.model", "gguf-vocab/ggml-vocab-llama-spm.gguf"},
		{"tokenizers/mistral/tokenizer.model.v1", "gguf-vocab/ggml-vocab-mistral-v1.gguf"},
	} {
		fromModel, err := ReadSentencePiece(fixturePath(t, c.model))
		if err != nil {
			t.Fatal(err)
		}
		fromGGUF, err := Open(fixturePath(t, c.gguf))
		if err != nil {
			t.Fatal(err)
		}
		if len(fromModel.Pieces) != 32000 {
			t.Errorf("%s: %d pieces, want 32000", c.model, len(fromModel.Pieces))
		}
		if !slices.Equal(fromModel.Pieces, fromGGUF.Pieces) {
			t.Errorf("%s and %s: pieces differ", c.model, c.gguf)
		}
		if !slices.Equal(fromModel.Types, fromGGUF.Types) {
			t.Errorf("%s and %s: token types differ", c.model, c.gguf)
		}
		if fromModel.BOS != 1 || fromModel.EOS != 2 || fromModel.UNK != 0 || fromModel.PAD != -1 {
			t.Errorf("%s: BOS %d EOS %d UNK %d PAD %d, want 1 2 0 -1", c.model, fromModel.BOS, fromModel.EOS, fromModel.UNK, fromModel.PAD)
		}
		if fromModel.Encoding() != vocab.SentencePiece || fromGGUF.Encoding() != vocab.SentencePiece {
			t.Errorf("%s: encodings %s and %s, want sentencepiece", c.model, fromModel.Encoding(), fromGGUF.Encoding())
		}
		if fromModel.Pieces[3] != "<0x00>" || fromModel.Types[3] != vocab.TokenByte {
			t.Errorf("%s: piece 3 is %q (type %d), want the byte token <0x00>", c.model, fromModel.Pieces[3], fromModel.Types[3])
		}
	}
}

func TestTiktoken(t *testing.T) {
	for _, c := range []struct {
		path         string
		size         int
		bos, eos     int32
		piece        string
		id           int32
		special      string
		specialID    int32
		specialCount int
	}{
		{"tokenizers/llama3/tokenizer.model", 128256, 128000, 128001, "Ġthe", 279, "<|eot_id|>", 128009, 256},
		{"tokenizers/qwen/qwen.tiktoken", 151646, -1, 151643, "Ġthe", 279, "<|im_end|>", 151645, 3},
	} {
		v, err := Open(fixturePath(t, c.path))
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Pieces) != c.size || v.BOS != c.bos || v.EOS != c.eos || v.Encoding() != vocab.ByteLevel {
			t.Errorf("%s: %d tokens, BOS %d, EOS %d, %s; want %d, %d, %d, byte-level",
				c.path, len(v.Pieces), v.BOS, v.EOS, v.Encoding(), c.size, c.bos, c.eos)
		}
		if v.Pieces[c.id] != c.piece || v.Text(c.id) != " the" {
			t.Errorf("%s: token %d is %q (text %q), want %q", c.path, c.id, v.Pieces[c.id], v.Text(c.id), c.piece)
		}
		if v.Pieces[c.specialID] != c.special || v.Type(c.specialID) != vocab.TokenControl {
			t.Errorf("%s: token %d is %q (type %d), want control token %s", c.path, c.specialID, v.Pieces[c.specialID], v.Type(c.specialID), c.special)
		}
		controls := 0
		for i := range v.Pieces {
			if v.Type(int32(i)) == vocab.TokenControl {
				controls++
			}
		}
		if controls != c.specialCount {
			t.Errorf("%s: %d control tokens, want %d", c.path, controls, c.specialCount)
		}
	}
}

func TestTiktokenRejects(t *testing.T) {
	for _, c := range []struct{ name, data, want string }{
		{"gap", "IQ== 0\nIg== 2\n", "line 2"},
		{"base64", "!!! 0\n", "not base64"},
		{"fields", "IQ== 0 extra\n", "line 1"},
	} {
		_, err := parseRanks([]byte(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	v, err := parseRanks([]byte("IQ== 0\r\nIg== 1\r\n"))
	if err != nil || len(v.Pieces) != 2 || v.Pieces[1] != "\"" {
		t.Errorf("CRLF ranks: %v, %v", v, err)
	}
	if err := addSpecials(v, TiktokenSpecials{Tokens: []Special{{5, "<x>"}}, BOS: -1, EOS: -1, UNK: -1, PAD: -1}); err == nil {
		t.Error("special token after a gap accepted")
	}
}

func TestSentencePieceRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"truncated", []byte{0x0a, 0x10, 0x0a}},
		{"bad type", []byte{0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x09}},
	} {
		if _, err := parseSentencePiece(c.data); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestOpenGGUFBert(t *testing.T) {
	// llama.cpp's converter spells BERT's WordPiece vocabulary with "▁" at
	// word starts, as SentencePiece does.
	v, err := Open(fixturePath(t, "gguf-vocab/ggml-vocab-bert-bge.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Encoding() != vocab.SentencePiece || v.Text(2000) != " to" || v.UNK != 100 {
		t.Errorf("bert-bge: %s, token 2000 %q, UNK %d; want sentencepiece, \" to\", 100", v.Encoding(), v.Text(2000), v.UNK)
	}
}

// A tokenizer model whose pieces token maps cannot read is refused when the
// file is read, with an error naming it.
func TestReadGGUFUnknownTokenizerModel(t *testing.T) {
	w := gguf.NewWriter()
	w.SetVocab(&vocab.Vocab{Model: "rwkv", Pieces: []string{"a"}, BOS: -1, EOS: -1, UNK: -1, PAD: -1})
	rwkv := filepath.Join(t.TempDir(), "rwkv.gguf")
	if err := w.WriteFile(rwkv); err != nil {
		t.Fatal(err)
	}
	_, err := ReadGGUF(rwkv)
	if err == nil || !strings.Contains(err.Error(), `"rwkv"`) {
		t.Errorf("rwkv vocabulary: error %v, want one naming the tokenizer model", err)
	}
}

func TestOpenGGUFByteLevel(t *testing.T) {
	v, err := Open(fixturePath(t, "gguf-vocab/ggml-vocab-gpt-2.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Encoding() != vocab.ByteLevel || len(v.Pieces) != 50257 || v.EOS != 50256 || v.Text(198) != "\n" {
		t.Errorf("gpt-2: %s, %d tokens, EOS %d, token 198 %q", v.Encoding(), len(v.Pieces), v.EOS, v.Text(198))
	}
}

func benchmarkOpen(b *testing.B, rel string) {
	path := filepath.Join(fixtures, rel)
	if _, err := os.Stat(path); err != nil {
		testfixture.Missing(b, "fixture %s absent: %v", path, err)
	}
	for b.Loop() {
		if _, err := Open(path); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen_Llama2GGUF(b *testing.B) {
	benchmarkOpen(b, "gguf-vocab/ggml-vocab-llama-spm.gguf")
}
func BenchmarkOpen_Llama3Tiktoken(b *testing.B) {
	benchmarkOpen(b, "tokenizers/llama3/tokenizer.model")
}
func BenchmarkOpen_MistralSentencePiece(b *testing.B) {
	benchmarkOpen(b, "tokenizers/mistral/tokenizer.model.v1")
}

// TestDecodeTestVectors decodes llama.cpp's tokenizer test vectors (token
// ids of known strings) with the loaded vocabularies: every string must come
// back byte for byte, which proves the pieces are in rank order and their
// byte-level spelling is undone correctly.
func TestDecodeTestVectors(t *testing.T) {
	for _, c := range []struct{ vocab, vectors string }{
		{"tokenizers/llama3/tokenizer.model", "tokenizers/llama3/ggml-vocab-llama-bpe.gguf"},
		{"tokenizers/qwen/qwen.tiktoken", "tokenizers/qwen/ggml-vocab-qwen2.gguf"},
		{"gguf-vocab/ggml-vocab-gpt-2.gguf", "gguf-vocab/ggml-vocab-gpt-2.gguf"},
		{"gguf-vocab/ggml-vocab-deepseek-llm.gguf", "gguf-vocab/ggml-vocab-deepseek-llm.gguf"},
	} {
		v, err := Open(fixturePath(t, c.vocab))
		if err != nil {
			t.Fatal(err)
		}
		inp, err := os.ReadFile(fixturePath(t, c.vectors+".inp"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.ReadFile(fixturePath(t, c.vectors+".out"))
		if err != nil {
			t.Fatal(err)
		}
		texts := strings.Split(strings.TrimSuffix(string(inp), "\n__ggml_vocab_test__\n"), "\n__ggml_vocab_test__\n")
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(texts) != len(lines) || len(texts) < 40 {
			t.Fatalf("%s: %d strings, %d id lines", c.vectors, len(texts), len(lines))
		}
		for i, line := range lines {
			var sb strings.Builder
			for _, f := range strings.Fields(line) {
				id, err := strconv.Atoi(f)
				if err != nil || id < 0 || id >= len(v.Pieces) {
					t.Fatalf("%s.out line %d: bad token id %q", c.vectors, i+1, f)
				}
				sb.WriteString(v.Text(int32(id)))
			}
			if sb.String() != texts[i] {
				t.Errorf("%s string %d: decoded %q, want %q", c.vectors, i+1, sb.String(), texts[i])
			}
		}
	}
}
