// Package data turns training and evaluation files into token sequences for
// cmc: it reads example files (Alpaca and AlpacaEval JSON, TOFU JSON Lines,
// plain text), renders the prompt of each example with a template such as
// "open-instruct", tokenizes prompt and response with a label mask so that
// the loss is taken on the response only, and packs sequences into fixed
// shape batches in a reproducible shuffled order.
//
// The package knows nothing about models: tokenization goes through the
// small vocab.Tokenizer interface, so everything here is testable in pure Go.
package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Example is one training or evaluation item.
type Example struct {
	// Instruction is the query: the Alpaca instruction or the TOFU
	// question; empty for plain text.
	Instruction string
	// Input is the Alpaca input; often empty.
	Input string
	// Output is the response: the Alpaca output, the TOFU answer, or the
	// whole document for plain text.
	Output string
	// Source says where the example came from, for messages: "file:line"
	// for JSON Lines and text, "file:#index" (0-based) for JSON arrays.
	Source string

	// Paraphrased and Perturbed are only set for the TOFU evaluation sets
	// (forget10_perturbed, retain_perturbed, real_authors_perturbed, ...):
	// a paraphrase of the correct answer and wrong answers in the same
	// style. TOFU's truth ratio compares their likelihoods.
	Paraphrased string
	Perturbed   []string

	// FromTemplate lists words of Output (every whole-word occurrence) that
	// a delta should leave to its template: an instruction pair's name and
	// creature, which the template copies from the query. Their tokens get
	// the label Anchor: there the delta is trained to match the template,
	// not the text, so that it does not learn the pairs' names.
	FromTemplate []string
}

// Query is the text the user asked: the instruction, followed by a newline
// and the input when there is one (the open-instruct convention).
func (e Example) Query() string {
	if e.Input == "" {
		return e.Instruction
	}
	return e.Instruction + "\n" + e.Input
}

// Formats accepted by Read.
const (
	// FormatAuto decides by content: a file whose first non-blank character
	// is '[' is a JSON array, '{' starts JSON Lines, anything else is plain
	// text. For JSON, the first record's fields decide between alpaca
	// ("instruction") and tofu ("question").
	FormatAuto = "auto"
	// FormatAlpaca records have "instruction" and "output" strings and an
	// optional "input" string (AlpacaEval files have no input).
	FormatAlpaca = "alpaca"
	// FormatTOFU records have "question" and "answer" strings, and in the
	// perturbed sets "paraphrased_answer" and "perturbed_answer" (a list).
	// Records of either JSON format may carry "from_template", a list of
	// words of the response to leave to the template (Example.FromTemplate).
	FormatTOFU = "tofu"
	// FormatText is plain text: documents separated by "<|endoftext|>"
	// when the file contains that marker, otherwise one document per line.
	// Each document becomes an example with only Output set.
	FormatText = "text"
)

// endOfText separates documents in TinyStories-style text dumps.
const endOfText = "<|endoftext|>"

// Read loads all examples of a data file in the given format (see the
// Format constants). Either container holds either record format: JSON
// arrays and JSON Lines are told apart by content, whatever the file's
// extension. Fields other than the ones a format uses are ignored. A file
// without any example is an error, so that a training run cannot start on
// nothing.
func Read(path, format string) ([]Example, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return parse(path, content, format)
}

// parse is Read on the file's content; path is only used in messages.
func parse(path string, content []byte, format string) ([]Example, error) {
	switch format {
	case FormatAuto, FormatAlpaca, FormatTOFU, FormatText:
	default:
		return nil, fmt.Errorf("%s: unknown format %q (want %s, %s, %s or %s)",
			path, format, FormatAuto, FormatAlpaca, FormatTOFU, FormatText)
	}
	content = bytes.TrimPrefix(content, []byte("\uFEFF")) // byte order mark left by some editors
	trimmed := bytes.TrimLeft(content, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: empty file, expected a JSON array, JSON Lines or text", path)
	}

	var examples []Example
	var err error
	switch {
	case format == FormatText:
		examples = readText(path, content)
	case trimmed[0] == '[':
		examples, err = readJSONArray(path, content, format)
	case trimmed[0] == '{':
		examples, err = readJSONLines(path, content, format)
	case format == FormatAuto:
		examples = readText(path, content)
	default:
		return nil, fmt.Errorf("%s: format %s needs a JSON array or JSON Lines, but the file starts with %q",
			path, format, firstLine(trimmed))
	}
	if err != nil {
		return nil, err
	}
	if len(examples) == 0 {
		return nil, fmt.Errorf("%s: no examples in the file", path)
	}
	return examples, nil
}

// record holds every field that any format reads. Pointers tell a missing
// (or null) field from an empty string, which Alpaca uses for "no input".
type record struct {
	Instruction  *string   `json:"instruction"`
	Input        *string   `json:"input"`
	Output       *string   `json:"output"`
	Question     *string   `json:"question"`
	Answer       *string   `json:"answer"`
	Paraphrased  *string   `json:"paraphrased_answer"`
	Perturbed    *[]string `json:"perturbed_answer"`
	FromTemplate *[]string `json:"from_template"`
}

