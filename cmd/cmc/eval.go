package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/internal/atomicfile"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/metrics"
	"github.com/cmc-dev/cmc/runner"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "measure what a delta does to a user LLM: response NLL, or the TOFU unlearning metrics",
		Description: "Every metric is computed twice, for the user model alone and for user + alpha × delta.\n\n" +
			"  --task nll   mean negative log-likelihood per token (and perplexity) of the responses\n" +
			"  --task tofu  TOFU's numbers (Maini et al. 2024, as its aggregate_eval_stat.py computes them):\n" +
			"               per set Prob., ROUGE-L recall of the greedy answer and the truth ratio; with the\n" +
			"               retain, real-authors and world-facts sets the model utility; with the forget set\n" +
			"               and --reference the forget quality\n\n" +
			"A --data file's TOFU set is told by a prefix (forget=FILE, retain=FILE, real-authors=FILE,\n" +
			"world-facts=FILE) or by TOFU's own file names (forget10_perturbed.json, retain_perturbed.json,\n" +
			"real_authors_perturbed.json, world_facts_perturbed.json). Real authors and world facts take the\n" +
			"answer as the truth ratio's base and normalise Prob. over the answer and the perturbed ones.\n" +
			"Prompt and answer are tokenised as one text, as TOFU does; answers are generated greedily up to\n" +
			"the end-of-generation token or --max-tokens. TOFU's tables use the first 300 questions (--limit 300).\n" +
			"An example that does not fit the context (--ctx) is skipped with a warning and counted.\n\n" +
			"Examples:\n" +
			"  cmc eval --model llama-2-13b.gguf --delta d.gguf --data alpaca_eval.json --task nll\n" +
			"  cmc eval --model tofu_retain90.gguf --template qa --data forget10_perturbed.json --task tofu --json ref.json\n" +
			"  cmc eval --model tofu_full.gguf --template qa --delta unlearn.gguf --task tofu --reference ref.json \\\n" +
			"      --data forget10_perturbed.json --data retain_perturbed.json \\\n" +
			"      --data real_authors_perturbed.json --data world_facts_perturbed.json --json unlearned.json",
		Flags: append(modelFlags(),
			&cli.StringSliceFlag{Name: "data", Required: true, Usage: "evaluation examples (repeatable: one result table per file; tofu: [SET=]FILE)"},
			&cli.StringFlag{Name: "format", Value: data.FormatAuto, Usage: "format of the data files: auto, alpaca, tofu or text"},
			&cli.StringFlag{Name: "task", Value: "nll", Usage: "nll or tofu"},
			&cli.IntFlag{Name: "limit", Usage: "evaluate only the first N examples of each file (0: all)"},
			&cli.IntFlag{Name: "max-tokens", Value: 200, Usage: "tofu: most new tokens of a greedy answer (TOFU: 200)"},
			&cli.StringSliceFlag{Name: "stop", Usage: "tofu: stop greedy answers before this string (repeatable)"},
			&cli.StringFlag{Name: "reference", Usage: "tofu: the --json of an earlier eval of a model never trained on the forget set (TOFU's retain model, run alone); its forget set's truth ratios are the reference of forget quality"},
			&cli.StringFlag{Name: "json", Usage: "also write the results and, for tofu, every question's generations and scores as JSON to this file"},
		),
		Action: runEval,
	}
}

// evalDoc is what --json writes and --reference reads.
type evalDoc struct {
	Model     string       `json:"model"`
	Delta     string       `json:"delta"`
	Alpha     float32      `json:"alpha"`
	Task      string       `json:"task"`
	Reference string       `json:"reference,omitempty"`
	Results   []evalResult `json:"results"`
	Files     []evalFile   `json:"files"`
}

// evalResult is one metric for the user model alone and with the delta.
// File is empty for the numbers over several files (model utility, forget
// quality).
type evalResult struct {
	File     string    `json:"file"`
	Metric   string    `json:"metric"`
	User     jsonFloat `json:"user"`
	Delta    jsonFloat `json:"user_delta"`
	Examples int       `json:"examples"`
	Skipped  int       `json:"skipped"`
}

