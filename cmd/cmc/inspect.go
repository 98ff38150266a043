package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/modelstore"
)

// inspectCommand prints what a GGUF file holds: architecture,
// hyper-parameters, vocabulary, metadata and tensors. The rendering lives
// in gguf.Summary so that it is tested without building this command.
func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe a GGUF file: hyper-parameters, vocabulary, metadata, tensors",
		ArgsUsage: "FILE.gguf",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the description as JSON"},
			&cli.BoolFlag{Name: "all-keys", Usage: "also list the tokenizer arrays in the metadata table"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("inspect: want exactly one FILE.gguf argument", 2)
			}
			path, err := modelstore.Resolve(c.Args().First())
			if err != nil {
				return fmt.Errorf("inspect: %w", err)
			}
			f, err := gguf.Open(path)
			if err != nil {
				return fmt.Errorf("inspect: %w", err)
			}
			defer f.Close()
			s := f.Summary()
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false) // pieces like <s> stay readable
				if err := enc.Encode(s); err != nil {
					return fmt.Errorf("inspect %s: %w", path, err)
				}
				return nil
			}
			if err := s.WriteText(c.App.Writer, c.Bool("all-keys")); err != nil {
				return fmt.Errorf("inspect %s: %w", path, err)
			}
			return nil
		},
	}
}
