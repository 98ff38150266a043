package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/internal/atomicfile"
	"github.com/cmc-dev/cmc/metrics"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "measure what a delta does to a user LLM: response NLL, or the TOFU unlearning metrics",
		Description: "Every metric is computed twice, for the user model alone and for user + alpha × delta.\n\n" +
			"  --task nll   mean negative log-likelihood per token (and perplexity) of the responses\n" +
			"  --task tofu  answer probability (length-normalised), ROUGE-L recall of greedy answers and,\n" +
			"               where the file has paraphrased/perturbed answers, TOFU's truth ratio\n\n" +
			"Examples:\n" +
			"  cmc eval --model llama-2-13b.gguf --delta d.gguf --data alpaca_eval.json --task nll\n" +
			"  cmc eval --model mistral-7b.gguf --delta unlearn.gguf --data forget10_perturbed.json --task tofu --json forget.json",
		Flags: append(modelFlags(),
			&cli.StringSliceFlag{Name: "data", Required: true, Usage: "evaluation examples (repeatable: one result table per file)"},
			&cli.StringFlag{Name: "format", Value: data.FormatAuto, Usage: "format of the data files: auto, alpaca, tofu or text"},
			&cli.StringFlag{Name: "task", Value: "nll", Usage: "nll or tofu"},
			&cli.IntFlag{Name: "limit", Usage: "evaluate only the first N examples of each file (0: all)"},
			&cli.IntFlag{Name: "max-tokens", Value: 64, Usage: "tofu: longest greedy answer"},
			&cli.StringSliceFlag{Name: "stop", Usage: "tofu: stop greedy answers before this string (repeatable)"},
			&cli.StringFlag{Name: "json", Usage: "also write the results as JSON to this file"},
		),
		Action: runEval,
	}
}

// evalResult is one metric for the user model alone and with the delta.
type evalResult struct {
	File     string  `json:"file"`
	Metric   string  `json:"metric"`
	User     float64 `json:"user"`
	Delta    float64 `json:"user_delta"`
	Examples int     `json:"examples"`
}

