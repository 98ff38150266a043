package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/internal/atomicfile"
	"github.com/cmc-dev/cmc/internal/lossplot"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/vocab"
)

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "train a delta model once against a frozen template LLM",
		Description: "The delta learns z = log_softmax(template logits) + delta logits, with the loss on the response\n" +
			"tokens only; only the delta changes. Template and delta must share one vocabulary.\n\n" +
			"Examples:\n" +
			"  cmc train --template llama-2-7b.gguf --delta stories15M.bin --data alpaca.json --out delta.gguf\n" +
			"  cmc train --template T.gguf --delta new --dim 288 --layers 6 --heads 6 --hidden 768 --data text.txt --format text --out d.gguf\n" +
			"  cmc train --template T.gguf --delta d.gguf --objective grad_diff --forget forget10.json --retain retain90.json --out unlearn.gguf",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "template", Aliases: []string{"t"}, Required: true, Usage: "the frozen template LLM (GGUF), or \"none\" to pretrain the delta as a plain language model (with --vocab)"},
			&cli.StringFlag{Name: "vocab", Usage: "with --template none: a GGUF whose tokenizer the delta uses (a vocab-only file is enough)"},
			&cli.StringFlag{Name: "delta", Required: true, Usage: "the delta to start from: a llama2.c .bin checkpoint, a GGUF, or \"new\" for a random one (see --dim ...)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "where to write the trained delta (GGUF)"},
			&cli.StringFlag{Name: "data", Usage: "training examples (sft): Alpaca JSON/JSONL, TOFU JSONL or text"},
			&cli.StringFlag{Name: "format", Value: data.FormatAuto, Usage: "format of the data files: auto, alpaca (instruction/input/output), tofu (question/answer) or text; a JSON record may add \"from_template\": [words of the response the delta leaves to the template: trained there to match it, not the text; with --template none, no loss there]"},
			&cli.StringFlag{Name: "prompt-template", Value: data.TemplateOpenInstruct, Usage: "how examples become prompts: open-instruct, raw, qa or a Go template"},
			&cli.IntFlag{Name: "max-len", Value: 1024, Usage: "longest sequence in tokens; longer responses are truncated, examples whose prompt alone is too long are dropped"},
			&cli.StringFlag{Name: "objective", Value: string(control.SFT), Usage: "sft, or grad_diff for unlearning (-CE on --forget + CE on --retain)"},
			&cli.StringFlag{Name: "forget", Usage: "grad_diff: the examples to unlearn"},
			&cli.StringFlag{Name: "retain", Usage: "grad_diff: the examples to keep"},
			&cli.IntFlag{Name: "epochs", Value: 3, Usage: "passes over the training (or forget) set"},
			&cli.IntFlag{Name: "batch", Value: 64, Usage: "effective batch size in sequences per optimiser step"},
			&cli.IntFlag{Name: "micro-batch", Value: 4, Usage: "sequences per forward pass; --batch is reached by gradient accumulation"},
			&cli.Float64Flag{Name: "lr", Value: 2e-4, Usage: "peak learning rate (AdamW)"},
			&cli.Float64Flag{Name: "min-lr", Value: 0, Usage: "learning rate at the end of the cosine schedule"},
			&cli.Float64Flag{Name: "warmup", Value: 0.03, Usage: "linear warm-up, as a fraction of all steps"},
			&cli.Float64Flag{Name: "weight-decay", Value: 0, Usage: "AdamW decoupled weight decay (weight matrices only)"},
			&cli.Float64Flag{Name: "clip", Value: 1, Usage: "clip the global gradient norm to this (0: off)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the data order and of a new delta's weights"},
			&cli.IntFlag{Name: "dim", Value: 288, Usage: "new delta: model width"},
			&cli.IntFlag{Name: "layers", Value: 6, Usage: "new delta: transformer blocks"},
			&cli.IntFlag{Name: "heads", Value: 6, Usage: "new delta: attention heads"},
			&cli.IntFlag{Name: "kv-heads", Value: 0, Usage: "new delta: key/value heads (0: as many as --heads)"},
			&cli.IntFlag{Name: "hidden", Value: 768, Usage: "new delta: feed-forward width"},
			&cli.StringFlag{Name: "checkpoint", Usage: "checkpoint file (default: OUT.ckpt)"},
			&cli.IntFlag{Name: "checkpoint-every", Value: 50, Usage: "write a checkpoint every N optimiser steps (and on Ctrl-C)"},
			&cli.BoolFlag{Name: "resume", Usage: "continue from the checkpoint with its optimiser state and data position"},
			&cli.BoolFlag{Name: "f16", Usage: "write the delta's weight matrices as float16"},
			&cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: "CPU threads of the delta"},
			&cli.IntFlag{Name: "template-threads", Value: 1, Usage: "CPU threads of the template model; it runs concurrently with the delta"},
			&cli.IntFlag{Name: "gpu-layers", Value: 0, Usage: "template layers to offload to a GPU backend (-1: all)"},
			&cli.StringFlag{Name: "template-cache", Usage: "keep the template's log-probs in DIR (top-k per position, zstd) so later epochs and runs never run the template; every epoch, the first too, trains on these cached values, so a run does not depend on what was cached before"},
			&cli.IntFlag{Name: "template-cache-k", Value: 64, Usage: "log-probs kept exactly per position in the template cache; the rest of the mass is spread evenly"},
			&cli.Float64Flag{Name: "template-jitter", Value: 0, Usage: "show each training sequence the template at a random temperature: its logits times a factor drawn uniformly from [1-J, 1+J], a new one per sequence and epoch, so that the delta's shift does not hinge on the template's exact confidence, which no user LLM shares (it overshoots on a surer one); 0: off, else from 0 to below 1"},
			&cli.Float64Flag{Name: "anchor-flatness", Value: 0, Usage: "at the words a data row leaves to the template (its from_template list), add this weight times the variance of the delta's logits over the vocabulary to the loss that keeps the delta out of the template's way there; that loss alone (a KL to the template) lets the delta raise a token the template finds unlikely almost for free, and on a user LLM that finds the token likely the raise takes the word; 0: off, else a number above 0"},
		},
		Action: runTrain,
	}
}

