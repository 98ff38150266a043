package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/pmmined/vocabfile"
)

// mapCommand builds the token map from a user LLM's vocabulary onto a delta
// model's, prints a summary and optionally writes the map as TSV. The
// summary and the TSV are rendered by pmmined, where they are tested
// without building this command.
func mapCommand() *cli.Command {
	return &cli.Command{
		Name:  "map",
		Usage: "map a user LLM's tokens onto a delta model's vocabulary and summarise the map",
		Description: "Vocabularies are read from GGUF files (vocab-only or whole llama.cpp models),\n" +
			"SentencePiece .model files or tiktoken rank files (Llama-3, Qwen).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "user", Required: true, Usage: "the user LLM's `FILE` (its vocabulary is mapped)"},
			&cli.StringFlag{Name: "delta", Required: true, Usage: "the delta model's `FILE` (the vocabulary mapped onto)"},
			&cli.StringFlag{Name: "strategy", Value: string(pmmined.PMMinED), Usage: "pmmined, mined or exact"},
			&cli.StringFlag{Name: "out", Usage: "also write the map to `FILE.tsv`: user_id, delta_id (-1: unmapped), kind"},
			&cli.StringFlag{Name: "cache-dir", Usage: "reuse the map saved in `DIR`, or save it there"},
			&cli.IntFlag{Name: "examples", Value: 4, Usage: "examples shown for each kind"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return cli.Exit("map: unexpected arguments; name the files with --user and --delta", 2)
			}
			strategy, err := pmmined.ParseStrategy(c.String("strategy"))
			if err != nil {
				return cli.Exit("map: "+err.Error(), 2)
			}
			userPath, deltaPath := c.String("user"), c.String("delta")
			user, err := vocabfile.Open(userPath)
			if err != nil {
				return fmt.Errorf("map: user vocabulary: %w", err)
			}
			delta, err := vocabfile.Open(deltaPath)
			if err != nil {
				return fmt.Errorf("map: delta vocabulary: %w", err)
			}
			m, err := pmmined.LoadOrBuild(c.String("cache-dir"), user, delta, strategy)
			if err != nil {
				return fmt.Errorf("map %s onto %s: %w", userPath, deltaPath, err)
			}
			if err := pmmined.WriteSummary(c.App.Writer, m, user, delta, c.Int("examples")); err != nil {
				return fmt.Errorf("map: %w", err)
			}
			if out := c.String("out"); out != "" {
				if err := pmmined.WriteTSVFile(out, m); err != nil {
					return fmt.Errorf("map: %w", err)
				}
				slog.Info("wrote token map", "path", out, "tokens", len(m.ToDelta))
			}
			return nil
		},
	}
}
