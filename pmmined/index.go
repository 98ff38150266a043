package pmmined

import (
	"unicode/utf8"

	"github.com/cmc-dev/cmc/vocab"
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
	delta *vocab.Vocab
	// prefixes holds a node for every text token key and every proper
	// prefix of one (at unit boundaries): a trie of the delta's texts whose
	// nodes are found by their path.
	prefixes map[string]int32
	nodes    []prefixNode
	// texts lists the text tokens in id order.
	texts []indexEntry
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

// prefixNode describes a text that is the key of a delta text token or a
// proper prefix of one.
type prefixNode struct {
	// token is the lowest id of the text token with exactly this key, -1
	// if the key is only a prefix.
	token int32
	// extension is the best token that properly extends the key: the one
	// with the fewest units, then the lowest id; -1 if none.
	extension      int32
	extensionUnits int32
}

type indexEntry struct {
	key   string
	id    int32
	units int32  // text length in units
	start int32  // MinED only: offset of the units in deltaIndex.units
	chars uint64 // MinED only: charSet of the units
}

func newDeltaIndex(delta *vocab.Vocab, forMinED bool) *deltaIndex {
	x := &deltaIndex{
		delta:         delta,
		prefixes:      make(map[string]int32, 4*len(delta.Pieces)),
		specialByName: make(map[string]int32),
	}
	for b := range x.byteToken {
		x.byteToken[b] = -1
	}
	for i := range delta.Pieces {
		id := int32(i)
		isRole := id == delta.BOS || id == delta.EOS || id == delta.UNK || id == delta.PAD
		switch t := delta.Type(id); {
		case isRole || t == vocab.TokenControl || t == vocab.TokenUnknown:
			if _, seen := x.specialByName[delta.Pieces[id]]; !seen {
				x.specialByName[delta.Pieces[id]] = id
			}
		case t == vocab.TokenByte:
			if b, ok := vocab.ParseBytePiece(delta.Pieces[id]); ok && x.byteToken[b] < 0 {
				x.byteToken[b] = id
			}
		case t == vocab.TokenNormal || t == vocab.TokenUserDefined:
			text := delta.Text(id)
			if text == "" {
				continue
			}
			e := indexEntry{key: unitKey(text), id: id, units: int32(textUnits(text))}
			x.texts = append(x.texts, e)
			x.addText(e)
		}
	}
	for b := range x.byteToken {
		if x.byteToken[b] < 0 {
			if id := x.exact(unitKey(string([]byte{byte(b)}))); id >= 0 {
				x.byteToken[b] = id
			}
		}
	}
	if forMinED {
		x.groupByUnits()
	}
	return x
}

// addText enters a text token into the prefix table. Tokens come in id
// order, so the first token seen wins a tie.
func (x *deltaIndex) addText(e indexEntry) {
	units := int32(0)
	for i := 0; i < len(e.key); {
		i += unitSize(e.key, i)
		units++
		n := x.node(e.key[:i])
		if i == len(e.key) {
			if n.token < 0 {
				n.token = e.id
			}
			break
		}
		if n.extension < 0 || e.units < n.extensionUnits {
			n.extension, n.extensionUnits = e.id, e.units
		}
	}
}

// node returns the node of key, creating it.
func (x *deltaIndex) node(key string) *prefixNode {
	i, ok := x.prefixes[key]
	if !ok {
		i = int32(len(x.nodes))
		x.nodes = append(x.nodes, prefixNode{token: -1, extension: -1})
		x.prefixes[key] = i
	}
	return &x.nodes[i]
}

// lookup returns the node of key, or nil when no delta text starts with key.
func (x *deltaIndex) lookup(key string) *prefixNode {
	if i, ok := x.prefixes[key]; ok {
		return &x.nodes[i]
	}
	return nil
}

// exact returns the lowest id of the text token with this key, or -1.
func (x *deltaIndex) exact(key string) int32 {
	if n := x.lookup(key); n != nil {
		return n.token
	}
	return -1
}

// groupByUnits prepares the MinED scan.
func (x *deltaIndex) groupByUnits() {
	for _, e := range x.texts {
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
// the number of bits that the first set has and the second lacks, and the
// other way round.
func charSet(units []rune) uint64 {
	var set uint64
	for _, u := range units {
		set |= 1 << (uint32(u) * 0x9E3779B1 >> 26)
	}
	return set
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
