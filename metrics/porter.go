package metrics

import "strings"

// Stem reduces an English word to its Porter stem the way NLTK's
// PorterStemmer does in its default mode (NLTK_EXTENSIONS), which is the
// stemmer Google's rouge_score uses and so the one behind TOFU's ROUGE
// numbers. NLTK's extensions to Porter's 1980 algorithm are marked below;
// its rule order (the first rule whose suffix matches decides, even when
// its condition then fails) is kept, because stems must match NLTK's
// exactly for scores to be comparable.
//
// The word must be lowercase ASCII letters and digits, as Tokenize gives.
func Stem(word string) string {
	if stem, ok := irregularStem(word); ok { // NLTK extension
		return stem
	}
	if len(word) <= 2 {
		return word
	}
	word = step1a(word)
	word = step1b(word)
	word = step1c(word)
	word = step2(word)
	word = step3(word)
	word = step4(word)
	word = step5a(word)
	return step5b(word)
}

// irregularStem is NLTK's short table of words the rules get wrong.
func irregularStem(word string) (string, bool) {
	switch word {
	case "sky", "skies":
		return "sky", true
	case "dying":
		return "die", true
	case "lying":
		return "lie", true
	case "tying":
		return "tie", true
	case "news":
		return "news", true
	case "innings", "inning":
		return "inning", true
	case "outings", "outing":
		return "outing", true
	case "cannings", "canning":
		return "canning", true
	case "howe", "proceed", "exceed", "succeed":
		return word, true
	}
	return "", false
}

// isConsonant follows the paper: a letter other than a, e, i, o, u, and
// other than a y that follows a consonant.
func isConsonant(word string, i int) bool {
	switch word[i] {
	case 'a', 'e', 'i', 'o', 'u':
		return false
	case 'y':
		return i == 0 || !isConsonant(word, i-1)
	}
	return true
}

// measure is m in the paper's form [C](VC)^m[V]: the number of vowel to
// consonant transitions.
func measure(stem string) int {
	m := 0
	for i := 1; i < len(stem); i++ {
		if !isConsonant(stem, i-1) && isConsonant(stem, i) {
			m++
		}
	}
	return m
}

func containsVowel(stem string) bool {
	for i := range len(stem) {
		if !isConsonant(stem, i) {
			return true
		}
	}
	return false
}

// endsDoubleConsonant is the paper's condition *d.
func endsDoubleConsonant(word string) bool {
	n := len(word)
	return n >= 2 && word[n-1] == word[n-2] && isConsonant(word, n-1)
}

// endsCVC is the paper's condition *o: consonant, vowel, consonant, the
// last not w, x or y. NLTK also counts a two-letter vowel-consonant word.
func endsCVC(word string) bool {
	n := len(word)
	if n == 2 {
		return !isConsonant(word, 0) && isConsonant(word, 1)
	}
	return n >= 3 && isConsonant(word, n-3) && !isConsonant(word, n-2) && isConsonant(word, n-1) &&
		!strings.ContainsRune("wxy", rune(word[n-1]))
}

// rule replaces a suffix when cond holds for the word without the suffix
// (nil cond: always).
type rule struct {
	suffix, replacement string
	cond                func(stem string) bool
}

// applyRules applies the first rule whose suffix matches. If that rule's
// condition fails the word is returned unchanged: later rules are not
// tried.
func applyRules(word string, rules []rule) string {
	for _, r := range rules {
		stem, ok := strings.CutSuffix(word, r.suffix)
		if !ok {
			continue
		}
		if r.cond == nil || r.cond(stem) {
			return stem + r.replacement
		}
		return word
	}
	return word
}

func positiveMeasure(stem string) bool { return measure(stem) > 0 }

func measureAbove1(stem string) bool { return measure(stem) > 1 }

// step1a removes plurals: sses -> ss, ies -> i, s -> "".
func step1a(word string) string {
	if len(word) == 4 && strings.HasSuffix(word, "ies") { // NLTK: dies -> die, not di
		return word[:1] + "ie"
	}
	return applyRules(word, []rule{
		{"sses", "ss", nil},
		{"ies", "i", nil},
		{"ss", "ss", nil},
		{"s", "", nil},
	})
}