func runTrain(c *cli.Context) error {
	// Every flag and path is checked before any work, so that a typo fails
	// at once rather than after hours of training.
	paths, err := checkTrainFlags(c)
	if err != nil {
		return err
	}
	objective := control.Objective(c.String("objective"))
	// A run killed while writing a checkpoint leaves its temporary file,
	// as large as the checkpoint.
	for _, p := range []string{paths.checkpoint, paths.history, paths.out, paths.lossCSV, paths.lossPNG} {
		removed, err := atomicfile.RemoveStale(p)
		if err != nil {
			return err
		}
		for _, r := range removed {
			slog.Info("removed the temporary file of an interrupted write", "file", r)
		}
	}
	run, err := runIdentity(c, paths)
	if err != nil {
		return err
	}

	// Without a template the delta is pretrained as a plain language model;
	// its tokenizer then comes from --vocab.
	pretrain := c.String("template") == "none"
	tokenizerPath := paths.tokenizer
	tmplFile, err := gguf.Open(tokenizerPath)
	if err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	defer tmplFile.Close()
	tmplVocab, err := tmplFile.Vocab()
	if err != nil {
		return fmt.Errorf("%s: %w", tokenizerPath, err)
	}

	// Load or create the delta (or resume it) before any slow work, so a
	// vocabulary mismatch or a changed run stops at once.
	var model *delta.Model
	var opt *delta.AdamW
	if c.Bool("resume") {
		var saved map[string]string
		if model, opt, saved, err = delta.LoadCheckpoint(paths.checkpoint); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		if err := sameRun(paths.checkpoint, saved, run); err != nil {
			return err
		}
		slog.Info("resuming", "checkpoint", paths.checkpoint, "step", opt.Step)
	} else if model, err = initDelta(c, tmplVocab); err != nil {
		return err
	}
	if err := finiteWeights(model); err != nil {
		if c.Bool("resume") {
			return fmt.Errorf("checkpoint %s: %w", paths.checkpoint, err)
		}
		return fmt.Errorf("delta %s: %w", c.String("delta"), err)
	}
	if err := sameVocab(tokenizerPath, tmplVocab, c.String("delta"), model); err != nil {
		return err
	}
	pool := kernels.NewPool(c.Int("threads"))
	defer pool.Close()
	model.Pool = pool

	// Loading cannot be interrupted part-way; a Ctrl-C during one phase
	// stops before the next.
	if err := interruptedBefore(c, "loading the template"); err != nil {
		return err
	}
	tmplModel, err := llama.LoadModel(tokenizerPath, llama.ModelParams{GPULayers: c.Int("gpu-layers"), VocabOnly: pretrain})
	if err != nil {
		return fmt.Errorf("template: %w", err)
	}
	defer tmplModel.Close()
	maxLen := c.Int("max-len")
	var template control.Template
	if !pretrain {
		tmplCtx, err := tmplModel.NewContext(llama.ContextParams{Size: maxLen, Batch: min(maxLen, 512), Threads: c.Int("template-threads")})
		if err != nil {
			return fmt.Errorf("template: %w", err)
		}
		defer tmplCtx.Close()
		template = tmplCtx
		if dir := c.String("template-cache"); dir != "" {
			key, err := control.TemplateKey(tokenizerPath, dir)
			if err != nil {
				return err
			}
			cache := &control.CachedTemplate{Inner: tmplCtx, Dir: dir, TopK: c.Int("template-cache-k"), Key: key}
			defer func() { slog.Info("template cache", "dir", dir, "hits", cache.Hits, "misses", cache.Misses) }()
			template = abortableTemplate{cache, tmplCtx}
		}
	}

	if err := interruptedBefore(c, "reading the data"); err != nil {
		return err
	}
	trainSeqs, retainSeqs, err := loadTrainingData(c, objective, tmplModel.Vocab(), maxLen)
	if err != nil {
		return err
	}
	cfg := control.TrainConfig{Objective: objective, BatchSize: c.Int("micro-batch"), Epochs: c.Int("epochs"), Seed: c.Uint64("seed"), TemplateJitter: c.Float64("template-jitter"), AnchorFlatness: c.Float64("anchor-flatness")}
	cfg.Accumulate = max(1, c.Int("batch")/cfg.BatchSize)
	total := cfg.Epochs * cfg.StepsPerEpoch(len(trainSeqs))
	schedule := delta.AdamWConfig{
		LR: c.Float64("lr"), MinLR: c.Float64("min-lr"),
		WarmupSteps: int(math.Ceil(c.Float64("warmup") * float64(total))), DecaySteps: total,
		Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
		WeightDecay: c.Float64("weight-decay"), ClipNorm: c.Float64("clip"),
	}
	if opt == nil {
		opt = delta.NewAdamW(model, schedule)
	} else if opt.Config != schedule {
		// The flags agree, yet the data gave another number of steps.
		return fmt.Errorf("resume: checkpoint %s was made with the schedule %+v, this run gives %+v; train from the start without --resume", paths.checkpoint, opt.Config, schedule)
	}
	tr := &control.Trainer{Template: template, Model: model, Opt: opt, Config: cfg, Train: trainSeqs, Retain: retainSeqs, PadToken: max(tmplVocab.EOS, 0)}

	// The loss history of the steps so far lives beside the checkpoint and
	// matches it; OUT.loss.csv and .png are written only with OUT.
	history, err := readLossCSV(paths.history, opt.Step)
	if err != nil && c.Bool("resume") {
		slog.Warn("loss history not continued", "file", paths.history, "err", err)
	}
	firstStep := opt.Step
	progress := newProgress(total, opt.Step)
	// checkpointed: this run has written (or resumed) a checkpoint.
	checkpointed, checkpointFailed := c.Bool("resume"), false
	save := func() error {
		if err := delta.SaveCheckpoint(paths.checkpoint, model, opt, run); err != nil {
			checkpointFailed = true
			return fmt.Errorf("checkpoint: %w", err)
		}
		if err := writeLossCSV(paths.history, history); err != nil {
			checkpointFailed = true
			return fmt.Errorf("checkpoint's loss history: %w", err)
		}
		checkpointed = true
		return nil
	}
	every := c.Int("checkpoint-every")
	tr.OnStep = func(s control.Step) error {
		history = append(history, s)
		progress.step(s)
		if every > 0 && s.Step%every == 0 {
			return save()
		}
		return nil
	}
	slog.Info("training", "objective", objective, "sequences", len(trainSeqs), "retain", len(retainSeqs),
		"steps", total, "accumulate", cfg.Accumulate, "micro_batch", cfg.BatchSize, "delta_params", len(model.Params))
	runErr := tr.Run(c.Context)
	progress.done()
	switch {
	case runErr == nil:
	case errors.Is(runErr, control.ErrNonFinite):
		// The weights in memory are garbage now: keep the last checkpoint.
		if checkpointed {
			return fmt.Errorf("%w; nothing written, the last checkpoint %s is kept", runErr, paths.checkpoint)
		}
		return fmt.Errorf("%w; nothing written", runErr)
	case checkpointFailed:
		return runErr
	case opt.Step == firstStep:
		if errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("interrupted before step %d finished; nothing to save", firstStep+1)
		}
		return runErr
	default:
		if err := save(); err != nil {
			return errors.Join(runErr, err)
		}
		if errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("interrupted at step %d; checkpoint saved to %s, continue with --resume", opt.Step, paths.checkpoint)
		}
		return fmt.Errorf("%w (checkpoint of step %d saved to %s)", runErr, opt.Step, paths.checkpoint)
	}
	// A finished run keeps its final checkpoint, so that a failed export
	// can be redone with --resume.
	if err := save(); err != nil {
		return err
	}
	if err := model.ExportGGUF(paths.out, delta.ExportOptions{F16: c.Bool("f16"), Tokenizer: tmplFile, Name: "cmc delta"}); err != nil {
		return fmt.Errorf("%w (the trained state is in %s: fix the cause and rerun with --resume to export it)", err, paths.checkpoint)
	}
	if err := writeLossCSV(paths.lossCSV, history); err != nil {
		return fmt.Errorf("loss history: %w", err)
	}
	if err := lossplot.WritePNG(paths.lossPNG, "step", lossSeries(history)); err != nil {
		slog.Warn("loss plot", "err", err)
	}
	final := ""
	if len(history) > 0 {
		loss, n := recentLoss(history, 50)
		final = fmt.Sprintf(", final loss %.4f over the last %d steps", loss, n)
	}
	fmt.Printf("wrote %s (%d steps%s); loss curve %s\n", paths.out, opt.Step, final, paths.lossCSV)
	return nil
}

