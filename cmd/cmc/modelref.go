package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/modelstore"
)

// withModelRefs makes every command (and subcommand) accept
// "ollama:NAME[:TAG]" wherever it takes a model file: before the command
// runs, each such flag value is replaced by the file it names, so the
// commands themselves only ever see paths.
func withModelRefs(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		before := cmd.Before
		cmd.Before = func(c *cli.Context) error {
			if err := resolveModelFlags(c); err != nil {
				return err
			}
			if before != nil {
				return before(c)
			}
			return nil
		}
		withModelRefs(cmd.Subcommands)
	}
	return cmds
}

// resolveModelFlags replaces the model references among c's flags by the
// files they name: the flags that take a model file in some command (the
// user model, the delta, train's template and vocabulary, map's user
// vocabulary). Plain paths, and "none", "new" or "auto", stay as they are.
func resolveModelFlags(c *cli.Context) error {
	for _, name := range []string{"model", "delta", "template", "vocab", "user"} {
		ref := c.String(name) // "" when the command has no such flag
		path, err := modelstore.Resolve(ref)
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		if path != ref {
			if err := c.Set(name, path); err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
			if c.App.Metadata == nil {
				c.App.Metadata = map[string]any{}
			}
			c.App.Metadata[refKey(name)] = ref
		}
	}
	return nil
}

func refKey(flag string) string { return "model-ref:" + flag }

// modelName is what a model given by flag is called to users (cmc serve's
// /v1/models): an ollama model by its ollama name, a file by its base name
// without ".gguf".
func modelName(c *cli.Context, flag string) string {
	if ref, ok := c.App.Metadata[refKey(flag)].(string); ok {
		return strings.TrimPrefix(ref, modelstore.Scheme)
	}
	return strings.TrimSuffix(filepath.Base(c.String(flag)), ".gguf")
}
