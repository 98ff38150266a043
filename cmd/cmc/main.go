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
	ctx, interrupted := watchSignals()
	if err := app.RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "cmc:", err)
		var exit cli.ExitCoder
		switch {
		case errors.As(err, &exit):
			os.Exit(exit.ExitCode())
		case interrupted() != nil:
			os.Exit(signalExitCode(interrupted()))
		}
		os.Exit(1)
	}
}

// watchSignals returns a context that Ctrl-C (SIGINT) or SIGTERM cancels,
// so that long commands can stop cleanly and save their work (a training
// checkpoint), and a function that returns the signal that cancelled it,
// if any. A second signal exits at once, as a shell user expects when the
// clean stop takes too long.
func watchSignals() (context.Context, func() os.Signal) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		first := <-sigs
		cancel(signalError{first})
		fmt.Fprintf(os.Stderr, "cmc: %v: stopping cleanly (again to exit at once)\n", first)
		second := <-sigs
		fmt.Fprintf(os.Stderr, "cmc: %v again: exiting at once\n", second)
		os.Exit(signalExitCode(second))
	}()
	return ctx, func() os.Signal {
		var s signalError
		if errors.As(context.Cause(ctx), &s) {
			return s.sig
		}
		return nil
	}
}

// signalError is the cause of a context cancelled by a signal.
type signalError struct{ sig os.Signal }

func (e signalError) Error() string { return e.sig.String() }

// signalExitCode is the shell's status of a process ended by sig: 128 + its
// number (130 for Ctrl-C).
func signalExitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}