// recentLoss is the loss of the last n steps of history (or all, if fewer),
// weighted by each step's labelled tokens as one step's mean is: one step's
// loss is one batch's, too noisy to compare runs by.
func recentLoss(history []control.Step, n int) (loss float64, steps int) {
	recent := history[max(0, len(history)-n):]
	var sum, tokens float64
	for _, st := range recent {
		sum += st.Loss * float64(st.Tokens)
		tokens += float64(st.Tokens)
	}
	if tokens == 0 {
		return recent[len(recent)-1].Loss, len(recent)
	}
	return sum / tokens, len(recent)
}

// interruptedBefore reports a Ctrl-C that arrived before phase began.
func interruptedBefore(c *cli.Context, phase string) error {
	if err := c.Context.Err(); err != nil {
		return fmt.Errorf("interrupted before %s; nothing to save: %w", phase, err)
	}
	return nil
}

// abortableTemplate is the template cache with the abort of the llama.cpp
// context behind it, so that Trainer.Run can cancel a forward pass in
// progress when training stops. (The context alone is a
// control.AbortableTemplate and a control.StreamingTemplate itself.)
type abortableTemplate struct {
	control.Template
	llama *llama.Context
}

func (a abortableTemplate) SetAbortContext(ctx context.Context) { a.llama.SetAbortContext(ctx) }

