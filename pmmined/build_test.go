package pmmined

import (
	"testing"

	"github.com/cmc-dev/cmc/vocab"
)

// spm builds a SentencePiece vocabulary with Llama-2's layout of specials:
// <unk> 0, <s> 1, </s> 2, then the given pieces (byte tokens are typed as
// such).
func spm(pieces ...string) *vocab.Vocab {
	v := &vocab.Vocab{Model: "llama", UNK: 0, BOS: 1, EOS: 2, PAD: -1}
	v.Pieces = append([]string{"<unk>", "<s>", "</s>"}, pieces...)
	v.Types = []vocab.TokenType{vocab.TokenUnknown, vocab.TokenControl, vocab.TokenControl}
	for _, p := range pieces {
		t := vocab.TokenNormal
		if _, ok := vocab.ParseBytePiece(p); ok {
			t = vocab.TokenByte
		}
		v.Types = append(v.Types, t)
	}
	return v
}

// byteLevel builds a byte-level vocabulary from raw token texts; the last
// token is "<|endoftext|>", BOS and EOS as in GPT-2.
func byteLevel(texts ...string) *vocab.Vocab {
	v := &vocab.Vocab{Model: "gpt2", UNK: -1, PAD: -1}
	for _, t := range texts {
		v.Pieces = append(v.Pieces, vocab.EncodeByteLevel([]byte(t)))
		v.Types = append(v.Types, vocab.TokenNormal)
	}
	v.Pieces = append(v.Pieces, "<|endoftext|>")
	v.Types = append(v.Types, vocab.TokenControl)
	v.BOS = int32(len(v.Pieces) - 1)
	v.EOS = v.BOS
	return v
}

func TestBuildRules(t *testing.T) {
	delta := spm("<0x0A>", "<0xE2>", "▁", "▁fish", "▁fisher", "▁fishes", "a", "ab", "abcd", "▁x", "▁xyz1", "▁xyz2")
	user := byteLevel(
		" fishing", // 0: prefix, " fish" is longer than " "
		" fi",      // 1: extension, shortest of " fish"/" fisher"/" fishes"
		"abc",      // 2: "ab" (distance 1) beats "abcd" (distance 1) by id
		" the",     // 3: only " " is a prefix, and a bare space does not count
		"  ",       // 4: all spaces, so " " counts
		"\n",       // 5: single byte, byte token
		"\xe2\x80", // 6: partial character, byte token of its first byte
		" xyz",     // 7: two extensions of the same length, lowest id
		" fish",    // 8: exact
		"zz",       // 9: nothing
	)
	want := []struct {
		d    int32
		kind Kind
	}{
		{6, KindPrefix}, {6, KindPrefix}, {10, KindPrefix}, {-1, KindNone}, {5, KindPrefix},
		{3, KindByte}, {4, KindLeadByte}, {13, KindPrefix}, {6, KindExact}, {-1, KindNone},
		{2, KindSpecial}, // <|endoftext|> is BOS and EOS: EOS wins
	}
	m, err := Build(user, delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	for u, w := range want {
		if m.ToDelta[u] != w.d || m.Kind[u] != w.kind {
			t.Errorf("user %d %q: got %d (%s), want %d (%s)", u, user.Text(int32(u)), m.ToDelta[u], m.Kind[u], w.d, w.kind)
		}
	}

	// The baselines agree on the steps before the candidate rule.
	exact, err := Build(user, delta, Exact)
	if err != nil {
		t.Fatal(err)
	}
	if exact.ToDelta[0] != -1 || exact.ToDelta[8] != 6 || exact.ToDelta[5] != 3 {
		t.Errorf("exact strategy: got %v", exact.ToDelta)
	}
	mined, err := Build(user, delta, MinED)
	if err != nil {
		t.Fatal(err)
	}
	// MinED ignores the bare-space rule: " the" is 3 edits from both " "
	// (id 5) and " x" (id 12), and "zz" 2 edits from " ", "a", "ab", " x".
	for _, u := range []int{3, 9} {
		if mined.ToDelta[u] != 5 || mined.Kind[u] != KindEdit {
			t.Errorf("mined strategy: %q got %d (%s), want 5 (edit)", user.Text(int32(u)), mined.ToDelta[u], mined.Kind[u])
		}
	}
}

func TestSpecials(t *testing.T) {
	delta := spm("▁hi")
	user := &vocab.Vocab{
		Model: "llama", BOS: 1, EOS: 2, UNK: 0, PAD: 5,
		Pieces: []string{"<unk>", "<s>", "<|end|>", "</s>", "<|user|>", "<pad>", "[PAD9]", "<|eot_id|>", "▁hi"},
		Types: []vocab.TokenType{vocab.TokenUnknown, vocab.TokenControl, vocab.TokenControl, vocab.TokenUserDefined, vocab.TokenControl,
			vocab.TokenControl, vocab.TokenUnknown, vocab.TokenUserDefined, vocab.TokenNormal},
	}
	want := []int32{
		0,  // UNK by role
		1,  // BOS by role
		2,  // EOS by role
		2,  // user-defined with the name of a delta special token
		-1, // control token without a role: a label, not text
		-1, // PAD by role, and the delta has none
		-1, // unknown-type padding slot
		2,  // ends a turn
		3,  // text
	}
	m, err := Build(user, delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	for u, w := range want {
		if m.ToDelta[u] != w {
			t.Errorf("%s: got %d, want %d", user.Pieces[u], m.ToDelta[u], w)
		}
	}
	if !m.Exact(1) || !m.Exact(8) || m.Exact(4) {
		t.Errorf("Exact: <s> %v, ▁hi %v, <|user|> %v; want true, true, false", m.Exact(1), m.Exact(8), m.Exact(4))
	}
}

func TestBuildRejects(t *testing.T) {
	good := spm("a")
	if _, err := Build(good, good, "nearest"); err == nil {
		t.Error("unknown strategy accepted")
	}
	bad := spm("a")
	bad.EOS = 99
	if _, err := Build(bad, good, PMMinED); err == nil {
		t.Error("EOS outside the vocabulary accepted")
	}
	bad = spm("a")
	bad.Types = bad.Types[:2]
	if _, err := Build(good, bad, PMMinED); err == nil {
		t.Error("short type list accepted")
	}
}