func runEval(c *cli.Context) error {
	rm, err := loadRuntime(c)
	if err != nil {
		return err
	}
	defer rm.close()
	task := c.String("task")
	if task != "nll" && task != "tofu" {
		return fmt.Errorf("--task %q: want nll or tofu", task)
	}
	var results []evalResult
	for _, path := range c.StringSlice("data") {
		examples, err := data.Read(path, c.String("format"))
		if err != nil {
			return err
		}
		if n := c.Int("limit"); n > 0 && n < len(examples) {
			examples = examples[:n]
		}
		ev := &evaluator{rm: rm, ctx: c.Context, maxTokens: c.Int("max-tokens"), stop: c.StringSlice("stop")}
		var rs []evalResult
		if task == "nll" {
			rs, err = ev.nll(examples)
		} else {
			rs, err = ev.tofu(examples)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for i := range rs {
			rs[i].File, rs[i].Examples = path, len(examples)
		}
		results = append(results, rs...)
	}
	printResults(os.Stdout, rm, results)
	if out := c.String("json"); out != "" {
		b, err := json.MarshalIndent(map[string]any{"model": c.String("model"), "delta": c.String("delta"), "alpha": rm.alpha, "task": task, "results": results}, "", "  ")
		if err != nil {
			return err
		}
		return atomicfile.Write(out, append(b, '\n'))
	}
	return nil
}

type evaluator struct {
	rm        *runtimeModels
	ctx       context.Context
	maxTokens int
	stop      []string
}

// logProbs scores response after query's prompts, alone and with the delta.
func (e *evaluator) logProbs(query, response string) (alone, controlled []float64, err error) {
	userIDs, deltaIDs, _, err := e.rm.prompts(nil, query)
	if err != nil {
		return nil, nil, err
	}
	target, err := e.rm.user.Vocab().Tokenize(response, false, false)
	if err != nil {
		return nil, nil, err
	}
	if eos := e.rm.user.Vocab().EOS(); eos >= 0 {
		target = append(target, eos)
	}
	return e.rm.generator(e.rm.alpha).Score(e.ctx, userIDs, deltaIDs, target)
}

func (e *evaluator) nll(examples []data.Example) ([]evalResult, error) {
	var sumA, sumC float64
	var n int
	bar := newCounter("nll", len(examples))
	defer bar.done()
	for _, ex := range examples {
		bar.tick()
		a, c, err := e.logProbs(ex.Query(), ex.Output)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		for i := range a {
			sumA -= a[i]
			sumC -= c[i]
		}
		n += len(a)
	}
	return []evalResult{
		{Metric: "NLL per token", User: metrics.MeanNLL(sumA, n), Delta: metrics.MeanNLL(sumC, n)},
		{Metric: "perplexity", User: metrics.Perplexity(sumA, n), Delta: metrics.Perplexity(sumC, n)},
		{Metric: "response tokens", User: float64(n), Delta: float64(n)},
	}, nil
}

func (e *evaluator) tofu(examples []data.Example) ([]evalResult, error) {
	var probA, probC, rougeA, rougeC []float64
	var ratioA, ratioC []float64
	bar := newCounter("tofu", len(examples))
	defer bar.done()
	for _, ex := range examples {
		bar.tick()
		a, c, err := e.logProbs(ex.Query(), ex.Output)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		probA, probC = append(probA, metrics.AnswerProbability(a)), append(probC, metrics.AnswerProbability(c))
		ga, err := e.greedy(ex.Query(), 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		gc, err := e.greedy(ex.Query(), e.rm.alpha)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		rougeA, rougeC = append(rougeA, metrics.RougeLRecall(ex.Output, ga)), append(rougeC, metrics.RougeLRecall(ex.Output, gc))
		if ex.Paraphrased == "" || len(ex.Perturbed) == 0 {
			continue
		}
		ra, rc, err := e.truthRatio(ex)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		ratioA, ratioC = append(ratioA, ra), append(ratioC, rc)
	}
	rs := []evalResult{
		{Metric: "answer probability", User: mean(probA), Delta: mean(probC)},
		{Metric: "ROUGE-L recall (greedy)", User: mean(rougeA), Delta: mean(rougeC)},
	}
	if len(ratioA) > 0 {
		rs = append(rs,
			evalResult{Metric: "truth ratio, forget summary mean(min(R,1/R))", User: metrics.ForgetTruthRatio(ratioA), Delta: metrics.ForgetTruthRatio(ratioC)},
			evalResult{Metric: "truth ratio, retain summary mean(max(0,1-R))", User: metrics.RetainTruthRatio(ratioA), Delta: metrics.RetainTruthRatio(ratioC)})
	}
	return rs, nil
}

// truthRatio compares the likelihood of wrong answers with that of the
// paraphrased right one, per token, alone and with the delta.
func (e *evaluator) truthRatio(ex data.Example) (alone, controlled float64, err error) {
	pa, pc, err := e.logProbs(ex.Query(), ex.Paraphrased)
	if err != nil {
		return 0, 0, err
	}
	var wrongA, wrongC []float64
	for _, w := range ex.Perturbed {
		a, c, err := e.logProbs(ex.Query(), w)
		if err != nil {
			return 0, 0, err
		}
		wrongA, wrongC = append(wrongA, metrics.MeanLogProb(a)), append(wrongC, metrics.MeanLogProb(c))
	}
	return metrics.TruthRatio(metrics.MeanLogProb(pa), wrongA), metrics.TruthRatio(metrics.MeanLogProb(pc), wrongC), nil
}

func (e *evaluator) greedy(query string, alpha float32) (string, error) {
	userIDs, deltaIDs, _, err := e.rm.prompts(nil, query)
	if err != nil {
		return "", err
	}
	res, err := e.rm.generator(alpha).Generate(e.ctx, userIDs, deltaIDs, control.Options{MaxTokens: e.maxTokens, Stop: e.stop}, nil)
	return res.Text, err
}

func mean(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func printResults(w io.Writer, rm *runtimeModels, rs []evalResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	deltaCol := "(no delta)"
	if rm.delta != nil {
		deltaCol = fmt.Sprintf("user+%g·delta", rm.alpha)
	}
	fmt.Fprintf(tw, "file\tmetric\tuser\t%s\texamples\t\n", deltaCol)
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%.4f\t%.4f\t%d\t\n", filepath.Base(r.File), r.Metric, r.User, r.Delta, r.Examples)
	}
	tw.Flush()
}

// counter shows how far a loop over examples has got, on stderr: in place
// on a terminal, every few seconds otherwise.
type counter struct {
	name        string
	n, i        int
	start, last time.Time
	tty         bool
}

func newCounter(name string, n int) *counter {
	st, _ := os.Stderr.Stat()
	return &counter{name: name, n: n, start: time.Now(), tty: st != nil && st.Mode()&os.ModeCharDevice != 0}
}

func (c *counter) tick() {
	c.i++
	now := time.Now()
	if now.Sub(c.last) < time.Second || (!c.tty && now.Sub(c.last) < 10*time.Second) {
		return
	}
	c.last = now
	eta := time.Duration(float64(now.Sub(c.start)) / float64(c.i) * float64(c.n-c.i+1)).Round(time.Second)
	line := fmt.Sprintf("%s: example %d/%d, ETA %s", c.name, c.i, c.n, eta)
	if c.tty {
		fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(os.Stderr, line)
	}
}

func (c *counter) done() {
	if c.tty && !c.last.IsZero() {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}