// trainPaths are the files a training run reads and writes.
type trainPaths struct {
	tokenizer  string // the template, or --vocab when pretraining
	out        string
	checkpoint string
	history    string // the loss history that matches the checkpoint
	lossCSV    string // written with out
	lossPNG    string
	data       map[string]string // --data, --forget, --retain as given
}

// checkTrainFlags checks every number and path of `cmc train` and names
// the first that is wrong.
func checkTrainFlags(c *cli.Context) (*trainPaths, error) {
	for _, f := range []struct {
		name string
		min  int
	}{{"batch", 1}, {"micro-batch", 1}, {"epochs", 1}, {"max-len", 2}, {"checkpoint-every", 0}, {"threads", 1}, {"template-threads", 1}, {"template-cache-k", 1}} {
		if v := c.Int(f.name); v < f.min {
			return nil, fmt.Errorf("--%s %d: want at least %d", f.name, v, f.min)
		}
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	lr := c.Float64("lr")
	for _, f := range []struct {
		name   string
		ok     bool
		expect string
	}{
		{"lr", finite(lr) && lr > 0, "a finite number above 0"},
		{"min-lr", finite(c.Float64("min-lr")) && c.Float64("min-lr") >= 0 && c.Float64("min-lr") <= lr, "a finite number from 0 to --lr"},
		{"warmup", c.Float64("warmup") >= 0 && c.Float64("warmup") <= 1, "a fraction of all steps, from 0 to 1"},
		{"weight-decay", finite(c.Float64("weight-decay")) && c.Float64("weight-decay") >= 0, "a finite number of at least 0"},
		{"clip", finite(c.Float64("clip")) && c.Float64("clip") >= 0, "a finite number of at least 0 (0: no clipping)"},
		{"template-jitter", c.Float64("template-jitter") >= 0 && c.Float64("template-jitter") < 1, "a number from 0 to below 1 (0: off)"},
		{"anchor-flatness", c.Float64("anchor-flatness") >= 0 && c.Float64("anchor-flatness") <= math.MaxFloat32, "a finite number from 0 up (0: off)"},
	} {
		if !f.ok {
			return nil, fmt.Errorf("--%s %v: want %s", f.name, c.Float64(f.name), f.expect)
		}
	}
	switch o := control.Objective(c.String("objective")); o {
	case control.SFT, control.GradDiff:
	default:
		return nil, fmt.Errorf("--objective %q: want %s or %s", o, control.SFT, control.GradDiff)
	}

	p := &trainPaths{out: c.String("out"), checkpoint: c.String("checkpoint"), tokenizer: c.String("template"), data: map[string]string{}}
	if p.checkpoint == "" {
		p.checkpoint = p.out + ".ckpt"
	}
	p.history = p.checkpoint + ".loss.csv"
	p.lossCSV = strings.TrimSuffix(p.out, filepath.Ext(p.out)) + ".loss.csv"
	p.lossPNG = strings.TrimSuffix(p.lossCSV, ".csv") + ".png"
	if p.tokenizer == "none" {
		if p.tokenizer = c.String("vocab"); p.tokenizer == "" {
			return nil, errors.New("--template none needs --vocab FILE.gguf for the tokenizer")
		}
		if c.Float64("template-jitter") != 0 {
			return nil, errors.New("--template-jitter needs a template: with --template none there are no template logits to jitter")
		}
		if c.Float64("anchor-flatness") != 0 {
			return nil, errors.New("--anchor-flatness needs a template: with --template none no word is left to a template")
		}
	}

	// What is read must exist ...
	inputs := map[string]string{"--template": p.tokenizer}
	if c.String("template") == "none" {
		inputs = map[string]string{"--vocab": p.tokenizer}
	}
	if d := c.String("delta"); d != "new" && !c.Bool("resume") {
		inputs["--delta"] = d
	}
	if c.Bool("resume") {
		inputs["--checkpoint"] = p.checkpoint
	}
	flags := []string{"data"}
	if control.Objective(c.String("objective")) == control.GradDiff {
		flags = []string{"forget", "retain"}
	}
	for _, f := range flags {
		path := c.String(f)
		if path == "" {
			return nil, fmt.Errorf("--%s is required for objective %s", f, c.String("objective"))
		}
		p.data[f] = path
		inputs["--"+f] = path
	}
	for _, flag := range slices.Sorted(maps.Keys(inputs)) {
		if st, err := os.Stat(inputs[flag]); err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		} else if st.IsDir() {
			return nil, fmt.Errorf("%s %s: is a directory, want a file", flag, inputs[flag])
		}
	}
	// ... and what is written must not be one of them, nor each other, and
	// must go to a directory that exists.
	if d := c.String("delta"); d != "new" {
		inputs["--delta"] = d
	}
	outputs := map[string]string{"--out": p.out, "--checkpoint": p.checkpoint}
	for _, oflag := range slices.Sorted(maps.Keys(outputs)) {
		o := outputs[oflag]
		for _, iflag := range slices.Sorted(maps.Keys(inputs)) {
			if iflag != oflag && sameFile(o, inputs[iflag]) {
				return nil, fmt.Errorf("%s %s is the same file as %s: it would be overwritten", oflag, o, iflag)
			}
		}
		if st, err := os.Stat(o); err == nil && st.IsDir() {
			return nil, fmt.Errorf("%s %s: is a directory, want a file name", oflag, o)
		}
		dir := filepath.Dir(o)
		if st, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("%s %s: directory %s: %w", oflag, o, dir, err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("%s %s: %s is not a directory", oflag, o, dir)
		}
	}
	if sameFile(p.out, p.checkpoint) {
		return nil, fmt.Errorf("--out and --checkpoint are the same file %s", p.out)
	}
	return p, nil
}

