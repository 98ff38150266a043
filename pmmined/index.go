package pmmined

import (
	"cmp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// deltaIndex answers the questions the mapping rule asks of the delta
// vocabulary without scanning it: which token has this text, which tokens
// are prefixes or extensions of it, which token is this byte or this role.
//
// Text tokens (normal and user-defined ones) are indexed by their unit key
// (see unitKey). Byte, control, unknown and unused tokens are not text
// candidates: a byte token's single byte would otherwise shadow the normal
// token for the same character, and a special token's name is not text.
type deltaIndex struct {
	delta *Vocab
	// exact holds the lowest id for each text token key.
	exact map[string]int32
	// sorted holds every text token by key, then id, so that the tokens
	// extending a key form one run.
	sorted []indexEntry
	// byteToken is the delta token for each byte: its byte token "<0xNN>",
	// else (byte-level vocabularies) the text token of that single byte;
	// -1 if neither exists.
	byteToken [256]int32
	// specialByName holds the lowest id for the piece of each special token.
	specialByName map[string]int32

	// For MinED only: text tokens grouped by length in units, ids ascending,
	// with their units stored back to back.
	byUnits [][]indexEntry
	units   []rune
}

type indexEntry struct {
	key   string
	id    int32
	units int32  // text length in units
	start int32  // MinED only: offset of the units in deltaIndex.units
	chars uint64 // MinED only: charSet of the units
}

func newDeltaIndex(delta *Vocab, forMinED bool) *deltaIndex {
	x := &deltaIndex{
		delta:         delta,
		exact:         make(map[string]int32, len(delta.Pieces)),
		specialByName: make(map[string]int32),
	}
	for b := range x.byteToken {
		x.byteToken[b] = -1
	}
	for i := range delta.Pieces {
		id := int32(i)
		isRole := id == delta.BOS || id == delta.EOS || id == delta.UNK || id == delta.PAD
		switch t := delta.Type(id); {
		case isRole || t == TokenControl || t == TokenUnknown:
			if _, seen := x.specialByName[delta.Pieces[id]]; !seen {
				x.specialByName[delta.Pieces[id]] = id
			}
		case t == TokenByte:
			if b, ok := parseByteToken(delta.Pieces[id]); ok && x.byteToken[b] < 0 {
				x.byteToken[b] = id
			}
		case t == TokenNormal || t == TokenUserDefined:
			text := delta.Text(id)
			if text == "" {
				continue
			}
			key := unitKey(text)
			if _, seen := x.exact[key]; !seen {
				x.exact[key] = id
			}
			x.sorted = append(x.sorted, indexEntry{key: key, id: id, units: int32(textUnits(text))})
		}
	}
	for b := range x.byteToken {
		if x.byteToken[b] < 0 {
			if id, ok := x.exact[unitKey(string([]byte{byte(b)}))]; ok {
				x.byteToken[b] = id
			}
		}
	}
	if forMinED {
		x.groupByUnits()
	}
	slices.SortFunc(x.sorted, func(a, b indexEntry) int {
		return cmp.Or(strings.Compare(a.key, b.key), cmp.Compare(a.id, b.id))
	})
	return x
}

// groupByUnits prepares the MinED scan; x.sorted is still in id order.
func (x *deltaIndex) groupByUnits() {
	for _, e := range x.sorted {
		e.start = int32(len(x.units))
		x.units = appendUnits(x.units, x.delta.Text(e.id))
		e.chars = charSet(x.unitsOf(e))
		for len(x.byUnits) <= int(e.units) {
			x.byUnits = append(x.byUnits, nil)
		}
		x.byUnits[e.units] = append(x.byUnits[e.units], e)
	}
}

func (x *deltaIndex) unitsOf(e indexEntry) []rune {
	return x.units[e.start : e.start+e.units]
}

// charSet hashes each unit to one of 64 bits. An edit removes at most one
// unit and adds at most one, so the distance between two texts is at least
// the number of bits set in either set but not in the other.
func charSet(units []rune) uint64 {
	var set uint64
	for _, u := range units {
		set |= 1 << (uint32(u) * 0x9E3779B1 >> 26)
	}
	return set
}

// lowerBound returns the index of the first sorted key not below key.
func (x *deltaIndex) lowerBound(key string) int {
	return sort.Search(len(x.sorted), func(i int) bool { return x.sorted[i].key >= key })
}

// invalidByteUnit is added to a byte that is not part of valid UTF-8 to
// make it a unit distinct from every Unicode character.
const invalidByteUnit = utf8.MaxRune + 1

// appendUnits appends the units of text: its characters, and each byte
// that is not valid UTF-8 as a unit of its own.
func appendUnits(dst []rune, text string) []rune {
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			r = invalidByteUnit + rune(text[i])
		}
		dst = append(dst, r)
		i += size
	}
	return dst
}

// unitKey spells text so that one key is a byte prefix of another exactly
// when the first text is a prefix of the second in units. Valid UTF-8 is its
// own key (UTF-8 never splits a character when one valid string prefixes
// another); a stray byte b becomes 0xFF b, a code no UTF-8 character starts
// with, so a prefix can never end in the middle of a character.
func unitKey(text string) string {
	if utf8.ValidString(text) {
		return text
	}
	key := make([]byte, 0, len(text)+4)
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			key = append(key, 0xFF, text[i])
		} else {
			key = append(key, text[i:i+size]...)
		}
		i += size
	}
	return string(key)
}

// unitSize returns the length in bytes of the unit of key at byte i.
func unitSize(key string, i int) int {
	if key[i] == 0xFF {
		return 2
	}
	_, size := utf8.DecodeRuneInString(key[i:])
	return size
}
