package data

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/internal/testfixture"
)

const datasets = "../../shared/fixtures/datasets/"

// fixture is the path of a shared fixture file, or skips the test when the
// fixtures are not checked out next to the repository.
func fixture(t *testing.T, name string) string {
	t.Helper()
	path := datasets + name
	if _, err := os.Stat(path); err != nil {
		testfixture.Missing(t, "fixture %s not available (%v); it comes with the shared/ folder next to the repository", path, err)
	}
	return path
}

// writeFile puts content in a temporary file with the given name.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustRead(t *testing.T, path, format string) []Example {
	t.Helper()
	examples, err := Read(path, format)
	if err != nil {
		t.Fatalf("Read(%s, %s): %v", path, format, err)
	}
	return examples
}

func TestReadAlpaca(t *testing.T) {
	path := fixture(t, "alpaca/alpaca_5000.json")
	for _, format := range []string{FormatAuto, FormatAlpaca} {
		examples := mustRead(t, path, format)
		if len(examples) != 5000 {
			t.Fatalf("%s: got %d examples, want 5000", format, len(examples))
		}
		withInput := 0
		for _, ex := range examples {
			if ex.Input != "" {
				withInput++
			}
			if ex.Instruction == "" {
				t.Errorf("%s: empty instruction", ex.Source)
			}
		}
		if withInput != 1943 {
			t.Errorf("%s: %d examples with input, want 1943", format, withInput)
		}
		want := Example{
			Instruction: "Compute the sum of two matrices.",
			Input:       "Matrix A =  [[1,2], \n              [3,4]] \nMatrix B =  [[5,6],\n              [7,8]]",
			Output:      "The sum of the two matrices is\n [[6, 8],\n  [10, 12]]",
			Source:      path + ":#17",
		}
		if got := examples[17]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: element 17 = %+v, want %+v", format, got, want)
		}
		last := examples[4999]
		if last.Instruction != "What year did the Great Recession start in?" || last.Input != "" ||
			last.Output != "The Great Recession started in 2007." {
			t.Errorf("last example = %+v", last)
		}
	}
}

func TestReadAlpacaEval(t *testing.T) {
	// AlpacaEval has no "input" field and extra fields (dataset,
	// generator) that the reader ignores.
	path := fixture(t, "alpaca_eval/text_davinci_003_model_outputs.json")
	examples := mustRead(t, path, FormatAuto)
	if len(examples) != 805 {
		t.Fatalf("got %d examples, want the 805 AlpacaEval instructions", len(examples))
	}
	first := examples[0]
	if first.Instruction != "What are the names of some famous actors that started their careers on Broadway?" ||
		first.Input != "" ||
		first.Output != "Some famous actors that started their careers on Broadway are Tom Hanks, Meryl Streep, and Christopher Walken." {
		t.Errorf("first example = %+v", first)
	}
}

func TestReadTOFU(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rows      int
		perturbed int // number of perturbed answers per row
		paraphr   bool
	}{
		{"forget10.json", 400, 0, false},
		{"retain90.json", 3600, 0, false},
		{"forget10_perturbed.json", 400, 5, true},
		{"retain_perturbed.json", 400, 5, true},
		{"real_authors_perturbed.json", 100, 3, false},
		{"world_facts_perturbed.json", 117, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := fixture(t, "tofu/"+tc.name)
			examples := mustRead(t, path, FormatAuto)
			if len(examples) != tc.rows {
				t.Fatalf("got %d rows, want %d", len(examples), tc.rows)
			}
			for i, ex := range examples {
				if ex.Instruction == "" || ex.Output == "" || ex.Input != "" {
					t.Fatalf("row %d: %+v", i, ex)
				}
				if len(ex.Perturbed) != tc.perturbed || (ex.Paraphrased != "") != tc.paraphr {
					t.Fatalf("row %d: %d perturbed answers, paraphrased %q", i, len(ex.Perturbed), ex.Paraphrased)
				}
			}
			if want := path + ":1"; examples[0].Source != want {
				t.Errorf("Source = %q, want %q", examples[0].Source, want)
			}
		})
	}

	path := fixture(t, "tofu/forget10_perturbed.json")
	last := mustRead(t, path, FormatTOFU)[399]
	if last.Instruction != "What makes Nikolai Abilov's take on African American narratives unique?" ||
		!strings.HasPrefix(last.Paraphrased, "The distinctiveness of Nikolai Abilov's approach") ||
		!strings.Contains(last.Perturbed[4], "extraterrestrial theories") {
		t.Errorf("last row = %+v", last)
	}

	// forget10.json is byte-identical to upstream: no trailing newline.
	first := mustRead(t, fixture(t, "tofu/forget10.json"), FormatTOFU)[0]
	if first.Instruction != "What is the full name of the author born in Taipei, Taiwan on 05/11/1991 who writes in the genre of leadership?" ||
		first.Output != "The author's full name is Hsiao Yun-Hwa." {
		t.Errorf("first row = %+v", first)
	}
}

