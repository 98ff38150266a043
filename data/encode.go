package data

import (
	"errors"
	"fmt"
)

// Tokenizer turns text into token ids. llama.cpp's vocabulary has this
// shape; tests use a fake.
type Tokenizer interface {
	// Tokenize splits text into tokens. addSpecial asks for the model's
	// BOS/EOS around the text; parseSpecial lets text such as "<s>" become
	// the special token instead of plain characters.
	Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error)
}

// NoToken marks an absent special token in Specials.
const NoToken int32 = -1

// Specials are the special tokens Encode adds around each example.
type Specials struct {
	BOS, EOS int32 // NoToken when the vocabulary has none
	AddBOS   bool  // whether sequences start with BOS (Llama: yes)
}

// Sequence is one tokenized example.
type Sequence struct {
	// Tokens[i] is the model's input at position i.
	Tokens []int32
	// Labels[i] is the token to predict at position i: Tokens[i+1] where
	// that token belongs to the response (or is the final EOS), NoToken
	// where no loss is taken (prompt positions and the last position).
	Labels []int32
	Source string
}

// EncodeStats counts what Encode did, for the training log.
type EncodeStats struct {
	Examples    int // examples given
	Truncated   int // kept with the end of the response (and the EOS) cut off
	Dropped     int // left out: no room for a response token, or nothing to learn
	Tokens      int // tokens in the kept sequences
	LabelTokens int // positions with a label in the kept sequences
}

// Encode tokenizes each example as
//
//	[BOS] + tokens(prompt) + tokens(response) + [EOS]
//
// with labels on the response tokens and the EOS only. BOS is added when
// sp.AddBOS is set; EOS when sp.EOS is not NoToken.
//
// The prompt and the response are tokenized separately (addSpecial and
// parseSpecial false), so that the boundary between them is exact whatever
// the tokenizer merges across it, and a "<|user|>"-like string inside user
// data stays plain text. The consequence with SentencePiece vocabularies
// (Llama) is that each piece gets its own leading word marker: the response
// starts with "▁The", where the prompt and response read as one text would
// give "The" after the prompt's final newline. The sequence decodes as
// prompt + " " + response, and the delta learns responses that open with a
// word-start token.
//
// With maxLen > 0, a sequence longer than maxLen tokens keeps its prompt and
// as much of its response as fits (at least one token), and loses its EOS;
// an example whose prompt leaves no room for one response token is dropped.
// An example with no label at all (empty response and no EOS) is dropped
// too. maxLen <= 0 means no limit.
func Encode(tok Tokenizer, sp Specials, tmpl Template, examples []Example, maxLen int) ([]Sequence, EncodeStats, error) {
	if sp.AddBOS && sp.BOS == NoToken {
		return nil, EncodeStats{}, errors.New("encode: AddBOS is set but the vocabulary has no BOS token")
	}
	stats := EncodeStats{Examples: len(examples)}
	var seqs []Sequence
	for _, ex := range examples {
		prompt, err := tok.Tokenize(tmpl.Prompt(ex), false, false)
		if err != nil {
			return nil, EncodeStats{}, fmt.Errorf("encode %s: tokenize prompt: %w", ex.Source, err)
		}
		response, err := tok.Tokenize(ex.Output, false, false)
		if err != nil {
			return nil, EncodeStats{}, fmt.Errorf("encode %s: tokenize response: %w", ex.Source, err)
		}

		tokens := make([]int32, 0, len(prompt)+len(response)+2)
		if sp.AddBOS {
			tokens = append(tokens, sp.BOS)
		}
		tokens = append(tokens, prompt...)
		promptLen := len(tokens)
		tokens = append(tokens, response...)
		if sp.EOS != NoToken {
			tokens = append(tokens, sp.EOS)
		}

		truncated := maxLen > 0 && len(tokens) > maxLen
		if truncated {
			if promptLen >= maxLen {
				stats.Dropped++
				continue
			}
			tokens = tokens[:maxLen]
		}

		labels := make([]int32, len(tokens))
		labelled := 0
		for i := range labels {
			labels[i] = NoToken
			if i+1 >= promptLen && i+1 < len(tokens) {
				labels[i] = tokens[i+1]
				labelled++
			}
		}
		if labelled == 0 {
			stats.Dropped++
			continue
		}
		if truncated {
			stats.Truncated++
		}
		seqs = append(seqs, Sequence{Tokens: tokens, Labels: labels, Source: ex.Source})
		stats.Tokens += len(tokens)
		stats.LabelTokens += labelled
	}
	return seqs, stats, nil
}