// sameFile reports whether two paths name one file: the same cleaned
// absolute path, or, when both exist, the same inode (a link).
func sameFile(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// runIdentity is what a resumed run must share with the checkpoint's: the
// data (by content), the template, and everything that decides the order of
// the batches and the learning-rate schedule. Threads are not in it: they
// change the speed, not the run.
func runIdentity(c *cli.Context, p *trainPaths) (id map[string]string, err error) {
	id = map[string]string{}
	for _, name := range []string{"objective", "format", "prompt-template"} {
		id[name] = c.String(name)
	}
	for _, name := range []string{"max-len", "batch", "micro-batch", "epochs"} {
		id[name] = strconv.Itoa(c.Int(name))
	}
	id["seed"] = strconv.FormatUint(c.Uint64("seed"), 10)
	// The cache's top-k approximates the template's log-probs: it changes
	// the loss, not only the speed.
	id["template-cache-k"] = "off"
	if c.String("template-cache") != "" {
		id["template-cache-k"] = strconv.Itoa(c.Int("template-cache-k"))
	}
	for _, name := range []string{"lr", "min-lr", "warmup", "weight-decay", "clip"} {
		id[name] = strconv.FormatFloat(c.Float64(name), 'g', -1, 64)
	}
	// Named only when on, so that checkpoints from before the flag resume.
	if j := c.Float64("template-jitter"); j != 0 {
		id["template-jitter"] = strconv.FormatFloat(j, 'g', -1, 64)
	}
	if f := c.Float64("anchor-flatness"); f != 0 {
		id["anchor-flatness"] = strconv.FormatFloat(f, 'g', -1, 64)
	}
	tokenizer := "template"
	if c.String("template") == "none" {
		tokenizer = "vocab"
	}
	// The model's whole-file hash, remembered (by path, size and time) where
	// the template cache keeps it, so that a large template is read once.
	memo := c.String("template-cache")
	if memo == "" {
		memo = defaultCacheDir("template")
	}
	var key string
	if memo == "" {
		key, err = fileSHA256(p.tokenizer)
	} else {
		key, err = control.TemplateKey(p.tokenizer, memo)
	}
	if err != nil {
		return nil, err
	}
	id[tokenizer] = key
	for flag, path := range p.data {
		sum, err := fileSHA256(path)
		if err != nil {
			return nil, err
		}
		id[flag] = sum
	}
	return id, nil
}

// sameRun refuses to resume a checkpoint made by another run, naming every
// difference.
func sameRun(ckpt string, saved, now map[string]string) error {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(now)) {
		if saved[k] != now[k] {
			was := saved[k]
			if was == "" {
				was = "absent"
			}
			switch k {
			case "data", "forget", "retain", "template", "vocab":
				diffs = append(diffs, fmt.Sprintf("--%s has other content (%.20s in the checkpoint, %.20s now)", k, was, now[k]))
			default:
				diffs = append(diffs, fmt.Sprintf("--%s is %s in the checkpoint, %s now", k, was, now[k]))
			}
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("resume: checkpoint %s belongs to another run: %s; restore those settings, or train from the start without --resume", ckpt, strings.Join(diffs, "; "))
}

// finiteWeights names the first NaN or infinite parameter of m.
func finiteWeights(m *delta.Model) error {
	for _, t := range m.Tensors {
		for i, v := range m.TensorData(t) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				where := t.Name
				if t.Layer >= 0 {
					where = fmt.Sprintf("%s of layer %d", t.Name, t.Layer)
				}
				return fmt.Errorf("weight %d of %s is %v: the file is damaged or came from a diverged run", i, where, v)
			}
		}
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil)), nil
}

