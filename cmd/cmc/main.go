// Command cmc trains a tiny delta model against a frozen template LLM once,
// then improves any other LLM with it at inference time (Cross-model Control).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "cmc",
		Usage: "Cross-model Control: train one tiny delta model once, improve many LLMs with it",
		Description: "A delta model learns a shift of a template LLM's logits. At inference the shift is added\n" +
			"to any user LLM's log-probabilities, through a token map when the vocabularies differ.\n" +
			"Models are GGUF files as llama.cpp reads them.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log debug messages on stderr"},
		},
		Before: func(c *cli.Context) error {
			level := slog.LevelInfo
			if c.Bool("verbose") {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
			return nil
		},
		Commands:             commands(),
		EnableBashCompletion: true,
	}
	// Ctrl-C cancels the context that long commands watch, so they can save
	// their work (a training checkpoint) before exiting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "cmc:", err)
		var exit cli.ExitCoder
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		os.Exit(1)
	}
}