// evalFile is what happened to one --data file.
type evalFile struct {
	File     string          `json:"file"`
	Set      metrics.TOFUSet `json:"set,omitempty"`
	Examples int             `json:"examples"` // scored
	Skipped  []string        `json:"skipped"`  // the examples that did not fit the context
	Items    []tofuItem      `json:"items,omitempty"`
}

// tofuItem is one TOFU question's record.
type tofuItem struct {
	Source   string     `json:"source"`
	Question string     `json:"question"`
	Answer   string     `json:"answer"`
	User     tofuScores `json:"user"`
	Delta    tofuScores `json:"user_delta"`
}

// tofuScores are one model's measurements of a question. Log-probs are
// means per token (EOS included, as TOFU counts it); null where the
// question has nothing to measure.
type tofuScores struct {
	Generation         string      `json:"generation"`
	RougeL             jsonFloat   `json:"rouge_l_recall"`
	AnswerLogProb      jsonFloat   `json:"answer_logprob"`
	ParaphrasedLogProb jsonFloat   `json:"paraphrased_logprob"`
	PerturbedLogProbs  []jsonFloat `json:"perturbed_logprobs"`
	Prob               jsonFloat   `json:"prob"`
	TruthRatio         jsonFloat   `json:"truth_ratio"`
}

func (s tofuScores) item() metrics.TOFUItem {
	it := metrics.TOFUItem{Answer: float64(s.AnswerLogProb), Paraphrased: float64(s.ParaphrasedLogProb), RougeL: float64(s.RougeL)}
	for _, p := range s.PerturbedLogProbs {
		it.Perturbed = append(it.Perturbed, float64(p))
	}
	return it
}

// jsonFloat is a float64 that JSON carries as null when it is not finite
// (NaN: nothing measured), which encoding/json would refuse to write.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = jsonFloat(math.NaN())
		return nil
	}
	return json.Unmarshal(b, (*float64)(f))
}

func runEval(c *cli.Context) error {
	task := c.String("task")
	if task != "nll" && task != "tofu" {
		return fmt.Errorf("--task %q: want nll or tofu", task)
	}
	// Everything a run needs from files is read and checked before the
	// models load: a mistake in the last file must not cost the first
	// file's minutes.
	sets, err := readEvalSets(c.StringSlice("data"), c.String("format"), c.Int("limit"), task)
	if err != nil {
		return err
	}
	var reference []float64
	if path := c.String("reference"); path != "" {
		if task != "tofu" {
			return errors.New("--reference is for --task tofu")
		}
		if !slices.ContainsFunc(sets, func(s evalSet) bool { return s.set == metrics.TOFUForget }) {
			return fmt.Errorf("--reference %s: no forget set among --data to compare with", path)
		}
		if reference, err = readReference(path); err != nil {
			return err
		}
	}
	if out := c.String("json"); out != "" {
		if st, err := os.Stat(filepath.Dir(out)); err != nil || !st.IsDir() {
			return fmt.Errorf("--json %s: the directory %s does not exist", out, filepath.Dir(out))
		}
	}
	if c.Int("max-tokens") <= 0 {
		return fmt.Errorf("--max-tokens %d: want at least 1", c.Int("max-tokens"))
	}

	rm, err := loadRuntime(c)
	if err != nil {
		return err
	}
	defer rm.Close()
	ev := newEvaluator(c.Context, rm, c.Int("max-tokens"), c.StringSlice("stop"))
	if rm.UserCtx != nil {
		// llama.cpp pads the context past --ctx but caps its batch at
		// --ctx: a decode longer than --ctx would abort inside it.
		ev.ctxLimit = rm.UserCtx.Size()
		if n := c.Int("ctx"); n > 0 {
			ev.ctxLimit = min(ev.ctxLimit, n)
		}
	}
	doc := evalDoc{Model: c.String("model"), Delta: c.String("delta"), Alpha: rm.Alpha, Task: task, Reference: c.String("reference")}
	for _, s := range sets {
		var f evalFile
		var rs []evalResult
		if task == "nll" {
			f, rs, err = ev.nll(s)
		} else {
			f, rs, err = ev.tofu(s)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.path, err)
		}
		doc.Files = append(doc.Files, f)
		doc.Results = append(doc.Results, rs...)
	}
	if task == "tofu" {
		doc.Results = append(doc.Results, tofuSummary(doc.Files, reference)...)
	}
	printResults(os.Stdout, rm, doc.Results)
	if out := c.String("json"); out != "" {
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		return atomicfile.Write(out, append(b, '\n'))
	}
	return nil
}