// initDelta loads the starting delta or creates a random one with the
// template's vocabulary size.
func initDelta(c *cli.Context, tmplVocab *vocab.Vocab) (*delta.Model, error) {
	path := c.String("delta")
	switch {
	case path == "new":
		heads := c.Int("heads")
		kv := c.Int("kv-heads")
		if kv == 0 {
			kv = heads
		}
		return delta.New(delta.Config{Dim: c.Int("dim"), HiddenDim: c.Int("hidden"), NLayers: c.Int("layers"), NHeads: heads, NKVHeads: kv,
			VocabSize: len(tmplVocab.Pieces), SeqLen: c.Int("max-len"), SharedClassifier: true}, c.Uint64("seed"))
	case strings.HasSuffix(path, ".bin"):
		return delta.LoadLlama2C(path)
	default:
		return delta.LoadGGUF(path)
	}
}

// sameVocab stops a run whose template and delta do not share a vocabulary,
// naming both and the first difference.
func sameVocab(tmplPath string, tv *vocab.Vocab, deltaPath string, m *delta.Model) error {
	describe := func(path string, v *vocab.Vocab, n int) string {
		if v == nil {
			return fmt.Sprintf("%s (%d tokens)", path, n)
		}
		return fmt.Sprintf("%s (%d tokens, tokenizer %q)", path, n, v.Model)
	}
	if m.Config.VocabSize != len(tv.Pieces) {
		return fmt.Errorf("template and delta must share one vocabulary: template %s, delta %s",
			describe(tmplPath, tv, len(tv.Pieces)), describe(deltaPath, nil, m.Config.VocabSize))
	}
	if deltaPath == "new" || !strings.HasSuffix(deltaPath, ".gguf") {
		return nil // a llama2.c checkpoint carries no vocabulary; sizes agree
	}
	f, err := gguf.Open(deltaPath)
	if err != nil {
		return err
	}
	defer f.Close()
	dv, err := f.Vocab()
	if err != nil {
		return fmt.Errorf("delta %s: %w", deltaPath, err)
	}
	for i := range tv.Pieces {
		if tv.Pieces[i] != dv.Pieces[i] {
			return fmt.Errorf("template and delta must share one vocabulary: template %s, delta %s; first difference at token %d: %q vs %q",
				describe(tmplPath, tv, len(tv.Pieces)), describe(deltaPath, dv, len(dv.Pieces)), i, tv.Pieces[i], dv.Pieces[i])
		}
	}
	return nil
}

