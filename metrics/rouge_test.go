package metrics

import (
	"bufio"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/internal/testfixture"
)

func TestTokenize(t *testing.T) {
	for _, tc := range []struct {
		text string
		stem bool
		want []string
	}{
		{"The cat's hat, 2 Hats!", false, []string{"the", "cat", "s", "hat", "2", "hats"}},
		{"The cat's hat, 2 Hats!", true, []string{"the", "cat", "s", "hat", "2", "hat"}},
		// Accented letters are separators, as in rouge_score.
		{"Café crème brûlée", false, []string{"caf", "cr", "me", "br", "l", "e"}},
		{"Running generously", true, []string{"run", "gener"}},
		{"  \n\t... ", true, nil},
	} {
		if got := Tokenize(tc.text, tc.stem); !slices.Equal(got, tc.want) {
			t.Errorf("Tokenize(%q, %v) = %q, want %q", tc.text, tc.stem, got, tc.want)
		}
	}
}

func TestRougeLByHand(t *testing.T) {
	for _, tc := range []struct {
		reference, candidate string
		stem                 bool
		want                 Score
	}{
		// LCS "the cat on the mat" = 5 of 6 reference and 8 candidate
		// tokens; F = 2PR/(P+R) = 2*(5/8)(5/6)/(5/8+5/6) = 10/14.
		{"the cat sat on the mat", "the cat was lying on the big mat", false,
			Score{Precision: 5.0 / 8, Recall: 5.0 / 6, F: 10.0 / 14}},
		// Order matters: LCS of a b c d and d c b a is 1.
		{"a b c d", "d c b a", false, Score{0.25, 0.25, 0.25}},
		// Stemming makes "cats" and "cat" match; without it only "the".
		{"The cats", "the cat", true, Score{1, 1, 1}},
		{"The cats", "the cat", false, Score{0.5, 0.5, 0.5}},
		{"", "anything", true, Score{}},
		{"something", "!!!", true, Score{}},
		{"alpha beta", "gamma", true, Score{}},
	} {
		got := RougeL(tc.reference, tc.candidate, tc.stem)
		if !closeScore(got, tc.want) {
			t.Errorf("RougeL(%q, %q, %v) = %+v, want %+v", tc.reference, tc.candidate, tc.stem, got, tc.want)
		}
	}
	// Recall is over the reference: a candidate that says everything and
	// more has recall 1.
	if got := RougeLRecall("Hsiao Yun-Hwa", "The author's full name is Hsiao Yun-Hwa."); got != 1 {
		t.Errorf("RougeLRecall = %v, want 1", got)
	}
}

func closeScore(a, b Score) bool {
	const eps = 1e-12
	return math.Abs(a.Precision-b.Precision) < eps && math.Abs(a.Recall-b.Recall) < eps && math.Abs(a.F-b.F) < eps
}

// readTSV returns the tab-separated fields of each line of a golden file,
// skipping comments.
func readTSV(t *testing.T, path string, fields int) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	scanner := bufio.NewScanner(f)
	for line := 1; scanner.Scan(); line++ {
		if strings.HasPrefix(scanner.Text(), "#") {
			continue
		}
		row := strings.Split(scanner.Text(), "\t")
		if len(row) != fields {
			t.Fatalf("%s:%d: %d fields, want %d", path, line, len(row), fields)
		}
		rows = append(rows, row)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestStemMatchesNLTK compares Stem with NLTK's PorterStemmer on the
// 10,000 words of the TOFU data and the examples of Porter's paper
// (testdata/make_golden.py).
func TestStemMatchesNLTK(t *testing.T) {
	rows := readTSV(t, "testdata/porter_nltk.tsv", 2)
	if len(rows) < 10000 {
		t.Fatalf("only %d golden words", len(rows))
	}
	changed, wrong := 0, 0
	for _, row := range rows {
		word, want := row[0], row[1]
		if word != want {
			changed++
		}
		if got := Stem(word); got != want {
			wrong++
			if wrong <= 20 {
				t.Errorf("Stem(%q) = %q, NLTK gives %q", word, got, want)
			}
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d stems differ from NLTK", wrong, len(rows))
	}
	if changed < len(rows)/3 {
		t.Errorf("only %d of %d golden words change under stemming: golden file suspicious", changed, len(rows))
	}
}

// TestRougeLMatchesReference compares RougeL with rouge_score's algorithm
// (and NLTK's stemmer) on the TOFU forget10_perturbed answers against their
// paraphrased and perturbed versions (testdata/make_golden.py).
func TestRougeLMatchesReference(t *testing.T) {
	const fixture = "../../shared/fixtures/datasets/tofu/forget10_perturbed.json"
	if _, err := os.Stat(fixture); err != nil {
		testfixture.Missing(t, "fixture %s not available (%v); it comes with the shared/ folder next to the repository", fixture, err)
	}
	answers := readTOFU(t, fixture)
	rows := readTSV(t, "testdata/rougel_tofu.tsv", 6)
	if len(rows) != 4*len(answers) {
		t.Fatalf("%d golden rows for %d answers", len(rows), len(answers))
	}
	stemDiffers := 0
	for _, row := range rows {
		i, _ := strconv.Atoi(row[0])
		stem := row[2] == "True"
		var want Score
		want.Precision, _ = strconv.ParseFloat(row[3], 64)
		want.Recall, _ = strconv.ParseFloat(row[4], 64)
		want.F, _ = strconv.ParseFloat(row[5], 64)
		candidate := answers[i].paraphrased
		if row[1] == "perturbed0" {
			candidate = answers[i].perturbed0
		}
		got := RougeL(answers[i].answer, candidate, stem)
		if !closeScore(got, want) {
			t.Errorf("row %d %s stem=%v: got %+v, want %+v", i, row[1], stem, got, want)
		}
		if stem && got != RougeL(answers[i].answer, candidate, false) {
			stemDiffers++
		}
	}
	if stemDiffers == 0 {
		t.Error("stemming never changed a score: the test does not exercise it")
	}
}

// FuzzRougeL checks properties that hold for any texts: tokens are
// non-empty runs of a-z and 0-9, scores lie in [0, 1], and swapping the
// texts swaps precision and recall.
func FuzzRougeL(f *testing.F) {
	f.Add("The author's full name is Hsiao Yun-Hwa.", "Hsiao Yun-Hwa is the complete name of the writer.")
	f.Add("generously hopefulness ies ied eed sses yyy", "ion tional alli logi")
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, tok := range Tokenize(a, true) {
			if tok == "" || strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
				t.Fatalf("token %q of %q", tok, a)
			}
		}
		ab, ba := RougeL(a, b, true), RougeL(b, a, true)
		for _, v := range []float64{ab.Precision, ab.Recall, ab.F} {
			if v < 0 || v > 1 {
				t.Fatalf("score %+v out of range", ab)
			}
		}
		if ab.Precision != ba.Recall || ab.Recall != ba.Precision {
			t.Fatalf("RougeL(a, b) = %+v but RougeL(b, a) = %+v", ab, ba)
		}
	})
}