// evalSet is one --data file, read and checked.
type evalSet struct {
	path string
	// set is the TOFU set the file is (empty: none of the four); scoring
	// is how its answers are scored, the set's own way or, for another
	// file, by what its records hold.
	set, scoring metrics.TOFUSet
	examples     []data.Example
}

var tofuSets = []metrics.TOFUSet{metrics.TOFUForget, metrics.TOFURetain, metrics.TOFURealAuthors, metrics.TOFUWorldFacts}

// readEvalSets reads every --data file (with --limit applied) and checks
// what the task needs of it.
func readEvalSets(args []string, format string, limit int, task string) ([]evalSet, error) {
	var sets []evalSet
	for _, arg := range args {
		set, path := parseDataArg(arg)
		examples, err := data.Read(path, format)
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		if limit > 0 && limit < len(examples) {
			examples = examples[:limit]
		}
		s := evalSet{path: path, set: set, scoring: set, examples: examples}
		if task == "tofu" {
			if err := s.check(sets); err != nil {
				return nil, err
			}
		}
		sets = append(sets, s)
	}
	return sets, nil
}

// parseDataArg splits a --data value into its TOFU set and path: an
// explicit SET= prefix, else TOFU's file names.
func parseDataArg(arg string) (metrics.TOFUSet, string) {
	if set, path, ok := strings.Cut(arg, "="); ok && slices.Contains(tofuSets, metrics.TOFUSet(set)) {
		return metrics.TOFUSet(set), path
	}
	name := strings.ReplaceAll(strings.ToLower(filepath.Base(arg)), "-", "_")
	switch {
	case strings.Contains(name, "real_author"):
		return metrics.TOFURealAuthors, arg
	case strings.Contains(name, "world_fact"):
		return metrics.TOFUWorldFacts, arg
	case strings.Contains(name, "forget"):
		return metrics.TOFUForget, arg
	case strings.Contains(name, "retain"):
		return metrics.TOFURetain, arg
	}
	return "", arg
}

// check validates a TOFU file against its set and the files before it.
func (s *evalSet) check(before []evalSet) error {
	if s.set != "" {
		for _, b := range before {
			if b.set == s.set {
				return fmt.Errorf("--data %s and %s are both TOFU's %s set", b.path, s.path, s.set)
			}
		}
	}
	for _, ex := range s.examples {
		if ex.Instruction == "" {
			return fmt.Errorf("--data %s: %s has no question (want TOFU records)", s.path, ex.Source)
		}
		if (s.set == metrics.TOFURealAuthors || s.set == metrics.TOFUWorldFacts) && len(ex.Perturbed) == 0 {
			return fmt.Errorf("--data %s: %s has no perturbed_answer, which TOFU's %s set scores against (use the *_perturbed file)", s.path, ex.Source, s.set)
		}
	}
	if s.scoring == "" {
		// Another file: with paraphrases it is scored like the retain set,
		// with perturbed answers alone like real authors.
		s.scoring = metrics.TOFURetain
		if !slices.ContainsFunc(s.examples, func(ex data.Example) bool { return ex.Paraphrased != "" }) &&
			slices.ContainsFunc(s.examples, func(ex data.Example) bool { return len(ex.Perturbed) > 0 }) {
			s.scoring = metrics.TOFURealAuthors
		}
	}
	return nil
}

