package data

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cmc-dev/cmc/vocab"
)

// NoToken marks an absent special token in Specials, and a position
// without a label in Sequence.Labels.
const NoToken int32 = -1

// Anchor is the label of a position whose output the template decides
// (Example.FromTemplate): a delta is trained there to match the template.
const Anchor int32 = -2

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
	// where no loss is taken (prompt positions and the last position),
	// Anchor where the next token is one of the example's FromTemplate words.
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
// with labels on the response tokens and the EOS only; the tokens of the
// example's FromTemplate words are labelled Anchor. BOS is added when
// sp.AddBOS is set; EOS when sp.EOS is not NoToken.
//
// Prompt and response are tokenized as one text (addSpecial and
// parseSpecial false, so a "<|user|>"-like string inside user data stays
// plain text): the model learns the tokens that the joined text really
// has, which is what TOFU and other Hugging Face pipelines train on.
// Tokenizing the two separately would give each its own SentencePiece word
// marker ("Answer: " then "▁The": two spaces) and tokens that text never
// contains. Unlike TOFU's mask (TokenizeJoined, which `cmc eval` keeps), a
// token that straddles the boundary ("▁The" after "Answer: ") is labelled:
// generation heals a prompt that ends in a space (control's heal.go), so the
// model has to choose that token itself, and a model never trained on it
// starts every answer with a guess.
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
		prompt := tmpl.Prompt(ex)
		joined, spans, exact, err := tokenizeSpans(tok, prompt, ex.Output)
		if err != nil {
			return nil, EncodeStats{}, fmt.Errorf("encode %s: %w", ex.Source, err)
		}
		split, err := splitAt(tok, joined, spans, prompt, true)
		if err != nil {
			return nil, EncodeStats{}, fmt.Errorf("encode %s: %w", ex.Source, err)
		}
		var anchored []bool // by index into joined
		if len(ex.FromTemplate) > 0 {
			if !exact {
				return nil, EncodeStats{}, fmt.Errorf("encode %s: from_template: the tokenizer's pieces do not spell the text back, so the words cannot be placed", ex.Source)
			}
			if anchored, err = anchorMask(spans, prompt, ex.Output, ex.FromTemplate); err != nil {
				return nil, EncodeStats{}, fmt.Errorf("encode %s: %w", ex.Source, err)
			}
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

		bos := promptLen - split // 1 when BOS leads the sequence
		labels := make([]int32, len(tokens))
		labelled := 0
		for i := range labels {
			labels[i] = NoToken
			if i+1 >= promptLen && i+1 < len(tokens) {
				labels[i] = tokens[i+1]
				if j := i + 1 - bos; anchored != nil && j < len(anchored) && anchored[j] {
					labels[i] = Anchor
				}
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
	tokens, spans, _, err := tokenizeSpans(tok, prompt, response)
	if err != nil {
		return nil, 0, err
	}
	split, err = splitAt(tok, tokens, spans, prompt, false)
	return tokens, split, err
}

// tokenizeSpans tokenizes prompt+response without special tokens and gives
// each token's byte span [start, end) in that text, or nil spans when the
// pieces do not spell the prompt (a normalising tokenizer); exact says
// whether they spell the whole text. A token starts where the one before it
// ended; the first one at the text's start even when its piece carries the
// space a SentencePiece tokenizer adds.
func tokenizeSpans(tok vocab.Tokenizer, prompt, response string) (tokens []int32, spans [][2]int, exact bool, err error) {
	text := prompt + response
	tokens, err = tok.Tokenize(text, false, false)
	if err != nil {
		return nil, nil, false, fmt.Errorf("tokenize prompt and response: %w", err)
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
		return tokens, nil, false, nil
	}
	spans = make([][2]int, len(tokens))
	start := 0
	for i := range tokens {
		spans[i] = [2]int{max(start-shift, 0), max(ends[i]-shift, 0)}
		start = ends[i]
	}
	return tokens, spans, string(spelled[shift:]) == text, nil
}

// splitAt is the index of the first response token: the first whose span
// starts at or after the prompt's end, or with straddle the first that ends
// after it (a token across the boundary goes with the response). Without
// spans it falls back to the number of tokens of the prompt alone (where
// the boundary lies is then not known).
func splitAt(tok vocab.Tokenizer, tokens []int32, spans [][2]int, prompt string, straddle bool) (int, error) {
	if spans == nil {
		alone, err := tok.Tokenize(prompt, false, false)
		if err != nil {
			return 0, fmt.Errorf("tokenize prompt: %w", err)
		}
		return min(len(alone), len(tokens)), nil
	}
	for i, sp := range spans {
		if sp[0] >= len(prompt) || straddle && sp[1] > len(prompt) {
			return i, nil
		}
	}
	return len(tokens), nil
}

// anchorMask marks the tokens (by their spans in prompt+response) that
// overlap a whole-word occurrence in response of one of words
// (Example.FromTemplate).
func anchorMask(spans [][2]int, prompt, response string, words []string) ([]bool, error) {
	var ranges [][2]int
	for _, w := range words {
		if w == "" {
			return nil, errors.New("from_template: an empty word")
		}
		found := false
		for off := 0; ; {
			i := strings.Index(response[off:], w)
			if i < 0 {
				break
			}
			a, b := off+i, off+i+len(w)
			if !wordByte(response, a-1) && !wordByte(response, b) {
				ranges = append(ranges, [2]int{len(prompt) + a, len(prompt) + b})
				found = true
			}
			off = a + 1
		}
		if !found {
			return nil, fmt.Errorf("from_template: %q does not occur in the response as a word", w)
		}
	}
	mask := make([]bool, len(spans))
	for i, sp := range spans {
		for _, r := range ranges {
			if sp[0] < r[1] && sp[1] > r[0] {
				mask[i] = true
			}
		}
	}
	return mask, nil
}

// wordByte reports whether s[i] exists and is an ASCII letter or digit, so
// that "Amy" matches in "Amy's" but "bear" does not in "bearing".
func wordByte(s string, i int) bool {
	if i < 0 || i >= len(s) {
		return false
	}
	c := s[i]
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