func loadTrainingData(c *cli.Context, objective control.Objective, vocab *llama.Vocab, maxLen int) (train, retain []data.Sequence, err error) {
	tmpl, err := data.ParseTemplate(c.String("prompt-template"))
	if err != nil {
		return nil, nil, fmt.Errorf("--prompt-template: %w", err)
	}
	sp := data.Specials{BOS: vocab.BOS(), EOS: vocab.EOS(), AddBOS: vocab.AddBOS()}
	encode := func(flag string) ([]data.Sequence, error) {
		path := c.String(flag)
		if path == "" {
			return nil, fmt.Errorf("--%s is required for objective %s", flag, objective)
		}
		examples, err := data.Read(path, c.String("format"))
		if err != nil {
			return nil, err
		}
		seqs, st, err := data.Encode(vocab, sp, tmpl, examples, maxLen)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		slog.Info("data", "file", path, "examples", st.Examples, "kept", len(seqs), "truncated", st.Truncated, "dropped", st.Dropped, "label_tokens", st.LabelTokens)
		if len(seqs) == 0 {
			return nil, fmt.Errorf("%s: no usable example (all %d dropped)", path, st.Examples)
		}
		return seqs, nil
	}
	switch objective {
	case control.SFT:
		train, err = encode("data")
		return train, nil, err
	case control.GradDiff:
		if train, err = encode("forget"); err != nil {
			return nil, nil, err
		}
		retain, err = encode("retain")
		return train, retain, err
	}
	return nil, nil, fmt.Errorf("unknown objective %q: want sft or grad_diff", objective)
}

