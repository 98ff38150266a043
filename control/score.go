package control

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// Score feeds target after the prompts, token by token as generation
// would produce it, and returns each target token's log-probability under
// the user model alone and under the controlled distribution
// softmax(log_softmax(user) + Alpha · delta) (equal to alone when there is
// no delta). It is the measurement behind `cmc eval`.
func (g *Generator) Score(ctx context.Context, userPrompt, deltaPrompt, target []int32) (alone, controlled []float64, err error) {
	if len(userPrompt) == 0 {
		return nil, nil, errors.New("score: empty prompt")
	}
	useDelta := g.Delta != nil && g.Alpha != 0
	if useDelta && len(deltaPrompt) == 0 {
		return nil, nil, errors.New("score: empty delta prompt")
	}
	nU := g.User.VocabSize()
	scores := g.buffers(nU)
	userNext := userPrompt
	var deltaNext, deltaGen []int32
	deltaBase := 0
	if useDelta {
		deltaNext = deltaPrompt
		deltaBase = g.Delta.Len() + len(deltaPrompt)
		g.deltaPromptLast[0] = deltaPrompt[len(deltaPrompt)-1]
		g.deltaSpacePrefix = g.addsSpacePrefix()
	}
	var text []byte
	var res Result
	for i, u := range target {
		if err := ctx.Err(); err != nil {
			return alone, controlled, err
		}
		if u < 0 || int(u) >= nU {
			return alone, controlled, fmt.Errorf("score: target token %d at index %d is outside the vocabulary", u, i)
		}
		logits, err := g.User.Append(userNext)
		if err != nil {
			return alone, controlled, fmt.Errorf("score: user model: %w", err)
		}
		logSoftmax(scores, logits, g.scratch)
		alone = append(alone, float64(scores[u]))
		if useDelta {
			dl, err := g.Delta.Append(deltaNext)
			if err != nil {
				return alone, controlled, fmt.Errorf("score: delta model: %w", err)
			}
			g.addDelta(scores, dl)
			controlled = append(controlled, float64(scores[u])-g.logSumExp(scores))
		} else {
			controlled = append(controlled, float64(scores[u]))
		}
		text = g.UserTok.AppendPiece(text, u, false)
		userNext = target[i : i+1]
		if useDelta && i+1 < len(target) {
			if deltaNext, deltaGen, err = g.advanceDelta(u, text, deltaBase, deltaGen, &res); err != nil {
				return alone, controlled, err
			}
		}
	}
	return alone, controlled, nil
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
