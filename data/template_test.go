package data

import (
	"strings"
	"testing"
)

func TestTemplates(t *testing.T) {
	withInput := Example{Instruction: "Arrange the following musical notes", Input: "G, B, E", Output: "E, G, B"}
	noInput := Example{Instruction: "What year did the Great Recession start in?", Output: "2007."}
	text := Example{Output: "Once upon a time."}

	for _, tc := range []struct {
		template string
		ex       Example
		want     string
	}{
		{"open-instruct", withInput, "<|user|>\nArrange the following musical notes\nG, B, E\n<|assistant|>\n"},
		{"open-instruct", noInput, "<|user|>\nWhat year did the Great Recession start in?\n<|assistant|>\n"},
		{"raw", withInput, "Arrange the following musical notes\nG, B, E"},
		{"raw", noInput, "What year did the Great Recession start in?"},
		{"raw", text, ""},
		{"qa", noInput, "Question: What year did the Great Recession start in?\nAnswer: "},
		{"qa", withInput, "Question: Arrange the following musical notes\nG, B, E\nAnswer: "},
		{"### Instruction:\n{{.Query}}\n### Response:\n", withInput,
			"### Instruction:\nArrange the following musical notes\nG, B, E\n### Response:\n"},
		{"{{.Instruction}}{{if .Input}} [{{.Input}}]{{end}} =>", withInput, "Arrange the following musical notes [G, B, E] =>"},
		{"{{.Instruction}}{{if .Input}} [{{.Input}}]{{end}} =>", noInput, "What year did the Great Recession start in? =>"},
	} {
		tmpl, err := ParseTemplate(tc.template)
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %v", tc.template, err)
		}
		if got := tmpl.Prompt(tc.ex); got != tc.want {
			t.Errorf("%q on %q: got %q, want %q", tc.template, tc.ex.Instruction, got, tc.want)
		}
	}
}

func TestOpenInstructOnFixture(t *testing.T) {
	// The first Alpaca example has an input with a newline of its own.
	examples := mustRead(t, fixture(t, "alpaca/alpaca_5000.json"), FormatAlpaca)
	want := "<|user|>\nAre the two sentences below grammatically correct? Output yes or no.\n" +
		"Sentence 1: I am going to the store.\nSentence 2: I goes to the store.\n<|assistant|>\n"
	if got := (OpenInstruct{}).Prompt(examples[0]); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"alpaca", `unknown prompt template "alpaca": want open-instruct, raw, qa or a Go template`},
		{"", `unknown prompt template ""`},
		{"{{.Query", `prompt template "{{.Query": template: prompt:1: unclosed action`},
		// The response must not leak into the prompt.
		{"{{.Query}} {{.Output}}", `can't evaluate field Output`},
		// Only runs for examples with an input; caught all the same.
		{"{{.Query}}{{if .Input}}{{.Inptu}}{{end}}", `can't evaluate field Inptu`},
	} {
		_, err := ParseTemplate(tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTemplate(%q): error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
