package data

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cmc-dev/cmc/vocab"
)

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
//	[BOS] + tokens(prompt + response) + [EOS]
//
// with labels on the response tokens and the EOS only. BOS is added when
// sp.AddBOS is set; EOS when sp.EOS is not NoToken.
//
// Prompt and response are tokenized as one text (addSpecial and
// parseSpecial false, so a "<|user|>"-like string inside user data stays
// plain text) and split where the response begins (see TokenizeJoined): the
// model learns the tokens that the joined text really has, which is what
// TOFU and other Hugging Face pipelines train on. Tokenizing the two
// separately would give each its own SentencePiece word marker ("Answer: "
// then "▁The": two spaces) and tokens that text never contains.
//
// With maxLen > 0, a sequence longer than maxLen tokens keeps its prompt and
// as much of its response as fits (at least one token), and loses its EOS;
// an example whose prompt leaves no room for one response token is dropped.
// An example with no label at all (empty response and no EOS) is dropped
// too. maxLen <= 0 means no limit.
func Encode(tok vocab.Tokenizer, sp Specials, tmpl Template, examples []Example, maxLen int) ([]Sequence, EncodeStats, error) {
	if sp.AddBOS && sp.BOS == NoToken {
		return nil, EncodeStats{}, errors.New("encode: AddBOS is set but the vocabulary has no BOS token")
	}
	stats := EncodeStats{Examples: len(examples)}
	var seqs []Sequence
	for _, ex := range examples {
		joined, split, err := TokenizeJoined(tok, tmpl.Prompt(ex), ex.Output)
		if err != nil {
			return nil, EncodeStats{}, fmt.Errorf("encode %s: %w", ex.Source, err)
		}

		tokens := make([]int32, 0, len(joined)+2)
		if sp.AddBOS {
			tokens = append(tokens, sp.BOS)
		}
		promptLen := len(tokens) + split
		tokens = append(tokens, joined...)
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

// TokenizeJoined tokenizes prompt + response as one text, without special
// tokens, and returns its tokens with split, the index of the first response
// token: the first token whose text starts at or after the response's first
// character. A token that straddles the boundary (SentencePiece's "▁The"
// after a prompt ending in a space) therefore counts as prompt, the way
// TOFU's label mask treats it, and the response's tokens are exactly the
// ones the joined text has.
//
// Token positions come from the tokens' own text (AppendPiece). A tokenizer
// may add one leading space (SentencePiece's dummy prefix); when the pieces
// still do not spell the prompt (an unknown character, a normalisation), the
// split falls back to the number of tokens of the prompt alone, which is how
// TOFU counts its question tokens.
func TokenizeJoined(tok vocab.Tokenizer, prompt, response string) (tokens []int32, split int, err error) {
	text := prompt + response
	tokens, err = tok.Tokenize(text, false, false)
	if err != nil {
		return nil, 0, fmt.Errorf("tokenize prompt and response: %w", err)
	}
	var spelled []byte
	ends := make([]int, len(tokens)) // byte offset in spelled after each token
	for i, id := range tokens {
		spelled = tok.AppendPiece(spelled, id, false)
		ends[i] = len(spelled)
	}
	shift := -1 // bytes the tokenizer put before the text
	switch {
	case strings.HasPrefix(string(spelled), prompt):
		shift = 0
	case len(spelled) > 0 && spelled[0] == ' ' && strings.HasPrefix(string(spelled[1:]), prompt):
		shift = 1
	}
	if shift < 0 {
		alone, err := tok.Tokenize(prompt, false, false)
		if err != nil {
			return nil, 0, fmt.Errorf("tokenize prompt: %w", err)
		}
		return tokens, min(len(alone), len(tokens)), nil
	}
	// Token i starts where token i-1 ended; the first one at the text's
	// start even when its piece carries the added space.
	start := 0
	for i := range tokens {
		if max(start-shift, 0) >= len(prompt) {
			return tokens, i, nil
		}
		start = ends[i]
	}
	return tokens, len(tokens), nil
}
