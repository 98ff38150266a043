package control

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// BatchLM is an LM that can return the logits of every position of one
// decode: logits receives len(tokens) rows of VocabSize() floats, row i
// predicting the token after tokens[i]. llama.cpp computes them in one
// batched pass, which is what makes scoring an answer cheap.
type BatchLM interface {
	AppendAll(tokens []int32, logits []float32) error
}

// Scorer measures answers the way `cmc eval` needs: many answers (the
// right one, a paraphrase, perturbed wrong ones) and greedy generations
// after one prompt. With models that know what their KV caches hold
// (TokenLM) every answer rewinds to the end of the prompt instead of
// decoding it again, and it reads the user model's log-probabilities of a
// whole answer from one batched decode when the user model is a BatchLM.
type Scorer struct {
	G *Generator

	logits []float32 // rows of the user's logits over an answer
}

// Score feeds target after the prompts and returns each target token's
// log-probability under the user model alone and under the controlled
// distribution softmax(log_softmax(user) + Alpha · delta) (equal to alone
// when there is no delta). The delta follows the answer token by token as
// it would follow a generation, so that the scores are those of the text
// the generator would have produced.
func (s *Scorer) Score(ctx context.Context, userPrompt, deltaPrompt, target []int32) (alone, controlled []float64, err error) {
	g := s.G
	useDelta := g.Delta != nil && g.Alpha != 0
	switch {
	case len(userPrompt) == 0:
		return nil, nil, errors.New("score: empty prompt")
	case useDelta && len(deltaPrompt) == 0:
		return nil, nil, errors.New("score: empty delta prompt")
	case len(target) == 0:
		return nil, nil, nil
	}
	nU := g.User.VocabSize()
	for i, u := range target {
		if u < 0 || int(u) >= nU {
			return nil, nil, fmt.Errorf("score: target token %d at index %d is outside the vocabulary", u, i)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	// The user model: rewind to the prompt's last token, then decode it and
	// the answer but its last token in one batch. Row i of the logits
	// predicts target[i].
	keep, err := reusePrefix(g.User, userPrompt)
	if err != nil {
		return nil, nil, fmt.Errorf("score: user model: %w", err)
	}
	if keep < len(userPrompt)-1 {
		if _, err := g.User.Append(userPrompt[keep : len(userPrompt)-1]); err != nil {
			return nil, nil, fmt.Errorf("score: user model: %w", err)
		}
	}
	batch := append(userPrompt[len(userPrompt)-1:len(userPrompt):len(userPrompt)], target[:len(target)-1]...)
	if cap(s.logits) < len(batch)*nU {
		s.logits = make([]float32, len(batch)*nU)
	}
	rows := s.logits[:len(batch)*nU]
	if err := appendAll(g.User, batch, rows); err != nil {
		return nil, nil, fmt.Errorf("score: user model: %w", err)
	}

	var deltaNext, deltaGen []int32
	if useDelta {
		keep, err := reusePrefix(g.Delta, deltaPrompt)
		if err != nil {
			return nil, nil, fmt.Errorf("score: delta model: %w", err)
		}
		deltaNext = deltaPrompt[keep:]
		if err := g.beginDelta(deltaPrompt); err != nil {
			return nil, nil, err
		}
	}
	scores := g.buffers(nU)
	alone, controlled = make([]float64, len(target)), make([]float64, len(target))
	var text []byte
	var res Result
	for i, u := range target {
		logSoftmax(scores, rows[i*nU:(i+1)*nU], g.scratch)
		alone[i] = float64(scores[u])
		controlled[i] = alone[i]
		if !useDelta {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		dl, err := g.Delta.Append(deltaNext)
		if err != nil {
			return nil, nil, fmt.Errorf("score: delta model: %w", err)
		}
		g.addDelta(scores, dl)
		controlled[i] = float64(scores[u]) - g.logSumExp(scores)
		text = g.UserTok.AppendPiece(text, u, false)
		if i+1 < len(target) {
			if deltaNext, deltaGen, err = g.advanceDelta(u, text, len(deltaPrompt), deltaGen, &res); err != nil {
				return nil, nil, err
			}
		}
	}
	return alone, controlled, nil
}

// Generate runs the Generator after the prompts (alone: without the delta,
// whatever Alpha says). Like Score it keeps what the contexts share with
// the prompts, so that a greedy answer and the scores of every answer share
// one decoded prompt.
func (s *Scorer) Generate(ctx context.Context, userPrompt, deltaPrompt []int32, opt Options, alone bool) (Result, error) {
	g := *s.G
	if alone {
		g.Delta = nil
	}
	return g.Generate(ctx, userPrompt, deltaPrompt, opt, nil)
}

// appendAll decodes tokens after lm's context into rows of logits, in one
// batch when lm can, token by token otherwise.
func appendAll(lm LM, tokens []int32, rows []float32) error {
	if b, ok := lm.(BatchLM); ok {
		return b.AppendAll(tokens, rows)
	}
	n := lm.VocabSize()
	for i := range tokens {
		logits, err := lm.Append(tokens[i : i+1])
		if err != nil {
			return err
		}
		copy(rows[i*n:(i+1)*n], logits)
	}
	return nil
}

// Score feeds target after the prompts on fresh contexts: see Scorer.Score.
func (g *Generator) Score(ctx context.Context, userPrompt, deltaPrompt, target []int32) (alone, controlled []float64, err error) {
	return (&Scorer{G: g}).Score(ctx, userPrompt, deltaPrompt, target)
}

func (g *Generator) logSumExp(x []float32) float64 {
	best := float32(math.Inf(-1))
	for _, v := range x {
		best = max(best, v)
	}
	tmp := g.scratch[:len(x)]
	copy(tmp, x)
	return float64(best) + math.Log(float64(kernels.ExpShifted(tmp, best)))
}
