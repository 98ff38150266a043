package pmmined_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/vocab"
)

// subset keeps about frac of v's tokens (roles are kept when drawn, else
// dropped), so that candidate sets have holes a full vocabulary lacks.
func subset(v *vocab.Vocab, frac float64, rng *rand.Rand) *vocab.Vocab {
	s := &vocab.Vocab{Model: v.Model, BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	for i := range v.Pieces {
		id := int32(i)
		if rng.Float64() >= frac {
			continue
		}
		n := int32(len(s.Pieces))
		for _, r := range []struct{ from, to *int32 }{{&v.BOS, &s.BOS}, {&v.EOS, &s.EOS}, {&v.UNK, &s.UNK}, {&v.PAD, &s.PAD}} {
			if *r.from == id {
				*r.to = n
			}
		}
		s.Pieces = append(s.Pieces, v.Pieces[id])
		s.Types = append(s.Types, v.Type(id))
	}
	return s
}

// units splits text into characters, each invalid byte a unit of its own
// (as a value no character has).
func units(text string) []rune {
	var u []rune
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			r = utf8.MaxRune + 1 + rune(text[i])
		}
		u = append(u, r)
		i += size
	}
	return u
}

// levenshtein is the textbook distance over units.
func levenshtein(a, b []rune) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j-1]+cost, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// plainScan is METHOD.md's steps 2-5 written as the paper's reference code
// does them, scanning the whole delta vocabulary for every user token:
// exact match, else the candidate (the text starts with it or it starts
// with the text; a bare space only for a text of spaces) at minimum
// Levenshtein distance, lowest id on ties; MinED drops the candidate
// condition. Prefixes are taken over units, so a candidate never ends
// inside a character.
type plainScan struct {
	ids   []int32
	texts []string
	units [][]rune
}

func newPlainScan(delta *vocab.Vocab) *plainScan {
	p := &plainScan{}
	for i := range delta.Pieces {
		id := int32(i)
		if t := delta.Type(id); (t == vocab.TokenNormal || t == vocab.TokenUserDefined) &&
			id != delta.BOS && id != delta.EOS && id != delta.UNK && id != delta.PAD {
			p.ids = append(p.ids, id)
			p.texts = append(p.texts, delta.Text(id))
			p.units = append(p.units, units(delta.Text(id)))
		}
	}
	return p
}

// hasPrefix reports whether prefix is a prefix of s in units.
func hasPrefix(s, prefix []rune) bool {
	if len(prefix) > len(s) {
		return false
	}
	for i := range prefix {
		if s[i] != prefix[i] {
			return false
		}
	}
	return true
}

func (p *plainScan) mapText(text string, s pmmined.Strategy) (int32, pmmined.Kind) {
	for i, dt := range p.texts {
		if dt == text {
			return p.ids[i], pmmined.KindExact
		}
	}
	t := units(text)
	best, bestDist := int32(-1), 0
	for i, dt := range p.texts {
		if s == pmmined.PMMinED {
			related := hasPrefix(t, p.units[i]) || hasPrefix(p.units[i], t)
			if !related || (dt == " " && strings.Trim(text, " ") != "") {
				continue
			}
		}
		if d := levenshtein(t, p.units[i]); best < 0 || d < bestDist {
			best, bestDist = p.ids[i], d
		}
	}
	if best < 0 {
		return -1, pmmined.KindNone
	}
	if s == pmmined.MinED {
		return best, pmmined.KindEdit
	}
	return best, pmmined.KindPrefix
}

// TestIndexEqualsPlainScan checks the fast index against a plain scan on
// random subsets of real vocabularies, for every user token that the text
// rule decides. Subsets drop byte tokens too, so that some partial
// characters reach the text rule.
func TestIndexEqualsPlainScan(t *testing.T) {
	cases := []struct {
		user, delta         *vocabFixture
		userFrac, deltaFrac float64
		strategy            pmmined.Strategy
	}{
		{mistral, llama2, 0.05, 0.3, pmmined.PMMinED},
		{llama3, llama2, 0.01, 0.3, pmmined.PMMinED},
		{llama2, gpt2, 0.05, 0.2, pmmined.PMMinED},
		{qwen, llama3, 0.01, 0.05, pmmined.PMMinED},
		{llama3, gpt2, 0.01, 0.3, pmmined.PMMinED},
		{llama2, gpt2, 0.005, 0.1, pmmined.MinED},
		{mistral, llama2, 0.01, 0.1, pmmined.MinED},
		{gpt2, llama2, 0.005, 0.1, pmmined.MinED},
	}
	for i, c := range cases {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		user := subset(c.user.load(t), c.userFrac, rng)
		delta := subset(c.delta.load(t), c.deltaFrac, rng)
		m, err := pmmined.Build(user, delta, c.strategy)
		if err != nil {
			t.Fatal(err)
		}
		scan := newPlainScan(delta)
		checkKinds(t, m, user, delta)
		checked, mapped := 0, 0
		for u := range user.Pieces {
			id := int32(u)
			text := user.Text(id)
			// Specials and the byte steps come before the text rule (and
			// checkKinds has checked what they promise).
			if user.Type(id) != vocab.TokenNormal || id == user.EOS || id == user.BOS ||
				m.Kind[id] == pmmined.KindByte || m.Kind[id] == pmmined.KindLeadByte {
				continue
			}
			wantD, wantK := scan.mapText(text, c.strategy)
			if m.ToDelta[id] != wantD || m.Kind[id] != wantK {
				t.Errorf("%s onto %s (%s): %s -> %d %s (%s), plain scan gives %d %s (%s)",
					c.user.path, c.delta.path, c.strategy, user.Display(id), m.ToDelta[id], delta.Display(m.ToDelta[id]), m.Kind[id],
					wantD, delta.Display(wantD), wantK)
			}
			checked++
			if wantK == pmmined.KindPrefix || wantK == pmmined.KindEdit {
				mapped++
			}
		}
		t.Logf("%s onto %s (%s): %d tokens checked, %d by the candidate rule", c.user.path, c.delta.path, c.strategy, checked, mapped)
		if mapped == 0 {
			t.Errorf("%s onto %s: no token reached the candidate rule; the check proves nothing", c.user.path, c.delta.path)
		}
	}
}
