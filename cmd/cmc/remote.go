package main

import (
	"github.com/urfave/cli/v2"
)

// remoteTopKUsage is said in --help and the README: it is the one thing a
// remote user model cannot do as a local one does.
const remoteTopKUsage = "with --model http(s)://HOST:PORT/v1: candidates asked of the served model per token; " +
	"the delta re-ranks only these, so only they can be chosen (at alpha 0 with --temp 0 the served model's own greedy text)"

// Flags for a user model served by another engine (--model http(s)://...).
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "remote-key", EnvVars: []string{"CMC_REMOTE_KEY"}, Usage: "with a served --model: its API key, sent as \"Authorization: Bearer KEY\""},
		&cli.StringFlag{Name: "remote-model", Usage: "with a served --model: the model name the engine serves (empty: the only one its /v1/models lists)"},
		&cli.IntFlag{Name: "remote-top-k", Value: 20, Usage: remoteTopKUsage},
	}
}