// readReference reads the forget set's truth ratios (the model alone) from
// an earlier eval's --json.
func readReference(path string) ([]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--reference: %w", err)
	}
	var doc evalDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("--reference %s: %w (want the --json of a cmc eval --task tofu)", path, err)
	}
	if doc.Task != "tofu" {
		return nil, fmt.Errorf("--reference %s: task %q, want the --json of a cmc eval --task tofu", path, doc.Task)
	}
	var ratios []float64
	found := ""
	for _, f := range doc.Files {
		if f.Set != metrics.TOFUForget {
			continue
		}
		if found != "" {
			return nil, fmt.Errorf("--reference %s: two forget sets (%s, %s)", path, found, f.File)
		}
		found = f.File
		for _, it := range f.Items {
			if r := float64(it.User.TruthRatio); !math.IsNaN(r) {
				ratios = append(ratios, r)
			}
		}
	}
	switch {
	case found == "":
		return nil, fmt.Errorf("--reference %s: no forget set in it", path)
	case len(ratios) == 0:
		return nil, fmt.Errorf("--reference %s: its forget set %s has no truth ratios (it needs paraphrased and perturbed answers)", path, found)
	}
	return ratios, nil
}

// evaluator scores examples with the user model alone and with the delta.
type evaluator struct {
	ctx       context.Context
	rm        *runner.Runner
	sc        *control.Scorer
	withDelta bool // a delta at alpha != 0: the second column is measured, not copied
	ctxLimit  int  // most tokens an example may take in the user's context
	maxTokens int
	stop      []string
}

func newEvaluator(ctx context.Context, rm *runner.Runner, maxTokens int, stop []string) *evaluator {
	if rm.Remote != nil {
		return &evaluator{ctx: ctx, rm: rm, withDelta: rm.Delta != nil && rm.Alpha != 0, maxTokens: maxTokens, stop: stop}
	}
	g := rm.Generator(rm.Alpha)
	return &evaluator{ctx: ctx, rm: rm, sc: &control.Scorer{G: g}, withDelta: g.Delta != nil, maxTokens: maxTokens, stop: stop}
}

// evalPrompt is one question rendered for both models.
type evalPrompt struct {
	text      string  // the user model's prompt text
	chat      bool    // rendered by the model's chat template
	user      []int32 // its tokens, BOS included: the prompt of a generation
	delta     []int32 // the delta's prompt (nil without a delta)
	deltaText string  // its text
}

func (e *evaluator) prompt(query string) (evalPrompt, error) {
	user, delta, text, err := e.rm.Prompts(nil, query)
	if err != nil {
		return evalPrompt{}, err
	}
	// Without a data template the user model's chat template renders.
	p := evalPrompt{text: text, chat: e.rm.UserTmpl == nil, user: user, delta: delta}
	if e.withDelta {
		p.deltaText = e.rm.DeltaTmpl.Prompt(data.Example{Instruction: query})
	}
	return p, nil
}

// answer returns the tokens for scoring answer after p: the user's prompt
// and target, prompt and answer tokenised as one text and split where the
// answer starts (data.TokenizeJoined), the answer followed by EOS; and the
// delta's prompt. After a chat template, which ends in its own markup, the
// answer is tokenised on its own, so that special tokens are parsed in the
// template's text only.
func (e *evaluator) answer(p evalPrompt, answer string) (prompt, deltaPrompt, target []int32, err error) {
	v := e.rm.User.Vocab()
	deltaPrompt = p.delta
	if p.chat {
		prompt = p.user
		if target, err = v.Tokenize(answer, false, false); err != nil {
			return nil, nil, nil, fmt.Errorf("tokenise an answer: %w", err)
		}
	} else {
		joined, split, err := data.TokenizeJoined(v, p.text, answer)
		if err != nil {
			return nil, nil, nil, err
		}
		if v.AddBOS() {
			prompt = append(prompt, v.BOS())
		}
		prompt = append(prompt, joined[:split]...)
		target = joined[split:]
		// The prompt's last token may carry the answer's first characters
		// ("▁The" after "Answer: "): the delta reads them in its prompt too,
		// so that both models condition on the same text.
		if carried := textAfter(v, p.text, joined[:split]); carried != "" && e.withDelta {
			if deltaPrompt, err = e.rm.DeltaVocab.Vocab().Tokenize(p.deltaText+carried, true, false); err != nil {
				return nil, nil, nil, fmt.Errorf("tokenise the delta's prompt: %w", err)
			}
		}
	}
	if eos := v.EOS(); eos >= 0 {
		target = append(target, eos)
	}
	return prompt, deltaPrompt, target, nil
}

