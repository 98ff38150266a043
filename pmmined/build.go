package pmmined

import (
	"fmt"
	"math/bits"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cmc-dev/cmc/vocab"
)

// Strategy names a rule for choosing the delta token of a user token.
type Strategy string

const (
	// PMMinED is the paper's rule: exact match, else the prefix candidate
	// (in either direction) at minimum edit distance.
	PMMinED Strategy = "pmmined"
	// MinED is the baseline without the prefix rule: exact match, else the
	// delta token at minimum edit distance in the whole vocabulary.
	MinED Strategy = "mined"
	// Exact is the baseline that maps only tokens with the same text.
	Exact Strategy = "exact"
)

// ParseStrategy checks a strategy name given by a user.
func ParseStrategy(name string) (Strategy, error) {
	switch s := Strategy(name); s {
	case PMMinED, MinED, Exact:
		return s, nil
	}
	return "", fmt.Errorf("unknown token map strategy %q (want %s, %s or %s)", name, PMMinED, MinED, Exact)
}

// Kind records which step of the rule mapped a user token.
type Kind uint8

const (
	// KindNone: unmapped, the delta adds nothing to this token's score.
	KindNone Kind = iota
	// KindSpecial: a special token mapped by role (BOS to BOS, an
	// end-of-turn token to EOS, ...) or by the name of a delta special token.
	KindSpecial
	// KindByte: a token standing for one byte mapped to the delta token for
	// that byte.
	KindByte
	// KindLeadByte: a piece that starts inside a UTF-8 sequence or with an
	// incomplete one (a partial character of byte-level BPE) mapped to the
	// delta byte token of its first byte, the token the delta itself would
	// start that character with if it has no token for the whole character.
	KindLeadByte
	// KindExact: the delta token with the same text.
	KindExact
	// KindPrefix: PM-MinED's candidate, a prefix or extension of the text.
	KindPrefix
	// KindEdit: MinED's nearest token by edit distance.
	KindEdit
	kindCount
)

func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindSpecial:
		return "special"
	case KindByte:
		return "byte"
	case KindLeadByte:
		return "lead-byte"
	case KindExact:
		return "exact"
	case KindPrefix:
		return "prefix"
	case KindEdit:
		return "edit"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Map sends every user token id to a delta token id.
type Map struct {
	Strategy Strategy
	// ToDelta is indexed by user token id; -1 where the token is unmapped.
	ToDelta []int32
	// Kind is indexed by user token id.
	Kind []Kind
	// DeltaSize is the number of tokens in the delta vocabulary.
	DeltaSize int
}

// Exact reports whether user token u stands for the same text or special
// role as its delta token, so that generation can append the delta token to
// the delta's context instead of re-tokenising the text.
func (m *Map) Exact(u int32) bool {
	switch m.Kind[u] {
	case KindSpecial, KindByte, KindExact:
		return m.ToDelta[u] >= 0
	}
	return false
}

// Build maps every token of user onto delta with strategy s.
func Build(user, delta *vocab.Vocab, s Strategy) (*Map, error) {
	if _, err := ParseStrategy(string(s)); err != nil {
		return nil, err
	}
	if err := user.Validate(); err != nil {
		return nil, fmt.Errorf("user %w", err)
	}
	if err := delta.Validate(); err != nil {
		return nil, fmt.Errorf("delta %w", err)
	}
	x := newDeltaIndex(delta, s == MinED)
	m := &Map{
		Strategy:  s,
		ToDelta:   make([]int32, len(user.Pieces)),
		Kind:      make([]Kind, len(user.Pieces)),
		DeltaSize: len(delta.Pieces),
	}
	parallelFor(len(user.Pieces), func(lo, hi int) {
		for u := lo; u < hi; u++ {
			m.ToDelta[u], m.Kind[u] = x.mapToken(user, int32(u), s)
		}
	})
	return m, nil
}

// parallelFor runs body over [0, n) in blocks on every core. Blocks are
// handed out one at a time because their cost varies a lot (MinED).
func parallelFor(n int, body func(lo, hi int)) {
	const block = 256
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				lo := int(next.Add(block)) - block
				if lo >= n {
					return
				}
				body(lo, min(lo+block, n))
			}
		})
	}
	wg.Wait()
}

// mapToken applies the rule to one user token: specials by role, bytes to
// bytes, then text.
func (x *deltaIndex) mapToken(user *vocab.Vocab, u int32, s Strategy) (int32, Kind) {
	if d, ok := x.special(user, u); ok {
		if d < 0 {
			return -1, KindNone
		}
		return d, KindSpecial
	}
	switch user.Type(u) {
	case vocab.TokenUnknown, vocab.TokenUnused:
		// Padding and unused slots stand for no text.
		return -1, KindNone
	case vocab.TokenByte:
		// Byte tokens go to byte tokens even where the delta also has a
		// text token for that character, as the rule says.
		if b, ok := vocab.ParseBytePiece(user.Pieces[u]); ok && x.byteToken[b] >= 0 {
			return x.byteToken[b], KindByte
		}
	}
	return x.mapText(user.Text(u), user.Encoding() == vocab.ByteLevel, s)
}

