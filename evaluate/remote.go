package evaluate

import (
	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/metrics"
)

// remoteScore is evaluator.score with a served user model: the engine
// echoes the prompt and the response joined (TOFU's tokenisation), and
// control.RemoteScore steers its top candidates at each response token.
// The end of the response is not scored: the engine echoes no end token.
func (e *evaluator) remoteScore(query, response string) (alone, controlled []float64, err error) {
	text, deltaIDs, err := e.rm.RemotePrompts([]llama.Message{{Role: "user", Content: query}})
	if err != nil {
		return nil, nil, err
	}
	return e.rm.RemoteScoreAfter(e.ctx, text, response, deltaIDs)
}

// remoteTOFUItem is evaluator.tofuItem with a served user model: greedy
// answers over the engine's top-k candidates, log-probs from its echo.
func (e *evaluator) remoteTOFUItem(set metrics.TOFUSet, ex data.Example) (Item, error) {
	it := Item{Source: ex.Source, Question: ex.Query(), Answer: ex.Output}
	text, deltaIDs, err := e.rm.RemotePrompts([]llama.Message{{Role: "user", Content: ex.Query()}})
	if err != nil {
		return it, err
	}
	answers := scoredAnswers(ex)
	opt := control.Options{MaxTokens: e.maxTokens, Stop: e.stop}
	genA, err := e.rm.RemoteGenerate(e.ctx, text, deltaIDs, 0, opt, nil)
	if err != nil {
		return it, err
	}
	genC := genA
	if e.withDelta {
		if genC, err = e.rm.RemoteGenerate(e.ctx, text, deltaIDs, e.rm.Alpha, opt, nil); err != nil {
			return it, err
		}
	}
	meanA, meanC := make([]float64, len(answers)), make([]float64, len(answers))
	for i, a := range answers {
		alone, controlled, err := e.rm.RemoteScoreAfter(e.ctx, text, a, deltaIDs)
		if err != nil {
			return it, err
		}
		meanA[i], meanC[i] = metrics.MeanLogProb(alone), metrics.MeanLogProb(controlled)
	}
	it.User = newTOFUScores(set, ex, genA.Text, genA.FinishReason, meanA)
	it.Delta = newTOFUScores(set, ex, genC.Text, genC.FinishReason, meanC)
	return it, nil
}