// textAfter is what tokens spell beyond prompt: the part of an answer that
// a token straddling the boundary carries ("" when they spell no more, or
// not the prompt). A leading space that the tokenizer added (SentencePiece)
// is not part of the text.
func textAfter(v *llama.Vocab, prompt string, tokens []int32) string {
	var b []byte
	for _, id := range tokens {
		b = v.AppendPiece(b, id, false)
	}
	spelled := string(b)
	if strings.HasPrefix(spelled, " ") && !strings.HasPrefix(prompt, " ") {
		spelled = spelled[1:]
	}
	after, _ := strings.CutPrefix(spelled, prompt)
	if len(after) == len(spelled) {
		return ""
	}
	return after
}

// overLongError marks an example that does not fit the user model's
// context: it is skipped and counted, not fatal.
type overLongError struct{ tokens, size int }

func (e overLongError) Error() string {
	return fmt.Sprintf("%d tokens do not fit the context of %d (--ctx)", e.tokens, e.size)
}

// fits reports whether scoring target after prompt fits the context: the
// decode holds every token but the target's last.
func (e *evaluator) fits(prompt, target []int32) error {
	if n := len(prompt) + len(target) - 1; n > e.ctxLimit {
		return overLongError{n, e.ctxLimit}
	}
	return nil
}

// skip reports whether err means the example is to be skipped, and warns.
func skip(err error, ex data.Example, f *evalFile) bool {
	var long overLongError
	if !errors.As(err, &long) && !errors.Is(err, llama.ErrContextFull) {
		return false
	}
	slog.Warn("example skipped: it does not fit the context", "example", ex.Source, "reason", err)
	f.Skipped = append(f.Skipped, ex.Source)
	return true
}