// progress prints one line per step on stderr: rewritten in place on a
// terminal, every few seconds otherwise.
type progress struct {
	total, first int
	start, last  time.Time
	tty          bool
	tokens       int
}

func newProgress(total, first int) *progress {
	st, _ := os.Stderr.Stat()
	return &progress{total: total, first: first, start: time.Now(), tty: st != nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) step(s control.Step) {
	p.tokens += s.Tokens
	now := time.Now()
	if !p.tty && now.Sub(p.last) < 5*time.Second && s.Step != p.total {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start)
	done := s.Step - p.first
	eta := time.Duration(float64(elapsed) / float64(max(done, 1)) * float64(p.total-s.Step)).Round(time.Second)
	line := fmt.Sprintf("step %d/%d  epoch %d  loss %.4f  lr %.2e  %.0f tok/s  template %.0f%%  ETA %s",
		s.Step, p.total, s.Epoch, s.Loss, s.LR, float64(p.tokens)/elapsed.Seconds(),
		100*s.TemplateTime.Seconds()/max(1e-9, (s.TemplateTime+s.DeltaTime).Seconds()), eta)
	if p.tty {
		fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(os.Stderr, line)
	}
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprintln(os.Stderr)
	}
}

// The llama.cpp context is the training template: it can be aborted and
// asked for the labelled positions only, a batch of them at a time.
var (
	_ control.AbortableTemplate = (*llama.Context)(nil)
	_ control.StreamingTemplate = (*llama.Context)(nil)
)
