package main

import "github.com/urfave/cli/v2"

// commands lists cmc's subcommands; each lives in a file of its own name.
func commands() []*cli.Command {
	return []*cli.Command{
		inspectCommand(),
		mapCommand(),
		trainCommand(),
		evalCommand(),
		generateCommand(),
		chatCommand(),
		serveCommand(),
	}
}
