package pmmined

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TokenType is the kind of a vocabulary entry, numbered as in GGUF's
// tokenizer.ggml.token_type and SentencePiece's ModelProto.
type TokenType int32

// Token types. A vocabulary without types treats every token as normal,
// except that its role tokens count as control tokens and, for SentencePiece,
// pieces spelled "<0xNN>" count as byte tokens.
const (
	TokenNormal      TokenType = 1
	TokenUnknown     TokenType = 2
	TokenControl     TokenType = 3
	TokenUserDefined TokenType = 4
	TokenUnused      TokenType = 5
	TokenByte        TokenType = 6
)

// Encoding says how a vocabulary's pieces spell the text they stand for.
type Encoding uint8

const (
	// SentencePiece pieces are UTF-8 text with "▁" (U+2581) for a space;
	// byte tokens are spelled "<0xNN>" (gguf tokenizer models "llama", "t5"
	// and, as llama.cpp converts it, "bert").
	SentencePiece Encoding = iota + 1
	// ByteLevel pieces spell bytes through GPT-2's byte-to-unicode table,
	// "Ġ" for a space and "Ċ" for a newline (gguf tokenizer model "gpt2":
	// GPT-2, Llama-3, Qwen, DeepSeek, Falcon, ...).
	ByteLevel
)

func (e Encoding) String() string {
	switch e {
	case SentencePiece:
		return "sentencepiece"
	case ByteLevel:
		return "byte-level"
	}
	return "encoding(" + strconv.Itoa(int(e)) + ")"
}

// Vocab is a tokenizer's vocabulary as far as token mapping needs it: the
// pieces by token id, their types, how pieces spell text, and which ids play
// the special roles (-1 when a role is absent).
type Vocab struct {
	Pieces   []string
	Types    []TokenType // nil: see the token type constants
	Encoding Encoding
	BOS      int32
	EOS      int32
	UNK      int32
	PAD      int32
}

// Validate reports a vocabulary that Build cannot use.
func (v *Vocab) Validate() error {
	if len(v.Pieces) == 0 {
		return fmt.Errorf("vocabulary has no tokens")
	}
	if v.Types != nil && len(v.Types) != len(v.Pieces) {
		return fmt.Errorf("vocabulary has %d token types for %d tokens", len(v.Types), len(v.Pieces))
	}
	if v.Encoding != SentencePiece && v.Encoding != ByteLevel {
		return fmt.Errorf("vocabulary has unknown encoding %d", v.Encoding)
	}
	for _, r := range []struct {
		name string
		id   int32
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"UNK", v.UNK}, {"PAD", v.PAD}} {
		if r.id < -1 || int(r.id) >= len(v.Pieces) {
			return fmt.Errorf("vocabulary %s id %d is outside [0, %d)", r.name, r.id, len(v.Pieces))
		}
	}
	return nil
}

// Type returns the type of token id, inferring it when the vocabulary has
// no types.
func (v *Vocab) Type(id int32) TokenType {
	if v.Types != nil {
		return v.Types[id]
	}
	if id == v.BOS || id == v.EOS || id == v.UNK || id == v.PAD {
		return TokenControl
	}
	if v.Encoding == SentencePiece {
		if _, ok := parseByteToken(v.Pieces[id]); ok {
			return TokenByte
		}
	}
	return TokenNormal
}

// Text returns the bytes token id stands for. Normal tokens are decoded
// through the vocabulary's encoding; user-defined and control tokens of a
// byte-level vocabulary are taken as written, as llama.cpp does when it
// turns them back into text. The result need not be valid UTF-8: a
// byte-level piece can hold part of a multi-byte character.
func (v *Vocab) Text(id int32) string {
	piece := v.Pieces[id]
	switch t := v.Type(id); {
	case t == TokenByte:
		if b, ok := parseByteToken(piece); ok {
			return string([]byte{b})
		}
		return piece
	case v.Encoding == SentencePiece:
		return strings.ReplaceAll(piece, "▁", " ")
	case t == TokenNormal:
		return decodeByteLevel(piece)
	}
	return piece
}

// Display returns token id in a form fit for a terminal: special tokens as
// their piece, text tokens as a Go-quoted string of their text, so that
// spaces, newlines and stray bytes are visible.
func (v *Vocab) Display(id int32) string {
	if id < 0 || int(id) >= len(v.Pieces) {
		return "-"
	}
	switch v.Type(id) {
	case TokenControl, TokenUnknown, TokenUnused:
		return v.Pieces[id]
	}
	return strconv.Quote(v.Text(id))
}

// parseByteToken reads a SentencePiece byte piece "<0xNN>".
func parseByteToken(piece string) (byte, bool) {
	if len(piece) != 6 || !strings.HasPrefix(piece, "<0x") || piece[5] != '>' {
		return 0, false
	}
	n, err := strconv.ParseUint(piece[3:5], 16, 8)
	if err != nil {
		return 0, false
	}
	return byte(n), true
}

// GPT-2's byte-to-unicode table makes every byte printable: the printable
// Latin-1 bytes stand for themselves, and the other 68 (0x00-0x20,
// 0x7F-0xA0 and 0xAD, in this order) are moved to U+0100 and up.
func byteLevelRune(b byte) rune {
	switch {
	case b <= 0x20:
		return 0x100 + rune(b)
	case b >= 0x7F && b <= 0xA0:
		return 0x100 + 0x21 + rune(b-0x7F)
	case b == 0xAD:
		return 0x100 + 0x21 + 0x22
	}
	return rune(b)
}

// byteLevelByte inverts byteLevelRune; ok is false for a rune outside the
// table.
func byteLevelByte(r rune) (b byte, ok bool) {
	switch {
	case r >= 0x100 && r <= 0x120:
		return byte(r - 0x100), true
	case r >= 0x121 && r <= 0x142:
		return byte(r-0x121) + 0x7F, true
	case r == 0x143:
		return 0xAD, true
	case r <= 0xFF && r != 0xAD && (r > 0x20 && (r < 0x7F || r > 0xA0)):
		return byte(r), true
	}
	return 0, false
}

// EncodeByteLevel spells raw token bytes the way byte-level BPE vocabularies
// (and GGUF files of such models) store them.
func EncodeByteLevel(text []byte) string {
	var sb strings.Builder
	sb.Grow(2 * len(text))
	for _, b := range text {
		sb.WriteRune(byteLevelRune(b))
	}
	return sb.String()
}

// decodeByteLevel undoes EncodeByteLevel. A piece with a character outside
// the table is not byte-level text (some vocabularies store added tokens
// literally), so it is returned unchanged.
func decodeByteLevel(piece string) string {
	out := make([]byte, 0, len(piece))
	for _, r := range piece {
		b, ok := byteLevelByte(r)
		if !ok {
			return piece
		}
		out = append(out, b)
	}
	return string(out)
}

// textUnits counts the units edit distances are measured in: Unicode
// characters, with each byte that is not part of valid UTF-8 a unit of its own.
func textUnits(text string) int {
	return utf8.RuneCountInString(text)
}
