package data

import (
	"fmt"
	"strings"
	"text/template"
)

// Template renders the prompt of an example: the text that comes before the
// response. The BOS token is never part of the text; Encode adds it.
type Template interface {
	Prompt(ex Example) string
}

// OpenInstruct is the prompt format the CMC delta models are trained with:
// "<|user|>\n" + query + "\n<|assistant|>\n".
type OpenInstruct struct{}

// Prompt implements Template.
func (OpenInstruct) Prompt(ex Example) string {
	return "<|user|>\n" + ex.Query() + "\n<|assistant|>\n"
}

// Raw uses the query itself as the prompt, so that plain text (which has no
// query) is trained on as it is.
type Raw struct{}

// Prompt implements Template.
func (Raw) Prompt(ex Example) string { return ex.Query() }

// QA is the "Question: ...\nAnswer: " format, for TOFU-style question
// answering without a chat template (TOFU's Phi prompt). Its trailing space
// and the answer's first word are one token in the joined text ("▁The" in
// SentencePiece, " The" in byte-level BPE): `cmc eval` scores that token with
// the prompt, as TOFU's label mask does; Encode trains on it, since
// generation heals the trailing space and the model writes that token.
type QA struct{}

// Prompt implements Template.
func (QA) Prompt(ex Example) string {
	return "Question: " + ex.Query() + "\nAnswer: "
}

// promptFields are what a custom template can use. The response is left
// out on purpose: a prompt that contains its own answer would train a model
// to copy.
type promptFields struct {
	Instruction, Input, Query string
}

// goTemplate is a user's text/template prompt.
type goTemplate struct {
	text string
	tmpl *template.Template
}

// Prompt implements Template. ParseTemplate has executed the template on
// empty and non-empty fields, so a failure here means the template's output
// depends on the text in a way that breaks it (e.g. indexing past the end of
// a short input), which is a bug in the template the user must fix.
func (g goTemplate) Prompt(ex Example) string {
	var sb strings.Builder
	fields := promptFields{Instruction: ex.Instruction, Input: ex.Input, Query: ex.Query()}
	if err := g.tmpl.Execute(&sb, fields); err != nil {
		panic(fmt.Sprintf("prompt template %q on %s: %v", g.text, ex.Source, err))
	}
	return sb.String()
}

// Template names accepted by ParseTemplate.
const (
	TemplateOpenInstruct = "open-instruct"
	TemplateRaw          = "raw"
	TemplateQA           = "qa"
)

// ParseTemplate resolves a template given by a user: one of the names
// "open-instruct", "raw" and "qa", or a Go text/template (anything that
// contains "{{") over the fields .Instruction, .Input and .Query, e.g.
// "### Instruction:\n{{.Query}}\n### Response:\n". The text is used as it
// is: backslash escapes are not interpreted.
func ParseTemplate(name string) (Template, error) {
	switch name {
	case TemplateOpenInstruct:
		return OpenInstruct{}, nil
	case TemplateRaw:
		return Raw{}, nil
	case TemplateQA:
		return QA{}, nil
	}
	if !strings.Contains(name, "{{") {
		return nil, fmt.Errorf("unknown prompt template %q: want %s, %s, %s or a Go template containing {{.Query}}",
			name, TemplateOpenInstruct, TemplateRaw, TemplateQA)
	}
	tmpl, err := template.New("prompt").Parse(name)
	if err != nil {
		return nil, fmt.Errorf("prompt template %q: %w", name, err)
	}
	// Field names are only checked when a template runs, and branches such
	// as {{if .Input}} only run for some examples: try both kinds now so
	// that mistakes show up before training starts.
	for _, fields := range []promptFields{{}, {Instruction: "i", Input: "n", Query: "i\nn"}} {
		if err := tmpl.Execute(new(strings.Builder), fields); err != nil {
			return nil, fmt.Errorf("prompt template %q: %w (fields are .Instruction, .Input and .Query)", name, err)
		}
	}
	return goTemplate{text: name, tmpl: tmpl}, nil
}
