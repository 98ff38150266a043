package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/evaluate"
	"github.com/cmc-dev/cmc/internal/atomicfile"
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

func runEval(c *cli.Context) error {
	task := c.String("task")
	if task != evaluate.TaskNLL && task != evaluate.TaskTOFU {
		return fmt.Errorf("--task %q: want nll or tofu", task)
	}
	// Everything a run needs from files is read and checked before the
	// models load: a mistake in the last file must not cost the first
	// file's minutes.
	sets, err := evaluate.ReadSets(c.StringSlice("data"), c.String("format"), c.Int("limit"), task)
	if err != nil {
		return err
	}
	opt := evaluate.Options{Task: task, MaxTokens: c.Int("max-tokens"), Stop: c.StringSlice("stop"), ContextLimit: c.Int("ctx"), Progress: os.Stderr}
	if path := c.String("reference"); path != "" {
		if task != evaluate.TaskTOFU {
			return errors.New("--reference is for --task tofu")
		}
		if opt.Reference, err = evaluate.ReadReference(path, sets); err != nil {
			return err
		}
	}
	out := c.String("json")
	if out != "" {
		if st, err := os.Stat(filepath.Dir(out)); err != nil || !st.IsDir() {
			return fmt.Errorf("--json %s: the directory %s does not exist", out, filepath.Dir(out))
		}
	}
	if opt.MaxTokens <= 0 {
		return fmt.Errorf("--max-tokens %d: want at least 1", opt.MaxTokens)
	}

	rm, err := loadRuntime(c)
	if err != nil {
		return err
	}
	defer rm.Close()
	doc, err := evaluate.Run(c.Context, rm, sets, opt)
	if err != nil {
		return err
	}
	doc.Model, doc.Delta, doc.Reference = c.String("model"), c.String("delta"), c.String("reference")
	doc.Print(os.Stdout, rm.Delta != nil)
	if out == "" {
		return nil
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(out, append(b, '\n'))
}