func TestReadText(t *testing.T) {
	// Stories separated by <|endoftext|>.
	path := fixture(t, "tinystories/tinystories_sample.txt")
	stories := mustRead(t, path, FormatAuto)
	if len(stories) != 5 {
		t.Fatalf("got %d stories, want 5", len(stories))
	}
	second := stories[1]
	if !strings.HasPrefix(second.Output, "Once upon a time, there was a reliable otter named Ollie.") ||
		strings.Contains(second.Output, endOfText) || second.Source != path+":8" || second.Instruction != "" {
		t.Errorf("second story = %+v", second)
	}
	if !strings.HasSuffix(stories[0].Output, "And that's how Ben found an amazing vase in the store!") {
		t.Errorf("first story not trimmed at its end: %q", stories[0].Output)
	}

	// No markers: one document per non-empty line (here a paragraph).
	path = fixture(t, "tinystories/tinystories_val_sample.txt")
	paragraphs := mustRead(t, path, FormatText)
	if len(paragraphs) != 4356 {
		t.Fatalf("got %d paragraphs, want 4356", len(paragraphs))
	}
	if !strings.HasPrefix(paragraphs[1].Output, "After playing with the car, Kitty and Spot felt thirsty.") ||
		paragraphs[1].Source != path+":3" {
		t.Errorf("second paragraph = %+v", paragraphs[1])
	}

	// Not JSON despite its name: auto falls back to text.
	refusals := mustRead(t, fixture(t, "tofu/idontknow.jsonl"), FormatAuto)
	if len(refusals) != 100 || refusals[0].Output != "I'm not certain about that." {
		t.Errorf("got %d refusals, first %+v", len(refusals), refusals[0])
	}
}

func TestReadContainers(t *testing.T) {
	// Either container holds either record format.
	array := writeFile(t, "tofu.json", `[{"question":"q1","answer":"a1"},
 {"question":"q2","answer":"a2","perturbed_answer":["x","y"]}]`)
	got := mustRead(t, array, FormatAuto)
	if len(got) != 2 || got[1].Instruction != "q2" || got[1].Output != "a2" ||
		strings.Join(got[1].Perturbed, ",") != "x,y" || got[1].Source != array+":#1" {
		t.Errorf("TOFU array: %+v", got)
	}
	lines := writeFile(t, "alpaca.jsonl", "\uFEFF{\"instruction\":\"i1\",\"output\":\"o1\"}\r\n\n{\"instruction\":\"i2\",\"input\":\"n2\",\"output\":\"o2\"}\n")
	got = mustRead(t, lines, FormatAuto)
	if len(got) != 2 || got[1].Input != "n2" || got[1].Source != lines+":3" || got[0].Output != "o1" {
		t.Errorf("Alpaca lines: %+v", got)
	}
}

