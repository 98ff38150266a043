package vocab

import (
	"strconv"
	"strings"
)

// ParseBytePiece reads a SentencePiece byte piece "<0xNN>".
func ParseBytePiece(piece string) (byte, bool) {
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
