package pmmined

import (
	"fmt"
	"unicode/utf8"

	"github.com/cmc-dev/cmc/vocab"
)

// TextMapper applies the rule to tokens known only by the text they stand
// for, as a remote engine names the candidates it offers (an OpenAI-style
// "top_logprobs" entry is a piece of text, not an id of a vocabulary cmc
// holds). It runs the text steps of Build (3 to 6 in the package comment)
// and treats a text of one byte that no delta text token spells as a byte
// token, as Build does for a user vocabulary's byte tokens. Special tokens
// are the caller's to recognise: their names are not text.
type TextMapper struct {
	x *deltaIndex
	s Strategy
}

// NewTextMapper indexes delta for mapping texts with strategy s.
func NewTextMapper(delta *vocab.Vocab, s Strategy) (*TextMapper, error) {
	if _, err := ParseStrategy(string(s)); err != nil {
		return nil, err
	}
	if err := delta.Validate(); err != nil {
		return nil, fmt.Errorf("delta %w", err)
	}
	return &TextMapper{x: newDeltaIndex(delta, s == MinED), s: s}, nil
}

// Map returns the delta token for text and the step that chose it; -1 and
// KindNone when the rule finds none.
func (m *TextMapper) Map(text string) (int32, Kind) {
	return m.x.mapText(text, true, m.s)
}

// mapText is the rule's text part. singleByteIsByte says that a text of one
// byte stands for a byte token of its vocabulary (byte-level vocabularies,
// or a remote engine's candidates, whose vocabulary is unknown).
func (x *deltaIndex) mapText(text string, singleByteIsByte bool, s Strategy) (int32, Kind) {
	if text == "" {
		return -1, KindNone
	}
	key := unitKey(text)
	if d := x.exact(key); d >= 0 {
		return d, KindExact
	}
	if d := x.byteToken[text[0]]; d >= 0 {
		// The 256 single-byte tokens of a byte-level vocabulary are its
		// byte tokens. (A SentencePiece text token of one byte is not: the
		// paper's rule treats it as text.)
		if len(text) == 1 && singleByteIsByte {
			return d, KindByte
		}
		// Text the paper's rule cannot compare: it starts in the middle of a
		// character or with an incomplete one.
		if r, size := utf8.DecodeRuneInString(text); r == utf8.RuneError && size == 1 {
			return d, KindLeadByte
		}
	}
	switch s {
	case PMMinED:
		if d, _ := x.nearestPrefix(key, text, true); d >= 0 {
			return d, KindPrefix
		}
	case MinED:
		if d := x.nearestByEdit(key, text); d >= 0 {
			return d, KindEdit
		}
	}
	return -1, KindNone
}

// EndsTurn reports whether piece is the name of a token that ends a turn or
// a text ("</s>", "<|endoftext|>", "<|eot_id|>", "<|im_end|>", ...), the
// names the rule maps to the delta's EOS. A remote engine that prints
// special tokens names its end tokens so among its candidates.
func EndsTurn(piece string) bool { return endsTurn(piece) }
