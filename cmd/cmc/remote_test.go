package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startServe runs `cmc serve` on a free loopback port with args and returns
// its API's base URL; the server is killed when the test ends.
func startServe(t testing.TB, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := cmcCommand(append([]string{"serve", "--addr", addr, "--threads", "1"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	for {
		if r, err := http.Get("http://" + addr + "/health"); err == nil {
			r.Body.Close()
			return "http://" + addr + "/v1"
		}
		select {
		case <-exited:
			t.Fatalf("cmc serve exited before listening:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestRemoteGenerateMatchesLocal: `cmc generate` with --model pointing at
// `cmc serve` on loopback prints the local greedy text, at alpha 0 (the
// served model alone) and through the whole delta path with stories260K
// steered by itself at alpha 1: log_softmax(x) + x has x's argmax, which
// is always among the engine's top candidates, so the top-k cut removes
// nothing and a misaligned delta context or a wrongly mapped candidate
// changes the text. (cmc serve offers at most 20 candidates.)
func TestRemoteGenerateMatchesLocal(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	base := startServe(t, "--model", model, "--no-delta", "--api-key", "sekret")
	common := []string{"--template", "raw", "--delta-template", "raw", "--prompt", "Once upon a time",
		"--temp", "0", "--max-tokens", "40", "--threads", "1"}
	run := func(args ...string) string {
		t.Helper()
		out, err := cmcCommand(append(append([]string{"generate"}, args...), common...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("generate %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	local := run("--model", model, "--no-delta")
	if got := run("--model", base, "--remote-key", "sekret", "--no-delta"); got != local {
		t.Errorf("remote at alpha 0 printed\n%q\nthe local model\n%q", got, local)
	}
	localDelta := run("--model", model, "--delta", model, "--alpha", "1")
	if got := run("--model", base, "--remote-key", "sekret", "--remote-top-k", "20", "--delta", model, "--alpha", "1"); got != localDelta {
		t.Errorf("remote with the self-delta printed\n%q\nthe local path\n%q", got, localDelta)
	}
}

// TestRemoteFlagsChecked: a served model with a chat template or a bad
// top-k is refused before any request, with the reason.
func TestRemoteFlagsChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--template", "chat"}, "chat template is not available"},
		{[]string{"--remote-top-k", "0"}, "--remote-top-k 0"},
	} {
		args := append([]string{"generate", "--model", "http://127.0.0.1:1/v1", "--remote-model", "m", "--prompt", "x"}, c.args...)
		out, err := cmcCommand(args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%q: %v\n%s\nwant an error containing %q", c.args, err, out, c.want)
		}
	}
}
