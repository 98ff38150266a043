package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/runner"
)

func chatCommand() *cli.Command {
	return &cli.Command{
		Name:  "chat",
		Usage: "talk with a user LLM steered by a delta, interactively",
		Description: "Type a message and press Enter. Commands: /alpha X (delta strength; 0 turns it off),\n" +
			"/reset (forget the conversation), /help, /quit (or Ctrl-D).\n\n" +
			"Example:\n  cmc chat --model llama-2-13b-chat.Q4_K_M.gguf --delta delta.gguf --alpha 0.8",
		Flags:  append(modelFlags(), sampleFlags()...),
		Action: runChat,
	}
}

func runChat(c *cli.Context) error {
	rm, err := loadRuntime(c)
	if err != nil {
		return err
	}
	defer rm.Close()
	opt := sampleOptions(c)
	alpha := rm.Alpha
	var history []llama.Message
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<16), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	status := func() {
		if rm.Delta == nil {
			fmt.Fprintln(out, "(no delta: the user model alone)")
		} else {
			fmt.Fprintf(out, "(delta on, alpha %g; %s)\n", alpha, rm.MapStats)
		}
	}
	status()
	for {
		fmt.Fprint(out, "> ")
		out.Flush()
		if !in.Scan() {
			fmt.Fprintln(out)
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		switch {
		case line == "":
			continue
		case line == "/quit" || line == "/exit":
			return nil
		case line == "/reset":
			history = nil
			fmt.Fprintln(out, "(conversation cleared)")
			continue
		case line == "/help":
			fmt.Fprintln(out, "/alpha X  set the delta's strength (0: off)\n/reset    forget the conversation\n/quit     leave")
			continue
		case strings.HasPrefix(line, "/alpha"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "/alpha")), 64)
			if err != nil {
				fmt.Fprintln(out, "usage: /alpha 0.5")
				continue
			}
			if err := control.CheckAlpha(v); err != nil {
				fmt.Fprintln(out, err)
				continue
			}
			alpha = float32(v)
			status()
			continue
		case strings.HasPrefix(line, "/"):
			fmt.Fprintf(out, "unknown command %s; /help lists them\n", strings.Fields(line)[0])
			continue
		}
		reply, err := chatTurn(c.Context, rm, history, line, alpha, opt, out)
		if err != nil {
			return err
		}
		history = append(history, llama.Message{Role: "user", Content: line}, llama.Message{Role: "assistant", Content: reply})
	}
}

// chatTurn answers line after history, streaming the reply to out.
func chatTurn(ctx context.Context, rm *runner.Runner, history []llama.Message, line string, alpha float32, opt control.Options, out *bufio.Writer) (string, error) {
	msgs := append(history[:len(history):len(history)], llama.Message{Role: "user", Content: line})
	res, err := rm.Generate(ctx, runner.Request{Messages: msgs, Alpha: alpha, Options: opt}, func(piece string) error {
		if _, err := io.WriteString(out, piece); err != nil {
			return err
		}
		return out.Flush()
	})
	fmt.Fprintln(out)
	return res.Text, err
}