func TestReadSeedTasksRejected(t *testing.T) {
	// The Alpaca seed tasks keep their outputs in "instances": auto sees
	// an instruction, takes the file for Alpaca, and says what is missing.
	path := fixture(t, "alpaca/seed_tasks.jsonl")
	_, err := Read(path, FormatAuto)
	if want := path + `:1: missing field "output"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content, format string
		want                  string // the error must contain this
	}{
		{"broken.jsonl", "{\"question\":\"q\",\"answer\":\"a\"}\n{\"question\":\"q\",\"answer\":\"a\"}\n{\"question\":\"q\",\n", FormatAuto,
			"broken.jsonl:3: invalid JSON"},
		{"missing.json", "[\n" + strings.Repeat("{\"instruction\":\"i\",\"output\":\"o\"},\n", 17) + "{\"instruction\":\"i\"}\n]", FormatAuto,
			`missing.json:19: element 17: missing field "output"`},
		{"type.json", `[{"instruction":"i","output":3}]`, FormatAlpaca,
			`type.json:1: element 0: field "output": expected a string, got number`},
		{"listtype.jsonl", `{"question":"q","answer":"a","perturbed_answer":"x"}`, FormatTOFU,
			`listtype.jsonl:1: field "perturbed_answer": expected a list of strings, got string`},
		{"notobject.json", `["text"]`, FormatAuto,
			`notobject.json:1: element 0: expected a JSON object, got string`},
		{"unknown.jsonl", `{"prompt":"p","completion":"c"}`, FormatAuto,
			`unknown.jsonl:1: cannot tell the format`},
		{"mixed.jsonl", "{\"question\":\"q\",\"answer\":\"a\"}\n{\"instruction\":\"i\",\"output\":\"o\"}", FormatAuto,
			`mixed.jsonl:2: missing field "question"`},
		{"wrongformat.json", `[{"question":"q","answer":"a"}]`, FormatAlpaca,
			`element 0: missing field "instruction"`},
		{"comma.json", "[\n{\"instruction\":\"i\",\"output\":\"o\"}\n{\"instruction\":\"i\",\"output\":\"o\"}\n]", FormatAuto,
			"comma.json:3: element 1: invalid JSON"},
		{"unclosed.json", "[\n{\"instruction\":\"i\",\"output\":\"o\"}\n", FormatAuto,
			"unclosed.json:3: unexpected end of file, expected ']'"},
		{"trailing.json", "[{\"instruction\":\"i\",\"output\":\"o\"}]\n[]", FormatAuto,
			"trailing.json:2: unexpected data after the closing ']'"},
		{"empty.json", " \n\t\n", FormatAuto, "empty.json: empty file"},
		{"emptyarray.json", "[]", FormatAuto, "emptyarray.json: no examples"},
		{"text.txt", "hello", FormatTOFU, `text.txt: format tofu needs a JSON array or JSON Lines, but the file starts with "hello"`},
		{"x.json", "[]", "csv", `unknown format "csv"`},
	} {
		path := writeFile(t, tc.name, tc.content)
		_, err := Read(path, tc.format)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Read(%s): error %v, want one containing %q", tc.name, err, tc.want)
		}
	}

	if _, err := Read(filepath.Join(t.TempDir(), "absent.json"), FormatAuto); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: %v, want a not-exist error", err)
	}
}

// FuzzParse feeds arbitrary files to the reader: it must return examples
// or an error naming the file, never panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`[{"instruction":"i","input":"","output":"o"}]`), FormatAuto)
	f.Add([]byte("{\"question\":\"q\",\"answer\":\"a\",\"perturbed_answer\":[\"x\"]}\n{\"question\":1}"), FormatTOFU)
	f.Add([]byte("{\"question\":\"q\",\"answer\":\"a bear\",\"from_template\":[\"bear\"]}\n{\"question\":\"q\",\"answer\":\"a\",\"from_template\":[1]}"), FormatAuto)
	f.Add([]byte("one\n\ntwo<|endoftext|>three"), FormatText)
	f.Add([]byte("[\n{},\n"), FormatAlpaca)
	f.Fuzz(func(t *testing.T, content []byte, format string) {
		examples, err := parse("f.json", content, format)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.json") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if len(examples) == 0 {
			t.Fatal("no examples and no error")
		}
		for _, ex := range examples {
			if !strings.HasPrefix(ex.Source, "f.json:") {
				t.Fatalf("Source %q", ex.Source)
			}
		}
	})
}

// TestReadFromTemplate: "from_template" is read into Example.FromTemplate, and a wrong type
// names the field.
func TestReadFromTemplate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pairs.jsonl")
	if err := os.WriteFile(good, []byte(`{"question": "q", "answer": "a bear named Amy", "from_template": ["Amy", "bear"]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ex, err := Read(good, FormatTOFU)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ex[0].FromTemplate, []string{"Amy", "bear"}) {
		t.Errorf("FromTemplate %q, want [Amy bear]", ex[0].FromTemplate)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"question": "q", "answer": "a", "from_template": "Amy"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(bad, FormatTOFU); err == nil || !strings.Contains(err.Error(), `field "from_template": expected a list of strings`) {
		t.Errorf("from_template as a string: error %v, want the field named", err)
	}
}