// special maps user token u if it is a special token: ok is true and d is
// the delta token (-1 when the delta has none for its role).
//
// Roles come first (EOS before BOS, since vocabularies such as GPT-2's give
// one token both roles and the one that matters for scoring is the end).
// A control or user-defined token with the name of a delta special token
// maps to it. One that ends a turn or a text ("<|eot_id|>", "<|im_end|>",
// ...) maps to the delta's EOS, the token the delta predicts where a
// response ends. Any other control token (chat headers, placeholders,
// reserved slots) stays unmapped: its name is a label, not text the model
// writes, so a delta text token would only add noise to its score.
// User-defined tokens are text (llama.cpp matches them literally), so they
// go on to the text rule.
func (x *deltaIndex) special(user *vocab.Vocab, u int32) (d int32, ok bool) {
	switch u {
	case user.EOS:
		return x.delta.EOS, true
	case user.BOS:
		return x.delta.BOS, true
	case user.UNK:
		return x.delta.UNK, true
	case user.PAD:
		return x.delta.PAD, true
	}
	t := user.Type(u)
	if t != vocab.TokenControl && t != vocab.TokenUserDefined {
		return 0, false
	}
	piece := user.Pieces[u]
	if d, ok := x.specialByName[piece]; ok {
		return d, true
	}
	if endsTurn(piece) {
		return x.delta.EOS, true
	}
	if t == vocab.TokenControl {
		return -1, true
	}
	return 0, false
}

// endsTurn recognises the special tokens that models emit to end a turn or
// a text, by the names their tokenizers give them.
func endsTurn(piece string) bool {
	switch piece {
	case "</s>", "<|endoftext|>", "<|end_of_text|>", "<|end|>", "<|eot_id|>", "<|eom_id|>",
		"<|im_end|>", "<end_of_turn>", "<|EOT|>", "<｜end▁of▁sentence｜>":
		return true
	}
	return false
}

// nearestPrefix is PM-MinED's candidate step: among the delta tokens that
// text starts with and those that start with text, the one at minimum
// Levenshtein distance, lowest id on ties; -1 when there is none.
//
// No distance needs computing: when d is a prefix of t their distance is
// len(t)-len(d) (delete the rest, and no edit script is shorter than the
// length difference), and likewise len(d)-len(t) when t is a prefix of d.
// So the best prefix is the longest and the best extension the shortest,
// which the prefix table holds. A bare space ("▁") counts only for a text
// of spaces, when bareSpaceRule is set. It returns the token and its
// distance.
func (x *deltaIndex) nearestPrefix(key, text string, bareSpaceRule bool) (int32, int) {
	allSpaces := !bareSpaceRule || strings.Trim(text, " ") == ""
	textUnits := textUnits(text)
	best, bestDist := int32(-1), 0
	// Walk the table along the text: each node on the way that is a token
	// is a shorter prefix of it; the walk ends where no delta text goes on.
	units := 0
	for i := 0; i < len(key); {
		i += unitSize(key, i)
		units++
		n := x.lookup(key[:i])
		if n == nil {
			break
		}
		if i == len(key) {
			// Text itself is no token (it would have matched exactly), so
			// its best extension is the last candidate.
			if d := n.extension; d >= 0 && (best < 0 || int(n.extensionUnits)-units < bestDist ||
				(int(n.extensionUnits)-units == bestDist && d < best)) {
				best, bestDist = d, int(n.extensionUnits)-units
			}
			break
		}
		if n.token >= 0 && (allSpaces || key[:i] != " ") {
			best, bestDist = n.token, textUnits-units
		}
	}
	return best, bestDist
}

// nearestByEdit is MinED: the delta text token at minimum Levenshtein
// distance from text, lowest id on ties; -1 for an empty delta vocabulary.
// The nearest prefix or extension gives a first bound cheaply. The scan
// then visits delta tokens by growing length difference r, which bounds
// the distance from below, and stops once r exceeds the best distance.
func (x *deltaIndex) nearestByEdit(key, text string) int32 {
	var buf [64]rune
	t := appendUnits(buf[:0], text)
	n := len(t)
	best, bestDist := x.nearestPrefix(key, text, false)
	chars := charSet(t)
	var lev levenshtein
	for r := 0; best < 0 || r <= bestDist; r++ {
		if n-r < 0 && n+r >= len(x.byUnits) {
			break // no delta token is r units longer or shorter
		}
		lengths := []int{n - r, n + r}
		if r == 0 {
			lengths = lengths[:1]
		}
		for _, length := range lengths {
			if length < 0 || length >= len(x.byUnits) {
				continue
			}
			for _, e := range x.byUnits[length] {
				// The largest distance that would still win: a smaller one,
				// or an equal one with a lower id.
				bound := n + length
				if best >= 0 {
					bound = bestDist
					if e.id > best {
						bound--
					}
				}
				// Cheap lower bounds first: the length difference r and
				// the characters one text has and the other lacks.
				if bound < r || max(bits.OnesCount64(chars&^e.chars), bits.OnesCount64(e.chars&^chars)) > bound {
					continue
				}
				if dist := lev.bounded(t, x.unitsOf(e), bound); dist <= bound {
					best, bestDist = e.id, dist
				}
			}
		}
	}
	return best
}
