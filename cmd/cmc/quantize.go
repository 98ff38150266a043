package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/internal/atomicfile"
	"github.com/cmc-dev/cmc/internal/cpuinfo"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/modelstore"
)

// quantizeCommand writes a quantized copy of a GGUF model through
// llama.cpp's own quantizer, so that K-quant users and templates can be
// made from any F32/F16/BF16 model.
func quantizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "quantize",
		Usage:     "quantize a GGUF model with llama.cpp's quantizer: cmc quantize IN.gguf OUT.gguf TYPE",
		ArgsUsage: "IN.gguf OUT.gguf TYPE",
		Description: "TYPE is one of " + strings.Join(llama.FileTypeNames(), ", ") + ".\n" +
			"Mixed types (Q4_K_M, ...) keep some tensors at a higher precision, as llama-quantize does.\n" +
			"OUT appears only when the whole file is written; Ctrl-C abandons the run and leaves no OUT.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "threads", Value: cpuinfo.PhysicalCores(), Usage: "CPU threads quantizing (default: the physical cores)"},
			&cli.BoolFlag{Name: "allow-requantize", Usage: "quantize an already quantized input again (each step loses precision)"},
		},
		Action: runQuantize,
	}
}

func runQuantize(c *cli.Context) error {
	if c.NArg() != 3 {
		return cli.Exit("quantize: want IN.gguf OUT.gguf TYPE", 2)
	}
	in, err := modelstore.Resolve(c.Args().Get(0))
	if err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	out := c.Args().Get(1)
	typ, err := llama.ParseFileType(c.Args().Get(2))
	if err != nil {
		return cli.Exit("quantize: "+err.Error(), 2)
	}
	// What an earlier run killed midway left behind.
	if stale, err := atomicfile.RemoveStale(out); err == nil && len(stale) > 0 {
		slog.Info("removed the temporary files of an interrupted run", "files", stale)
	}
	st, _ := os.Stderr.Stat()
	tty := st != nil && st.Mode()&os.ModeCharDevice != 0
	start := time.Now()
	last := -1
	progress := func(done, total int) {
		// Rewritten in place on a terminal; at each tenth otherwise.
		if tty {
			fmt.Fprintf(os.Stderr, "\r\033[Kquantizing to %s: tensor %d/%d", typ.Name, done, total)
		} else if tenth := 10 * done / total; tenth != last {
			last = tenth
			fmt.Fprintf(os.Stderr, "quantizing to %s: tensor %d/%d\n", typ.Name, done, total)
		}
	}
	// llama.cpp cannot be stopped midway: on Ctrl-C the command returns,
	// and the process exit ends the quantizer; Quantize's temporary file
	// is removed first, so no partial OUT is ever left.
	done := make(chan error, 1)
	go func() {
		done <- llama.Quantize(in, out, typ, llama.QuantizeOptions{Threads: c.Int("threads"), AllowRequantize: c.Bool("allow-requantize"), Progress: progress})
	}()
	select {
	case err = <-done:
	case <-c.Context.Done():
		if _, err := atomicfile.RemoveStale(out); err != nil {
			slog.Warn("quantize: could not remove the temporary file", "out", out, "err", err)
		}
		return cli.Exit(fmt.Sprintf("quantize: %v; %s not written", context.Cause(c.Context), out), 130)
	}
	if tty {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	before, _ := os.Stat(in)
	after, err := os.Stat(out)
	if err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "wrote %s (%s, %.1f MiB from %.1f MiB, %.1f s)\n", out, typ.Name,
		float64(after.Size())/(1<<20), float64(before.Size())/(1<<20), time.Since(start).Seconds())
	return nil
}
