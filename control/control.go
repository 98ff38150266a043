// Package control is Cross-model Control's glue: it runs a frozen LLM beside
// a delta model, for generation (user LLM + alpha × delta logits, through a
// token map when the vocabularies differ) and for training (template LLM
// log-probs + delta logits, gradients into the delta only). It is written
// against small interfaces, so its tests run with fake models in pure Go;
// the llama package's Context and the delta package's Session satisfy them.
package control

import (
	"fmt"
	"math"

	"github.com/cmc-dev/cmc/delta"
)

// LM is a causal language model with a KV cache.
type LM interface {
	// VocabSize is the width of a row of logits.
	VocabSize() int
	// Len is the number of tokens in the context.
	Len() int
	// Append decodes tokens after the context and returns the logits
	// predicting the next token, valid until the next call.
	Append(tokens []int32) ([]float32, error)
	// Trim cuts the context back to its first pos tokens.
	Trim(pos int) error
}

// DeltaLM adapts a delta model's inference session to LM. It keeps the
// token ids of its context, for inspection.
type DeltaLM struct {
	Session *delta.Session
	Vocab   int
	tokens  []int32
}

// NewDeltaLM starts an empty session on m.
func NewDeltaLM(m *delta.Model, maxPos int) *DeltaLM {
	return &DeltaLM{Session: m.NewSession(maxPos), Vocab: m.Config.VocabSize}
}

func (d *DeltaLM) VocabSize() int { return d.Vocab }
func (d *DeltaLM) Len() int       { return d.Session.Len() }

func (d *DeltaLM) Append(tokens []int32) ([]float32, error) {
	for i, t := range tokens {
		if t < 0 || int(t) >= d.Vocab {
			return nil, fmt.Errorf("delta: token %d at index %d is outside the vocabulary (size %d)", t, i, d.Vocab)
		}
	}
	d.tokens = append(d.tokens, tokens...)
	return d.Session.Decode(tokens), nil
}

// Tokens returns the context's token ids (valid until the next call).
func (d *DeltaLM) Tokens() []int32 { return d.tokens }

func (d *DeltaLM) Trim(pos int) error {
	if pos < 0 || pos > d.Session.Len() {
		return fmt.Errorf("delta: trim to %d: context holds %d tokens", pos, d.Session.Len())
	}
	d.Session.Trim(pos)
	d.tokens = d.tokens[:pos]
	return nil
}

// MaxAlpha bounds the delta's strength |alpha|. The delta's logits are
// unnormalised, typically a few units apart; at |alpha| = 10 they already
// outweigh any difference in the user's log-probabilities, so larger values
// only make the output the delta's alone, and far larger ones overflow
// float32 scores to infinities and NaN (1e308 did: empty text, no error).
const MaxAlpha = 10

// CheckAlpha reports an alpha that is not finite or outside
// [-MaxAlpha, MaxAlpha].
func CheckAlpha(alpha float64) error {
	if math.IsNaN(alpha) || math.IsInf(alpha, 0) || math.Abs(alpha) > MaxAlpha {
		return fmt.Errorf("alpha %g is out of range: it must be a finite number between %d and %d", alpha, -MaxAlpha, MaxAlpha)
	}
	return nil
}
