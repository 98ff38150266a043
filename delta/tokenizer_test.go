package delta

import (
	"slices"
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
