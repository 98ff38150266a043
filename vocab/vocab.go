// Package vocab is the one model of a tokenizer's vocabulary in cmc: the
// pieces by token id with their scores, types and BPE merges, the tokenizer
// model and pre-tokenizer names, the special token ids, and how the pieces
// spell text. The gguf package reads and writes it (the tokenizer.ggml.*
// keys), pmmined maps one vocabulary onto another with it, and vocabfile
// makes it from SentencePiece and tiktoken files too. Tokenizer is the one
// interface of a model's tokenizer (llama.cpp's vocabulary satisfies it)
// that generation, training data and evaluation are written against.
//
// It is pure Go and imports nothing else of cmc, so that every package can
// use it.
package vocab

import (
	"fmt"
	"strconv"
	"strings"
)

// Tokenizer turns text into a model's token ids and ids back into text.
type Tokenizer interface {
	// Tokenize splits text into tokens. addSpecial asks for the model's
	// BOS/EOS around the text; parseSpecial lets text such as "<s>" become
	// the special token instead of plain characters.
	Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error)
	// AppendPiece appends the bytes token id stands for (control tokens
	// only when special is set).
	AppendPiece(dst []byte, id int32, special bool) []byte
}

// TokenType is the kind of a vocabulary entry, numbered as llama.cpp's
// token attributes in GGUF's tokenizer.ggml.token_type and as
// SentencePiece's ModelProto numbers them.
type TokenType int32

// Token types. A vocabulary without types treats every token as normal,
// except that its role tokens count as control tokens and, for SentencePiece,
// pieces spelled "<0xNN>" count as byte tokens (see Vocab.Type).
const (
	TokenNormal      TokenType = 1
	TokenUnknown     TokenType = 2
	TokenControl     TokenType = 3
	TokenUserDefined TokenType = 4
	TokenUnused      TokenType = 5
	TokenByte        TokenType = 6
)

func (t TokenType) String() string {
	switch t {
	case TokenNormal:
		return "normal"
	case TokenUnknown:
		return "unknown"
	case TokenControl:
		return "control"
	case TokenUserDefined:
		return "user-defined"
	case TokenUnused:
		return "unused"
	case TokenByte:
		return "byte"
	}
	return strconv.Itoa(int(t))
}

// Encoding says how a vocabulary's pieces spell the text they stand for.
type Encoding uint8

const (
	// SentencePiece pieces are UTF-8 text with "▁" (U+2581) for a space;
	// byte tokens are spelled "<0xNN>" (tokenizer models "llama", "t5"
	// and, as llama.cpp converts it, "bert").
	SentencePiece Encoding = iota + 1
	// ByteLevel pieces spell bytes through GPT-2's byte-to-unicode table,
	// "Ġ" for a space and "Ċ" for a newline (tokenizer model "gpt2":
	// GPT-2, Llama-3, Qwen, DeepSeek, Falcon, ...).
	ByteLevel
)

func (e Encoding) String() string {
	switch e {
	case SentencePiece:
		return "sentencepiece"
	case ByteLevel:
		return "byte-level"
	}
	return "encoding(" + strconv.Itoa(int(e)) + ")"
}

// Vocab is a tokenizer's vocabulary, as GGUF's tokenizer.ggml.* keys store
// it. Optional arrays are nil when absent; special ids are -1 when the role
// is absent.
type Vocab struct {
	// Model is the tokenizer model as llama.cpp names it
	// (tokenizer.ggml.model): "llama" (SentencePiece), "gpt2" (byte-level
	// BPE), "t5", "bert", ... It decides the Encoding.
	Model string
	// Pre is the pre-tokenizer name (tokenizer.ggml.pre), "" if absent.
	Pre string

	Pieces []string    // the text of each token id, as the vocabulary spells it
	Scores []float32   // SentencePiece scores, nil if absent
	Types  []TokenType // nil: see the token type constants
	Merges []string    // BPE merges "LEFT RIGHT", nil if absent

	BOS, EOS, UNK, PAD int32
	// AddBOS and AddEOS say whether tokenizing a prompt adds BOS/EOS.
	AddBOS, AddEOS bool
}

// Encoding is how the pieces of the vocabulary's tokenizer model spell
// text, 0 for a model whose spelling this package does not know.
func (v *Vocab) Encoding() Encoding {
	switch v.Model {
	case "llama", "t5", "bert":
		// llama.cpp's converter rewrites BERT's WordPiece vocabulary with
		// "▁" at word starts.
		return SentencePiece
	case "gpt2":
		return ByteLevel
	}
	return 0
}

// Validate reports a vocabulary whose arrays disagree in length, whose
// special ids are out of range, or whose pieces Text cannot read.
func (v *Vocab) Validate() error {
	if len(v.Pieces) == 0 {
		return fmt.Errorf("vocabulary has no tokens")
	}
	if v.Types != nil && len(v.Types) != len(v.Pieces) {
		return fmt.Errorf("vocabulary has %d token types for %d tokens", len(v.Types), len(v.Pieces))
	}
	if v.Scores != nil && len(v.Scores) != len(v.Pieces) {
		return fmt.Errorf("vocabulary has %d scores for %d tokens", len(v.Scores), len(v.Pieces))
	}
	if v.Encoding() == 0 {
		return fmt.Errorf("tokenizer model is %q; want llama, t5, bert or gpt2, whose pieces spell text in a known way", v.Model)
	}
	for _, r := range []struct {
		name string
		id   int32
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"UNK", v.UNK}, {"PAD", v.PAD}} {
		if r.id < -1 || int(r.id) >= len(v.Pieces) {
			return fmt.Errorf("vocabulary %s id %d is outside [0, %d)", r.name, r.id, len(v.Pieces))
		}
	}
	return nil
}

// Type returns the type of token id, inferring it when the vocabulary has
// no types.
func (v *Vocab) Type(id int32) TokenType {
	if v.Types != nil {
		return v.Types[id]
	}
	if id == v.BOS || id == v.EOS || id == v.UNK || id == v.PAD {
		return TokenControl
	}
	if v.Encoding() == SentencePiece {
		if _, ok := ParseBytePiece(v.Pieces[id]); ok {
			return TokenByte
		}
	}
	return TokenNormal
}

// Text returns the bytes token id stands for. Normal tokens are decoded
// through the vocabulary's encoding; user-defined and control tokens of a
// byte-level vocabulary are taken as written, as llama.cpp does when it
// turns them back into text. The result need not be valid UTF-8: a
// byte-level piece can hold part of a multi-byte character.
func (v *Vocab) Text(id int32) string {
	piece := v.Pieces[id]
	switch t := v.Type(id); {
	case t == TokenByte:
		if b, ok := ParseBytePiece(piece); ok {
			return string([]byte{b})
		}
		return piece
	case v.Encoding() == SentencePiece:
		return strings.ReplaceAll(piece, "▁", " ")
	case t == TokenNormal:
		return decodeByteLevel(piece)
	}
	return piece
}

// Display returns token id in a form fit for a terminal: special tokens as
// their piece, text tokens as a Go-quoted string of their text, so that
// spaces, newlines and stray bytes are visible.
func (v *Vocab) Display(id int32) string {
	if id < 0 || int(id) >= len(v.Pieces) {
		return "-"
	}
	switch v.Type(id) {
	case TokenControl, TokenUnknown, TokenUnused:
		return v.Pieces[id]
	}
	return strconv.Quote(v.Text(id))
}
