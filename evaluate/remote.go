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
	opt := control.Options{MaxTokens: e.maxTokens, Stop: e.stop, Heal: true}
	return e.measure(it, set, ex, len(answers), answerer{
		generate: func(alone bool) (string, string, error) {
			alpha := e.rm.Alpha
			if alone {
				alpha = 0
			}
			g, err := e.rm.RemoteGenerate(e.ctx, text, deltaIDs, alpha, opt, nil)
			return g.Text, g.FinishReason, err
		},
		score: func(i int) ([]float64, []float64, error) {
			return e.rm.RemoteScoreAfter(e.ctx, text, answers[i], deltaIDs)
		},
	})
}
