package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/evaluate"
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

// TestRemoteEvalChatServe: eval, chat and serve with --model pointing at
// `cmc serve`. eval's greedy answers are the local ones, and with
// stories260K as its own delta the steered answers are too (the argmax
// argument above) while the steered log-probs differ from the engine's;
// chat prints the local reply; a second cmc serve in front of the first
// answers what the first answers, and refuses logprobs.
func TestRemoteEvalChatServe(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	base := startServe(t, "--model", model, "--no-delta")
	dir := t.TempDir()
	forget := filepath.Join(dir, "forget.json")
	if err := os.WriteFile(forget, []byte(tofuTestSets["forget"]), 0o644); err != nil {
		t.Fatal(err)
	}
	eval := func(m string) evaluate.Doc {
		t.Helper()
		out := filepath.Join(dir, "eval.json")
		args := []string{"eval", "--model", m, "--delta", model, "--template", "qa", "--delta-template", "qa", "--task", "tofu",
			"--threads", "1", "--max-tokens", "24", "--data", "forget=" + forget, "--json", out}
		if b, err := cmcCommand(args...).CombinedOutput(); err != nil {
			t.Fatalf("eval --model %s: %v\n%s", m, err, b)
		}
		var doc evaluate.Doc
		b, err := os.ReadFile(out)
		if err == nil {
			err = json.Unmarshal(b, &doc)
		}
		if err != nil || len(doc.Files) != 1 || len(doc.Files[0].Items) != 3 {
			t.Fatalf("eval --model %s: %v %+v", m, err, doc)
		}
		return doc
	}
	local, remote := eval(model).Files[0].Items, eval(base).Files[0].Items
	for i, it := range remote {
		if it.User.Generation != local[i].User.Generation || it.Delta.Generation != it.User.Generation {
			t.Errorf("question %d: remote answers %q and %q (with the delta), local %q", i, it.User.Generation, it.Delta.Generation, local[i].User.Generation)
		}
		a, c := float64(it.User.AnswerLogProb), float64(it.Delta.AnswerLogProb)
		if !(a < 0) || !(c < 0) || a == c {
			t.Errorf("question %d: answer log-probs %g alone and %g steered: want two different negative numbers", i, a, c)
		}
	}

	// NLL from the engine's echo scores every token of a text but the end
	// token, which the engine does not echo; at alpha 0 both columns are
	// the engine's own.
	nll := func(m string) evaluate.Doc {
		t.Helper()
		out := filepath.Join(dir, "nll.json")
		args := []string{"eval", "--model", m, "--delta", model, "--alpha", "0", "--template", "raw", "--delta-template", "raw",
			"--threads", "1", "--data", fixture(t, "datasets/tinystories/tinystories_sample.txt"), "--format", "text", "--limit", "2", "--json", out}
		if b, err := cmcCommand(args...).CombinedOutput(); err != nil {
			t.Fatalf("eval nll --model %s: %v\n%s", m, err, b)
		}
		var doc evaluate.Doc
		b, err := os.ReadFile(out)
		if err == nil {
			err = json.Unmarshal(b, &doc)
		}
		if err != nil || len(doc.Results) != 3 {
			t.Fatalf("eval nll --model %s: %v %+v", m, err, doc)
		}
		return doc
	}
	localNLL, remoteNLL := nll(model), nll(base)
	if n, want := remoteNLL.Results[2].User, localNLL.Results[2].User-2; n != want {
		t.Errorf("remote NLL over %g tokens, want the local %g less the 2 end tokens", float64(n), float64(localNLL.Results[2].User))
	}
	if r := remoteNLL.Results[0]; r.User != r.Delta || !(r.User > 0) {
		t.Errorf("remote NLL at alpha 0: %g alone, %g with the delta, want one positive number", float64(r.User), float64(r.Delta))
	}

	chat := func(m string) string {
		t.Helper()
		cmd := cmcCommand("chat", "--model", m, "--no-delta", "--template", "raw", "--temp", "0", "--max-tokens", "20", "--threads", "1")
		cmd.Stdin = strings.NewReader("Once upon a time\n/quit\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chat --model %s: %v", m, err)
		}
		// The status line names the model; the reply follows it.
		_, reply, _ := strings.Cut(string(out), "\n")
		return reply
	}
	if got, want := chat(base), chat(model); got != want || len(want) < 20 {
		t.Errorf("remote chat printed %q, local %q", got, want)
	}

	front := startServe(t, "--model", base, "--delta", model, "--alpha", "0")
	complete := func(url, extra string) (int, string) {
		t.Helper()
		body := `{"model":"stories260K","prompt":"Once upon a time","max_tokens":16,"temperature":0` + extra + `}`
		r, err := http.Post(url+"/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var res struct {
			Choices []struct{ Text string } `json:"choices"`
		}
		json.NewDecoder(r.Body).Decode(&res)
		if len(res.Choices) == 0 {
			return r.StatusCode, ""
		}
		return r.StatusCode, res.Choices[0].Text
	}
	if code, got := complete(front, ""); code != http.StatusOK || got == "" {
		t.Fatalf("serve in front of serve: %d %q", code, got)
	} else if _, want := complete(base, ""); got != want {
		t.Errorf("serve in front of serve answered %q, the engine %q", got, want)
	}
	if code, _ := complete(front, `,"logprobs":2`); code != http.StatusBadRequest {
		t.Errorf("logprobs through a remote user model: status %d, want 400", code)
	}
}
