package vocab

import (
	"strings"
	"testing"
)

// spm is a small SentencePiece vocabulary with Llama-2's specials
// (<unk> 0, <s> 1, </s> 2) and no types, so that Type infers them.
func spm() *Vocab {
	return &Vocab{
		Model:  "llama",
		Pieces: []string{"<unk>", "<s>", "</s>", "▁the", "<0x0A>", "▁▁", "<0xZZ>"},
		UNK:    0, BOS: 1, EOS: 2, PAD: -1,
	}
}

// gpt2 is a small byte-level vocabulary whose last token is GPT-2's
// "<|endoftext|>", typed as control.
func gpt2() *Vocab {
	v := &Vocab{Model: "gpt2", UNK: -1, PAD: -1}
	for _, text := range []string{" the", "\n", "\xe2\x80", "—"} {
		v.Pieces = append(v.Pieces, EncodeByteLevel([]byte(text)))
		v.Types = append(v.Types, TokenNormal)
	}
	v.Pieces = append(v.Pieces, "<|endoftext|>", "<tool>")
	v.Types = append(v.Types, TokenControl, TokenUserDefined)
	v.BOS, v.EOS = 4, 4
	return v
}

func TestEncoding(t *testing.T) {
	for model, want := range map[string]Encoding{"llama": SentencePiece, "t5": SentencePiece, "bert": SentencePiece, "gpt2": ByteLevel, "rwkv": 0, "": 0} {
		if got := (&Vocab{Model: model}).Encoding(); got != want {
			t.Errorf("tokenizer model %q: encoding %s, want %s", model, got, want)
		}
	}
}

func TestText(t *testing.T) {
	s, b := spm(), gpt2()
	for _, c := range []struct {
		v    *Vocab
		id   int32
		want string
	}{
		{s, 3, " the"}, {s, 4, "\n"}, {s, 5, "  "}, {s, 1, "<s>"}, {s, 6, "<0xZZ>"},
		{b, 0, " the"}, {b, 1, "\n"}, {b, 2, "\xe2\x80"}, {b, 3, "—"}, {b, 4, "<|endoftext|>"}, {b, 5, "<tool>"},
	} {
		if got := c.v.Text(c.id); got != c.want {
			t.Errorf("%s piece %q: text %q, want %q", c.v.Encoding(), c.v.Pieces[c.id], got, c.want)
		}
	}
	// GPT-2 spells these as its vocabulary files show them.
	if got := EncodeByteLevel([]byte(" the\n")); got != "ĠtheĊ" {
		t.Errorf("EncodeByteLevel(\" the\\n\") = %q, want \"ĠtheĊ\"", got)
	}
}

func TestTypeInferred(t *testing.T) {
	s := spm()
	for id, want := range []TokenType{TokenControl, TokenControl, TokenControl, TokenNormal, TokenByte, TokenNormal, TokenNormal} {
		if got := s.Type(int32(id)); got != want {
			t.Errorf("untyped piece %q: type %s, want %s", s.Pieces[id], got, want)
		}
	}
	// A byte-level vocabulary has no "<0xNN>" byte pieces.
	b := &Vocab{Model: "gpt2", Pieces: []string{"<0x0A>"}, BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	if got := b.Type(0); got != TokenNormal {
		t.Errorf("byte-level piece <0x0A>: type %s, want normal", got)
	}
	if got := gpt2().Type(5); got != TokenUserDefined {
		t.Errorf("typed piece: type %s, want the stored user-defined", got)
	}
}

func TestDisplay(t *testing.T) {
	s := spm()
	for id, want := range map[int32]string{1: "<s>", 3: `" the"`, 4: `"\n"`, -1: "-", 7: "-"} {
		if got := s.Display(id); got != want {
			t.Errorf("Display(%d) = %s, want %s", id, got, want)
		}
	}
}

func TestByteLevelRoundTrip(t *testing.T) {
	seen := map[rune]bool{}
	for b := range 256 {
		piece := EncodeByteLevel([]byte{byte(b)})
		if r := []rune(piece); len(r) != 1 || seen[r[0]] {
			t.Fatalf("byte %#x spelled %q: want one rune used by no other byte", b, piece)
		}
		seen[[]rune(piece)[0]] = true
		if got := decodeByteLevel(piece); got != string([]byte{byte(b)}) {
			t.Errorf("byte %#x: decode(%q) = %q", b, piece, got)
		}
	}
	// Added tokens stored literally are not byte-level text.
	if got := decodeByteLevel("<|im_end|>\u2581"); got != "<|im_end|>\u2581" {
		t.Errorf("decode of a piece outside the table = %q, want it unchanged", got)
	}
}

func TestParseBytePiece(t *testing.T) {
	for piece, want := range map[string]int{"<0x0A>": 0x0A, "<0xff>": 0xFF, "<0x0A": -1, "<0xZZ>": -1, "<0x100>": -1, "0x0A>x": -1} {
		b, ok := ParseBytePiece(piece)
		if got := map[bool]int{true: int(b), false: -1}[ok]; got != want {
			t.Errorf("ParseBytePiece(%q) = %d, %v; want %d", piece, b, ok, want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := spm().Validate(); err != nil {
		t.Errorf("valid SentencePiece vocabulary: %v", err)
	}
	if err := gpt2().Validate(); err != nil {
		t.Errorf("valid byte-level vocabulary: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(v *Vocab)
		want string
	}{
		{"no tokens", func(v *Vocab) { v.Pieces, v.Types = nil, nil }, "no tokens"},
		{"short types", func(v *Vocab) { v.Types = v.Types[:2] }, "2 token types for 6 tokens"},
		{"short scores", func(v *Vocab) { v.Scores = []float32{0} }, "1 scores for 6 tokens"},
		{"unknown model", func(v *Vocab) { v.Model = "rwkv" }, `"rwkv"`},
		{"EOS out of range", func(v *Vocab) { v.EOS = 6 }, "EOS id 6"},
		{"PAD below -1", func(v *Vocab) { v.PAD = -2 }, "PAD id -2"},
	} {
		v := gpt2()
		c.edit(v)
		if err := v.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestTokenTypeString(t *testing.T) {
	if TokenUserDefined.String() != "user-defined" || TokenByte.String() != "byte" || TokenType(9).String() != "9" {
		t.Errorf("token type names: %s, %s, %s", TokenUserDefined, TokenByte, TokenType(9))
	}
}