// step1b removes -ed and -ing, then repairs the stem (conflat -> conflate,
// hopp -> hop, fil -> file).
func step1b(word string) string {
	if stem, ok := strings.CutSuffix(word, "ied"); ok { // NLTK: died -> die, spied -> spi
		if len(word) == 4 {
			return stem + "ie"
		}
		return stem + "i"
	}
	if stem, ok := strings.CutSuffix(word, "eed"); ok {
		if measure(stem) > 0 {
			return stem + "ee"
		}
		return word
	}
	var stem string
	found := false
	for _, suffix := range []string{"ed", "ing"} {
		if s, ok := strings.CutSuffix(word, suffix); ok && containsVowel(s) {
			stem, found = s, true
			break
		}
	}
	if !found {
		return word
	}
	switch {
	case strings.HasSuffix(stem, "at"), strings.HasSuffix(stem, "bl"), strings.HasSuffix(stem, "iz"):
		return stem + "e"
	case endsDoubleConsonant(stem):
		if strings.ContainsRune("lsz", rune(stem[len(stem)-1])) {
			return stem
		}
		return stem[:len(stem)-1]
	case measure(stem) == 1 && endsCVC(stem):
		return stem + "e"
	}
	return stem
}

// step1c turns a final y into i after a consonant (happy -> happi). NLTK
// requires the consonant and a stem longer than one letter, where the paper
// asks for any vowel in the stem (so enjoy stays enjoy, and spy -> spi).
func step1c(word string) string {
	return applyRules(word, []rule{
		{"y", "i", func(stem string) bool { return len(stem) > 1 && isConsonant(stem, len(stem)-1) }},
	})
}

func step2(word string) string {
	// NLTK applies alli -> al before the other rules and runs step 2 again
	// on the result.
	if stem, ok := strings.CutSuffix(word, "alli"); ok && positiveMeasure(stem) {
		return step2(stem + "al")
	}
	return applyRules(word, []rule{
		{"ational", "ate", positiveMeasure},
		{"tional", "tion", positiveMeasure},
		{"enci", "ence", positiveMeasure},
		{"anci", "ance", positiveMeasure},
		{"izer", "ize", positiveMeasure},
		{"bli", "ble", positiveMeasure}, // Porter's later correction of abli -> able
		{"alli", "al", positiveMeasure},
		{"entli", "ent", positiveMeasure},
		{"eli", "e", positiveMeasure},
		{"ousli", "ous", positiveMeasure},
		{"ization", "ize", positiveMeasure},
		{"ation", "ate", positiveMeasure},
		{"ator", "ate", positiveMeasure},
		{"alism", "al", positiveMeasure},
		{"iveness", "ive", positiveMeasure},
		{"fulness", "ful", positiveMeasure},
		{"ousness", "ous", positiveMeasure},
		{"aliti", "al", positiveMeasure},
		{"iviti", "ive", positiveMeasure},
		{"biliti", "ble", positiveMeasure},
		{"fulli", "ful", positiveMeasure}, // NLTK
		// NLTK: the measure includes the l, so that short stems such as
		// geo- and theo- qualify.
		{"logi", "log", func(stem string) bool { return positiveMeasure(stem + "l") }},
	})
}

func step3(word string) string {
	return applyRules(word, []rule{
		{"icate", "ic", positiveMeasure},
		{"ative", "", positiveMeasure},
		{"alize", "al", positiveMeasure},
		{"iciti", "ic", positiveMeasure},
		{"ical", "ic", positiveMeasure},
		{"ful", "", positiveMeasure},
		{"ness", "", positiveMeasure},
	})
}

func step4(word string) string {
	return applyRules(word, []rule{
		{"al", "", measureAbove1},
		{"ance", "", measureAbove1},
		{"ence", "", measureAbove1},
		{"er", "", measureAbove1},
		{"ic", "", measureAbove1},
		{"able", "", measureAbove1},
		{"ible", "", measureAbove1},
		{"ant", "", measureAbove1},
		{"ement", "", measureAbove1},
		{"ment", "", measureAbove1},
		{"ent", "", measureAbove1},
		{"ion", "", func(stem string) bool {
			return measureAbove1(stem) && strings.ContainsRune("st", rune(stem[len(stem)-1]))
		}},
		{"ou", "", measureAbove1},
		{"ism", "", measureAbove1},
		{"ate", "", measureAbove1},
		{"iti", "", measureAbove1},
		{"ous", "", measureAbove1},
		{"ive", "", measureAbove1},
		{"ize", "", measureAbove1},
	})
}

// step5a removes a final e (probate -> probat, cease -> ceas, rate stays).
// Unlike the other steps both conditions are tried on the same suffix.
func step5a(word string) string {
	stem, ok := strings.CutSuffix(word, "e")
	if !ok {
		return word
	}
	if m := measure(stem); m > 1 || (m == 1 && !endsCVC(stem)) {
		return stem
	}
	return word
}

// step5b turns a final ll into l for long words (controll -> control).
func step5b(word string) string {
	if strings.HasSuffix(word, "ll") && measure(word[:len(word)-1]) > 1 {
		return word[:len(word)-1]
	}
	return word
}
