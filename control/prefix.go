package control

import (
	"context"
	"fmt"
)

// TokenLM is an LM that knows the token ids its context holds, so that a
// new prompt decodes only what it does not share with them. DeltaLM is
// one; Tracked makes any LM one.
type TokenLM interface {
	LM
	// Tokens returns the ids of the context, valid until the next call.
	Tokens() []int32
}

// Tracked records the tokens decoded into an LM, for an LM (llama.cpp's
// context) that does not report them itself. It must be the only way its
// LM is decoded into or trimmed.
type Tracked struct {
	LM
	tokens []int32
}

// Track wraps lm, whose context must be empty.
func Track(lm LM) *Tracked { return &Tracked{LM: lm} }

func (t *Tracked) Tokens() []int32 { return t.tokens }

// Append decodes tokens after the context. A failed decode (an abort, a
// full context) leaves the model's cache in a state no record describes,
// so the context is emptied: the next prompt is decoded from the start.
func (t *Tracked) Append(tokens []int32) ([]float32, error) {
	logits, err := t.LM.Append(tokens)
	if err != nil {
		t.tokens = t.tokens[:0]
		if terr := t.LM.Trim(0); terr != nil {
			return nil, fmt.Errorf("%w (and emptying the context failed: %v)", err, terr)
		}
		return nil, err
	}
	t.tokens = append(t.tokens, tokens...)
	return logits, nil
}

// AppendAll is BatchLM's all-positions decode: in one batch when the
// wrapped LM has it, token by token otherwise.
func (t *Tracked) AppendAll(tokens []int32, rows []float32) error {
	if err := appendAll(t.LM, tokens, rows); err != nil {
		t.tokens = t.tokens[:0]
		if terr := t.LM.Trim(0); terr != nil {
			return fmt.Errorf("%w (and emptying the context failed: %v)", err, terr)
		}
		return err
	}
	t.tokens = append(t.tokens, tokens...)
	return nil
}

// SetAbortContext passes the abort context on, when the wrapped LM takes one.
func (t *Tracked) SetAbortContext(ctx context.Context) {
	if a, ok := t.LM.(AbortableLM); ok {
		a.SetAbortContext(ctx)
	}
}

func (t *Tracked) Trim(pos int) error {
	if err := t.LM.Trim(pos); err != nil {
		return err
	}
	t.tokens = t.tokens[:min(pos, len(t.tokens))]
	return nil
}

// reusePrefix trims lm's context to the longest prefix it shares with
// prompt, leaving at least one prompt token to decode (its logits predict
// what follows the prompt), and returns how many prompt tokens are already
// in the cache. An LM without a token record is emptied.
func reusePrefix(lm LM, prompt []int32) (int, error) {
	keep := 0
	if t, ok := lm.(TokenLM); ok {
		held := t.Tokens()
		if len(held) == lm.Len() {
			keep = min(commonPrefix(held, prompt), len(prompt)-1)
		}
	}
	keep = max(keep, 0)
	if err := lm.Trim(keep); err != nil {
		return 0, err
	}
	return keep, nil
}
