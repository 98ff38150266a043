package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/internal/cpuinfo"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/runner"
)

// Flags shared by the commands that run a user model with a delta.
func modelFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "the user LLM: a GGUF file llama.cpp can run, or http(s)://HOST:PORT/v1, a model served by an OpenAI-compatible engine (see --remote-top-k)", Required: true},
		&cli.StringFlag{Name: "delta", Aliases: []string{"d"}, Usage: "the trained delta model (GGUF written by cmc train); none: run the user model alone"},
		&cli.Float64Flag{Name: "alpha", Value: 1, Action: checkAlphaFlag,
			Usage: fmt.Sprintf("strength of the delta: score = log_softmax(user) + alpha × delta, between %d and %d; 0 gives the user model's own output", -control.MaxAlpha, control.MaxAlpha)},
		&cli.BoolFlag{Name: "no-delta", Usage: "ignore --delta and run the user model alone"},
		&cli.IntFlag{Name: "ctx", Value: 4096, Usage: "context length in tokens (KV cache size of the user model)"},
		&cli.IntFlag{Name: "threads", Value: cpuinfo.PhysicalCores(), Usage: "CPU threads of the user model (default: the physical cores; the delta decodes beside it on one more)"},
		&cli.IntFlag{Name: "gpu-layers", Value: 0, Usage: "layers of the user model to offload to a GPU backend (-1: all); see make cuda"},
		&cli.StringFlag{Name: "map-strategy", Value: string(pmmined.PMMinED), Usage: "token map between different vocabularies: pmmined, mined or exact"},
		&cli.StringFlag{Name: "map-cache", Value: defaultCacheDir("maps"), Usage: "directory of cached token maps (empty: do not cache)"},
		&cli.StringFlag{Name: "template", Value: "auto", Usage: "the user model's prompt template: auto (its chat template if it has one, else raw), chat, raw, open-instruct, qa, or a Go template using {{.Instruction}} {{.Input}} {{.Query}}"},
		&cli.StringFlag{Name: "delta-template", Value: data.TemplateOpenInstruct, Usage: "the delta's prompt template (the one it was trained with)"},
		&cli.StringFlag{Name: "system", Usage: "system message for chat templates"},
	}, remoteFlags()...)
}

// Flags shared by the commands that sample text.
func sampleFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 256, Usage: "most tokens to generate"},
		&cli.Float64Flag{Name: "temp", Value: 0.7, Usage: "sampling temperature; 0 is greedy"},
		&cli.IntFlag{Name: "top-k", Value: 40, Usage: "sample among the k most likely tokens (0: all)"},
		&cli.Float64Flag{Name: "top-p", Value: 0.95, Usage: "nucleus sampling mass (1: off)"},
		&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "random seed for sampling"},
		&cli.StringSliceFlag{Name: "stop", Usage: "stop before this string (repeatable)"},
	}
}

// checkAlphaFlag rejects a non-finite or out-of-range --alpha before any
// model is loaded.
func checkAlphaFlag(_ *cli.Context, alpha float64) error {
	if err := control.CheckAlpha(alpha); err != nil {
		return fmt.Errorf("--alpha: %w", err)
	}
	return nil
}

func defaultCacheDir(sub string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "cmc", sub)
}

// loadRuntime loads what the model flags name.
func loadRuntime(c *cli.Context) (*runner.Runner, error) {
	cfg := runner.Config{
		Model:         c.String("model"),
		Delta:         c.String("delta"),
		Alpha:         float32(c.Float64("alpha")),
		ContextSize:   c.Int("ctx"),
		Threads:       c.Int("threads"),
		GPULayers:     c.Int("gpu-layers"),
		MapStrategy:   pmmined.Strategy(c.String("map-strategy")),
		MapCache:      c.String("map-cache"),
		Template:      c.String("template"),
		DeltaTemplate: c.String("delta-template"),
		System:        c.String("system"),
		Remote:        runner.RemoteConfig{Key: c.String("remote-key"), Model: c.String("remote-model"), TopK: c.Int("remote-top-k")},
	}
	if c.Bool("no-delta") {
		cfg.Delta = ""
	}
	return runner.Load(c.Context, cfg)
}

func sampleOptions(c *cli.Context) control.Options {
	return control.Options{
		MaxTokens: c.Int("max-tokens"),
		Stop:      c.StringSlice("stop"),
		Heal:      true, // a template's trailing space ("Answer: "), or the user's
		Sample: control.SampleOptions{
			Temperature: c.Float64("temp"),
			TopK:        c.Int("top-k"),
			TopP:        c.Float64("top-p"),
			Seed:        c.Uint64("seed"),
		},
	}
}
