package delta

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func loadTok512(t testing.TB) *Tokenizer {
	t.Helper()
	needFile(t, tok512)
	tok, err := LoadTokenizer(tok512)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The golden run's prompt ids come from llama2.c's encoder and its text from
// llama2.c's decoder.
func TestTokenizerGolden(t *testing.T) {
	g := loadGolden(t)
	tok := loadTok512(t)
	if len(tok.Pieces) != 512 {
		t.Fatalf("%d tokens in %s, want 512", len(tok.Pieces), tok512)
	}
	if got := tok.Encode("Once upon a time", true, false); !slices.Equal(got, g.PromptIDs) {
		t.Errorf("Encode = %v, want %v", got, g.PromptIDs)
	}
	all := append(slices.Clone(g.PromptIDs), g.GreedyIDs...)
	if got := tok.Decode(all); got != g.Text {
		t.Errorf("Decode = %q\nwant %q", got, g.Text)
	}
}

// Characters outside the vocabulary fall back to byte tokens and decode
// back to the same text.
func TestTokenizerRoundTrip(t *testing.T) {
	tok := loadTok512(t)
	for _, text := range []string{"Lily saw a big dog.", "naïve café — 東京 🙂", "a\nb\tc"} {
		ids := tok.Encode(text, true, true)
		if ids[0] != BOS || ids[len(ids)-1] != EOS {
			t.Fatalf("Encode(%q) = %v: no BOS/EOS", text, ids)
		}
		if got := tok.Decode(ids[:len(ids)-1]); got != text {
			t.Errorf("Decode(Encode(%q)) = %q (ids %v)", text, got, ids)
		}
	}
}

// encodeLlama2C is llama2.c's encoder loop transcribed as it is written:
// rescan all adjacent pairs, merge the first best-scoring one, repeat.
func encodeLlama2C(t *Tokenizer, text string) []int32 {
	ids := []int32{BOS}
	if text != "" {
		text = " " + text
	}
	for _, r := range text {
		if id, ok := t.ids[string(r)]; ok {
			ids = append(ids, id)
		} else {
			for _, b := range []byte(string(r)) {
				ids = append(ids, int32(b)+3)
			}
		}
	}
	for {
		best, bestID, bestScore := -1, int32(0), float32(-1e10)
		for i := 1; i+1 < len(ids); i++ {
			id, ok := t.ids[t.Pieces[ids[i]]+t.Pieces[ids[i+1]]]
			if ok && t.Scores[id] > bestScore {
				best, bestID, bestScore = i, id, t.Scores[id]
			}
		}
		if best < 0 {
			return ids
		}
		ids[best] = bestID
		ids = append(ids[:best+1], ids[best+2:]...)
	}
}

// The priority-queue encoder makes llama2.c's merges, on real stories and
// on text that falls back to bytes.
func TestEncodeMatchesLlama2CLoop(t *testing.T) {
	tok := loadTok512(t)
	needFile(t, tinyStories)
	b, err := os.ReadFile(tinyStories)
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(b[:20000]), "\n")
	texts = append(texts, "", " ", "aaaaaaaaaaaaaa", "naïve café — 東京 🙂\t\tLily  ")
	check := func(tok *Tokenizer, texts []string) {
		for _, text := range texts {
			if got, want := tok.Encode(text, true, false), encodeLlama2C(tok, text); !slices.Equal(got, want) {
				t.Fatalf("Encode(%q) = %v\nllama2.c loop gives %v", text, got, want)
			}
		}
	}
	check(tok, texts)

	// the 32000-token Llama 2 vocabulary merges much further
	llama2 := fixtures + "tokenizers/llama2/tokenizer.bin"
	needFile(t, llama2)
	big, err := LoadTokenizer(llama2)
	if err != nil {
		t.Fatal(err)
	}
	if len(big.Pieces) != 32000 {
		t.Fatalf("%s: %d tokens, want 32000", llama2, len(big.Pieces))
	}
	check(big, texts[:40])
	// the ids the Llama 2 tokenizer is well known to give
	if got := big.Encode("Hello world", true, false); !slices.Equal(got, []int32{1, 15043, 3186}) {
		t.Errorf("Llama 2 Encode(\"Hello world\") = %v, want [1 15043 3186]", got)
	}
}
