package metrics

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
)

type tofuRow struct {
	answer, paraphrased, perturbed0 string
}

// readTOFU reads a TOFU perturbed-set file (JSON Lines). The data package
// has the real reader; metrics does not depend on it.
func readTOFU(t *testing.T, path string) []tofuRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []tofuRow
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		var r struct {
			Answer      string   `json:"answer"`
			Paraphrased string   `json:"paraphrased_answer"`
			Perturbed   []string `json:"perturbed_answer"`
		}
		if err := json.Unmarshal(scanner.Bytes(), &r); err != nil {
			t.Fatalf("%s line %d: %v", path, len(rows)+1, err)
		}
		rows = append(rows, tofuRow{r.Answer, r.Paraphrased, r.Perturbed[0]})
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}