func (e *evaluator) nll(s evalSet) (evalFile, []evalResult, error) {
	f := evalFile{File: s.path, Set: s.set, Skipped: []string{}}
	var sumA, sumC float64
	var n int
	bar := newCounter("nll "+filepath.Base(s.path), len(s.examples))
	defer bar.done()
	for _, ex := range s.examples {
		bar.tick()
		a, c, err := e.score(ex.Query(), ex.Output)
		if skip(err, ex, &f) {
			continue
		}
		if err != nil {
			return f, nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		for i := range a {
			sumA -= a[i]
			sumC -= c[i]
		}
		n += len(a)
		f.Examples++
	}
	row := func(metric string, user, delta float64) evalResult {
		return evalResult{File: s.path, Metric: metric, User: jsonFloat(user), Delta: jsonFloat(delta), Examples: f.Examples, Skipped: len(f.Skipped)}
	}
	return f, []evalResult{
		row("NLL per token", metrics.MeanNLL(sumA, n), metrics.MeanNLL(sumC, n)),
		row("perplexity", metrics.Perplexity(sumA, n), metrics.Perplexity(sumC, n)),
		row("response tokens", float64(n), float64(n)),
	}, nil
}

// score is the log-probs of response's tokens after query's prompt.
func (e *evaluator) score(query, response string) (alone, controlled []float64, err error) {
	if e.rm.Remote != nil {
		return e.remoteScore(query, response)
	}
	p, err := e.prompt(query)
	if err != nil {
		return nil, nil, err
	}
	prompt, deltaPrompt, target, err := e.answer(p, response)
	if err != nil {
		return nil, nil, err
	}
	if err := e.fits(prompt, target); err != nil {
		return nil, nil, err
	}
	return e.sc.Score(e.ctx, prompt, deltaPrompt, target)
}

func (e *evaluator) tofu(s evalSet) (evalFile, []evalResult, error) {
	f := evalFile{File: s.path, Set: s.set, Skipped: []string{}}
	bar := newCounter("tofu "+filepath.Base(s.path), len(s.examples))
	defer bar.done()
	for _, ex := range s.examples {
		bar.tick()
		it, err := e.tofuItem(s.scoring, ex)
		if skip(err, ex, &f) {
			continue
		}
		if err != nil {
			return f, nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		f.Items = append(f.Items, it)
	}
	f.Examples = len(f.Items)
	user, delta := summarise(s.scoring, f.Items)
	row := func(metric string, u, d float64) evalResult {
		return evalResult{File: s.path, Metric: metric, User: jsonFloat(u), Delta: jsonFloat(d), Examples: f.Examples, Skipped: len(f.Skipped)}
	}
	// The names of the rows that meant the same before stay as they were:
	// scripts read them.
	prob := "answer probability"
	if s.scoring == metrics.TOFURealAuthors || s.scoring == metrics.TOFUWorldFacts {
		prob = "answer probability, normalised over answer + perturbed"
	}
	rs := []evalResult{row(prob, user.Prob, delta.Prob), row("ROUGE-L recall (greedy)", user.RougeL, delta.RougeL)}
	if !math.IsNaN(user.TruthRatio) {
		summary := "truth ratio, retain summary mean(max(0,1-R))"
		if s.scoring == metrics.TOFUForget {
			summary = "truth ratio, forget summary mean(min(R,1/R))"
		}
		rs = append(rs, row(summary, user.TruthRatio, delta.TruthRatio))
	}
	return f, rs, nil
}

// tofuItem measures one question: greedy answers and the per-token
// log-probs of its answer, paraphrase and perturbed answers, alone and
// with the delta, all after one decoded prompt.
func (e *evaluator) tofuItem(set metrics.TOFUSet, ex data.Example) (tofuItem, error) {
	if e.rm.Remote != nil {
		return e.remoteTOFUItem(set, ex)
	}
	it := tofuItem{Source: ex.Source, Question: ex.Query(), Answer: ex.Output}
	p, err := e.prompt(ex.Query())
	if err != nil {
		return it, err
	}
	answers := []string{ex.Output}
	if ex.Paraphrased != "" {
		answers = append(answers, ex.Paraphrased)
	}
	answers = append(answers, ex.Perturbed...)
	prompts, deltaPrompts, targets := make([][]int32, len(answers)), make([][]int32, len(answers)), make([][]int32, len(answers))
	for i, a := range answers {
		if prompts[i], deltaPrompts[i], targets[i], err = e.answer(p, a); err != nil {
			return it, err
		}
		if err := e.fits(prompts[i], targets[i]); err != nil {
			return it, err
		}
	}
	// A greedy answer stops at the end of the context rather than failing.
	size := e.ctxLimit
	if len(p.user) >= size {
		return it, overLongError{len(p.user) + 1, size}
	}
	opt := control.Options{MaxTokens: min(e.maxTokens, size-len(p.user)), Stop: e.stop}

	genA, err := e.sc.Generate(e.ctx, p.user, p.delta, opt, true)
	if err != nil {
		return it, err
	}
	genC := genA
	if e.withDelta {
		if genC, err = e.sc.Generate(e.ctx, p.user, p.delta, opt, false); err != nil {
			return it, err
		}
	}
	meanA, meanC := make([]float64, len(answers)), make([]float64, len(answers))
	for i := range answers {
		a, c, err := e.sc.Score(e.ctx, prompts[i], deltaPrompts[i], targets[i])
		if err != nil {
			return it, err
		}
		meanA[i], meanC[i] = metrics.MeanLogProb(a), metrics.MeanLogProb(c)
	}
	it.User = newTOFUScores(set, ex, genA.Text, meanA)
	it.Delta = newTOFUScores(set, ex, genC.Text, meanC)
	return it, nil
}

// newTOFUScores fills one model's record of ex from its greedy answer and
// the mean log-probs of the answer, paraphrase (when ex has one) and
// perturbed answers, in that order.
func newTOFUScores(set metrics.TOFUSet, ex data.Example, generation string, meanLogProbs []float64) tofuScores {
	it := metrics.TOFUItem{Answer: meanLogProbs[0], Paraphrased: math.NaN(), RougeL: metrics.RougeLRecall(ex.Output, generation)}
	rest := meanLogProbs[1:]
	if ex.Paraphrased != "" {
		it.Paraphrased, rest = rest[0], rest[1:]
	}
	it.Perturbed = rest
	s := tofuScores{
		Generation:         generation,
		RougeL:             jsonFloat(it.RougeL),
		AnswerLogProb:      jsonFloat(it.Answer),
		ParaphrasedLogProb: jsonFloat(it.Paraphrased),
		PerturbedLogProbs:  []jsonFloat{},
		Prob:               jsonFloat(set.Prob(it)),
		TruthRatio:         jsonFloat(set.TruthRatio(it)),
	}
	for _, lp := range rest {
		s.PerturbedLogProbs = append(s.PerturbedLogProbs, jsonFloat(lp))
	}
	return s
}

// summarise is a set's three TOFU numbers for each column.
func summarise(set metrics.TOFUSet, items []tofuItem) (user, delta metrics.TOFUScores) {
	var a, c []metrics.TOFUItem
	for _, it := range items {
		a, c = append(a, it.User.item()), append(c, it.Delta.item())
	}
	return set.Summarise(a), set.Summarise(c)
}

// tofuSummary is TOFU's two headline numbers over the files: model utility
// when the retain, real-author and world-fact sets are there, forget
// quality when the forget set is and a reference was given.
func tofuSummary(files []evalFile, reference []float64) []evalResult {
	bySet := map[metrics.TOFUSet]evalFile{}
	for _, f := range files {
		if f.Set != "" {
			bySet[f.Set] = f
		}
	}
	var rs []evalResult
	var missing []string
	for _, s := range []metrics.TOFUSet{metrics.TOFURetain, metrics.TOFURealAuthors, metrics.TOFUWorldFacts} {
		if _, ok := bySet[s]; !ok {
			missing = append(missing, string(s))
		}
	}
	if len(missing) == 0 {
		var user, delta [3]metrics.TOFUScores
		examples, skipped := 0, 0
		for i, s := range []metrics.TOFUSet{metrics.TOFURetain, metrics.TOFURealAuthors, metrics.TOFUWorldFacts} {
			user[i], delta[i] = summarise(s, bySet[s].Items)
			examples += bySet[s].Examples
			skipped += len(bySet[s].Skipped)
		}
		rs = append(rs, evalResult{Metric: "model utility (hmean of the 9)",
			User:     jsonFloat(metrics.ModelUtility(user[0], user[1], user[2])),
			Delta:    jsonFloat(metrics.ModelUtility(delta[0], delta[1], delta[2])),
			Examples: examples, Skipped: skipped})
	} else if len(missing) < 3 {
		slog.Info("no model utility: it needs the retain, real-authors and world-facts sets", "missing", strings.Join(missing, ", "))
	}
	if forget, ok := bySet[metrics.TOFUForget]; ok && reference != nil {
		var user, delta []float64
		for _, it := range forget.Items {
			if r := float64(it.User.TruthRatio); !math.IsNaN(r) {
				user = append(user, r)
			}
			if r := float64(it.Delta.TruthRatio); !math.IsNaN(r) {
				delta = append(delta, r)
			}
		}
		rs = append(rs, evalResult{Metric: "forget quality (KS p-value vs reference)",
			User: jsonFloat(metrics.ForgetQuality(user, reference)), Delta: jsonFloat(metrics.ForgetQuality(delta, reference)),
			Examples: forget.Examples, Skipped: len(forget.Skipped)})
	}
	return rs
}

func printResults(w io.Writer, rm *runner.Runner, rs []evalResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	deltaCol := "(no delta)"
	if rm.Delta != nil {
		deltaCol = fmt.Sprintf("user+%g·delta", rm.Alpha)
	}
	fmt.Fprintf(tw, "file\tmetric\tuser\t%s\texamples\tskipped\t\n", deltaCol)
	for _, r := range rs {
		file := "(all)"
		if r.File != "" {
			file = filepath.Base(r.File)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t\n", file, r.Metric, formatValue(r.User), formatValue(r.Delta), r.Examples, r.Skipped)
	}
	tw.Flush()
}

// formatValue prints four decimals, or four significant digits for values
// so small that the decimals would read 0.0000 (probabilities of unlikely
// answers, forget quality p-values).
func formatValue(v jsonFloat) string {
	if a := math.Abs(float64(v)); a != 0 && a < 1e-3 {
		return fmt.Sprintf("%.4g", float64(v))
	}
	return fmt.Sprintf("%.4f", float64(v))
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
