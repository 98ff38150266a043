package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/evaluate"
)

// TestEvalChecksFilesFirst: a bad --data file, wherever it comes in the
// list, and a bad --reference end the run before any model is loaded (the
// model path here does not exist, so an error about it would mean the
// files were checked too late).
func TestEvalChecksFilesFirst(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("retain_perturbed.json", tofuTestSets["retain"])
	bad := write("broken.json", `{"question":"q","answer":"a"}`+"\n"+`{"question":"q",`+"\n")
	noPerturbed := write("real_authors.json", `{"question":"q","answer":"a"}`+"\n")
	notTOFU := write("notes.txt", "plain text, no question\n")
	reference := write("ref.json", `{"task":"nll","files":[]}`)
	forget := write("forget.json", tofuTestSets["forget"])
	model := filepath.Join(dir, "missing.gguf")

	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"bad second file", []string{"--task", "nll", "--data", good, "--data", bad}, "broken.json"},
		{"real authors without perturbed answers", []string{"--task", "tofu", "--data", good, "--data", noPerturbed}, "real_authors.json:1 has no perturbed_answer"},
		{"two retain sets", []string{"--task", "tofu", "--data", good, "--data", "retain=" + forget}, "both TOFU's retain set"},
		{"records without a question", []string{"--task", "tofu", "--data", good, "--data", notTOFU}, "has no question"},
		{"reference without a forget set to compare", []string{"--task", "tofu", "--data", good, "--reference", reference}, "no forget set among --data"},
		{"reference of another task", []string{"--task", "tofu", "--data", forget, "--reference", reference}, `task "nll"`},
		{"json into a missing directory", []string{"--task", "tofu", "--data", forget, "--json", filepath.Join(dir, "no", "out.json")}, "does not exist"},
	} {
		out, err := cmcCommand(append([]string{"eval", "--model", model}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "missing.gguf") {
			t.Errorf("%s: err %v, output\n%s\nwant an error containing %q, before the model loads", tc.name, err, out, tc.want)
		}
	}
}

// TestEvalSkipsOverLong: an example that does not fit the context is
// skipped with a warning and counted, in the table and in --json, and the
// others are still scored (nll and tofu). --ctx 96 is below llama.cpp's
// batch, which it then caps at 96 while padding the context to 256: an
// example of up to 256 tokens must be skipped too, not abort llama.cpp.
func TestEvalSkipsOverLong(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	dir := t.TempDir()
	long := strings.Repeat("Lily and Tom played in the park with a big red ball. ", 6)
	records := tofuTestSets["retain"] +
		`{"question":"What did they do?","answer":"` + long + `","paraphrased_answer":"They played.","perturbed_answer":["They slept."]}` + "\n"
	path := filepath.Join(dir, "retain_perturbed.json")
	if err := os.WriteFile(path, []byte(records), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{"nll", "tofu"} {
		out := filepath.Join(dir, task+".json")
		cmd := cmcCommand("eval", "--model", model, "--template", "qa", "--task", task, "--threads", "1",
			"--ctx", "96", "--max-tokens", "16", "--data", path, "--json", out)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", task, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "example skipped") || !strings.Contains(stderr.String(), "retain_perturbed.json:3") {
			t.Errorf("%s: no warning naming the skipped example:\n%s", task, stderr.String())
		}
		var doc evaluate.Doc
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		f := doc.Files[0]
		if f.Examples != 2 || len(f.Skipped) != 1 || f.Skipped[0] != path+":3" {
			t.Errorf("%s: %d examples scored, skipped %v; want 2 and the third", task, f.Examples, f.Skipped)
		}
		for _, r := range doc.Results {
			if r.Examples != 2 || r.Skipped != 1 || math.IsNaN(float64(r.User)) {
				t.Errorf("%s: result %+v, want 2 examples, 1 skipped, a value", task, r)
			}
		}
		// The table's examples and skipped columns.
		lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
		if fields := strings.Fields(lines[len(lines)-1]); len(fields) < 2 || fields[len(fields)-2] != "2" || fields[len(fields)-1] != "1" {
			t.Errorf("%s: table does not count 2 scored, 1 skipped:\n%s", task, stdout)
		}
	}
}
