package pmmined

import (
	"testing"

	"github.com/cmc-dev/cmc/vocab"
)

// A text known only as text maps as Build maps a user token with that text:
// exact, then a byte token for one byte, then the longest prefix or
// shortest extension.
func TestTextMapperMatchesBuild(t *testing.T) {
	delta := &vocab.Vocab{
		Model:  "llama",
		Pieces: []string{"<unk>", "<s>", "</s>", "<0x0A>", "<0xC3>", "▁the", "▁fish", "▁fishing", "ab", "▁"},
		Types: []vocab.TokenType{vocab.TokenUnknown, vocab.TokenControl, vocab.TokenControl, vocab.TokenByte, vocab.TokenByte,
			vocab.TokenNormal, vocab.TokenNormal, vocab.TokenNormal, vocab.TokenNormal, vocab.TokenNormal},
		BOS: 1, EOS: 2, UNK: 0, PAD: -1,
	}
	m, err := NewTextMapper(delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text string
		want int32
		kind Kind
	}{
		{" the", 5, KindExact},
		{" fishin", 7, KindPrefix}, // the shortest extension, one unit away
		{" fisher", 6, KindPrefix}, // the longest prefix
		{"\n", 3, KindByte},        // no text token: the byte token, as Build maps <0x0A>
		{"\xc3(", 4, KindLeadByte}, // an incomplete character: its first byte
		{"\xc3", 4, KindByte},
		{"abc", 8, KindPrefix},
		{" x", -1, KindNone}, // a bare space does not stand for a word
		{"", -1, KindNone},
	} {
		d, k := m.Map(c.text)
		if d != c.want || k != c.kind {
			t.Errorf("Map(%q) = %d %s, want %d %s", c.text, d, k, c.want, c.kind)
		}
	}

	// The same texts as a byte-level user vocabulary's tokens, through Build.
	user := &vocab.Vocab{Model: "gpt2", Pieces: []string{"Ġthe", "Ġfishin", "Ġfisher", "Ċ", "abc"}, BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	built, err := Build(user, delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	for u := range user.Pieces {
		d, k := m.Map(user.Text(int32(u)))
		if d != built.ToDelta[u] || k != built.Kind[u] {
			t.Errorf("text %q: TextMapper %d %s, Build %d %s", user.Text(int32(u)), d, k, built.ToDelta[u], built.Kind[u])
		}
	}
}