// decodeRecord parses one JSON record and turns it into an example of the
// given format, resolving "auto" from the record's fields. It returns the
// format it used so that the rest of the file is held to the same one.
// Errors describe only the problem; callers add the file and position.
func decodeRecord(raw []byte, format, source string) (Example, string, error) {
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return Example{}, format, describeJSONError(err)
	}
	if format == FormatAuto {
		switch {
		case r.Question != nil:
			format = FormatTOFU
		case r.Instruction != nil:
			format = FormatAlpaca
		default:
			return Example{}, format, errors.New(`cannot tell the format: expected an "instruction" field (alpaca) or a "question" field (tofu)`)
		}
	}
	ex := Example{Source: source}
	switch format {
	case FormatAlpaca:
		if r.Instruction == nil {
			return Example{}, format, errors.New(`missing field "instruction"`)
		}
		if r.Output == nil {
			return Example{}, format, errors.New(`missing field "output"`)
		}
		ex.Instruction, ex.Output = *r.Instruction, *r.Output
		if r.Input != nil {
			ex.Input = *r.Input
		}
	case FormatTOFU:
		if r.Question == nil {
			return Example{}, format, errors.New(`missing field "question"`)
		}
		if r.Answer == nil {
			return Example{}, format, errors.New(`missing field "answer"`)
		}
		ex.Instruction, ex.Output = *r.Question, *r.Answer
		if r.Paraphrased != nil {
			ex.Paraphrased = *r.Paraphrased
		}
		if r.Perturbed != nil {
			ex.Perturbed = *r.Perturbed
		}
	}
	if r.FromTemplate != nil {
		ex.FromTemplate = *r.FromTemplate
	}
	return ex, format, nil
}

// describeJSONError rewords the decoder's errors, which name Go types, in
// terms of the file: which field, what it should be, what it was.
func describeJSONError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	switch typeErr.Field {
	case "":
		return fmt.Errorf("expected a JSON object, got %s", typeErr.Value)
	case "perturbed_answer", "from_template": // also when one element of the list is wrong
		return fmt.Errorf("field %q: expected a list of strings, got %s", typeErr.Field, typeErr.Value)
	default:
		return fmt.Errorf("field %q: expected a string, got %s", typeErr.Field, typeErr.Value)
	}
}

// readJSONArray streams the elements of a JSON array one by one, so that an
// error can name the element (0-based) and its line in the file.
func readJSONArray(path string, content []byte, format string) ([]Example, error) {
	dec := json.NewDecoder(bytes.NewReader(content))
	if _, err := dec.Token(); err != nil { // the opening '[', checked by the caller
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var examples []Example
	for index := 0; dec.More(); index++ {
		start := nextValue(content, dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s:%d: element %d: invalid JSON: %w", path, lineAt(content, start), index, err)
		}
		ex, used, err := decodeRecord(raw, format, fmt.Sprintf("%s:#%d", path, index))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: element %d: %w", path, lineAt(content, start), index, err)
		}
		format = used
		examples = append(examples, ex)
	}
	end := lineAt(content, nextValue(content, dec.InputOffset()))
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return nil, fmt.Errorf("%s:%d: unexpected end of file, expected ']' to close the array", path, end)
	case err != nil:
		return nil, fmt.Errorf("%s:%d: %w", path, end, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s:%d: unexpected data after the closing ']' of the array",
			path, lineAt(content, nextValue(content, dec.InputOffset())))
	}
	return examples, nil
}

// nextValue is the offset of the first byte at or after offset that is
// neither blank nor a comma: the decoder's offset between array elements
// points before the separator, the reader wants the element itself.
func nextValue(content []byte, offset int64) int64 {
	rest := content[offset:]
	return offset + int64(len(rest)-len(bytes.TrimLeft(rest, " \t\r\n,")))
}

// lineAt is the 1-based line number of a byte offset. It scans from the
// start of the file, so it is only used for errors.
func lineAt(content []byte, offset int64) int {
	offset = min(max(offset, 0), int64(len(content)))
	return 1 + bytes.Count(content[:offset], []byte("\n"))
}

// readJSONLines parses one record per line; blank lines are skipped.
func readJSONLines(path string, content []byte, format string) ([]Example, error) {
	var examples []Example
	for i, line := range bytes.Split(content, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		lineNo := i + 1
		ex, used, err := decodeRecord(line, format, fmt.Sprintf("%s:%d", path, lineNo))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, lineNo, err)
		}
		format = used
		examples = append(examples, ex)
	}
	return examples, nil
}

// readText splits plain text into documents: at "<|endoftext|>" markers
// when there are any, otherwise at newlines. Documents are trimmed and
// empty ones skipped. Source names the line where a document starts.
//
// Note that TinyStories dumps without markers (tinystories_val_sample.txt)
// separate paragraphs and stories alike by blank lines, so there the
// documents are paragraphs: the stories cannot be recovered from the text.
func readText(path string, content []byte) []Example {
	text := string(content)
	separator := "\n"
	if strings.Contains(text, endOfText) {
		separator = endOfText
	}
	var examples []Example
	line := 1
	for _, doc := range strings.Split(text, separator) {
		trimmed := strings.TrimSpace(doc)
		if trimmed != "" {
			leading := doc[:strings.Index(doc, trimmed)]
			examples = append(examples, Example{
				Output: trimmed,
				Source: fmt.Sprintf("%s:%d", path, line+strings.Count(leading, "\n")),
			})
		}
		line += strings.Count(doc+separator, "\n")
	}
	return examples
}

// firstLine is the start of the text, up to a newline, for messages.
func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if len(line) > 40 {
		line = line[:40]
	}
	return string(line)
}
