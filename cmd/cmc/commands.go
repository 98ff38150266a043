package main

import "github.com/urfave/cli/v2"

// commands lists cmc's subcommands; each lives in a file of its own name.
// Every model flag of theirs also takes ollama:NAME (modelref.go).
func commands() []*cli.Command {
	return withModelRefs([]*cli.Command{
		inspectCommand(),
		mapCommand(),
		trainCommand(),
		evalCommand(),
		generateCommand(),
		chatCommand(),
		serveCommand(),
		quantizeCommand(),
	})
}
