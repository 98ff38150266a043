package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/internal/testfixture"
)

// TestMain lets tests run the real command in a child process: the test
// binary re-executes itself with CMC_RUN_MAIN=1 and cmc's arguments.
func TestMain(m *testing.M) {
	if os.Getenv("CMC_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const fixtures = "../../../shared/fixtures" // from cmd/cmc

func fixture(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(fixtures, rel)
	if _, err := os.Stat(p); err != nil {
		testfixture.Missing(t, "fixture %s not found (expected ../shared/fixtures beside the repository): %v", p, err)
	}
	return p
}

func cmcCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CMC_RUN_MAIN=1")
	return cmd
}

// TestResumeAfterKill trains once without interruption, and once killed
// with SIGKILL right after its first checkpoint and resumed: both runs must
// end with the same weights.
func TestResumeAfterKill(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "stories.txt")
	src, err := os.ReadFile(fixture(t, "datasets/tinystories/tinystories_val_sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(text, src[:24000], 0o644); err != nil {
		t.Fatal(err)
	}
	args := func(out string, extra ...string) []string {
		return append([]string{"train", "--template", fixture(t, "models/stories260K/stories260K.gguf"),
			"--delta", "new", "--dim", "32", "--layers", "2", "--heads", "4", "--hidden", "64",
			"--data", text, "--format", "text", "--prompt-template", "raw", "--max-len", "96",
			"--epochs", "2", "--batch", "4", "--micro-batch", "2", "--lr", "1e-3",
			"--threads", "1", "--checkpoint-every", "3", "--out", out}, extra...)
	}

	whole := filepath.Join(dir, "whole.gguf")
	if out, err := cmcCommand(args(whole)...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}

	killed := filepath.Join(dir, "killed.gguf")
	cmd := cmcCommand(args(killed)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
wait:
	for {
		select {
		case err := <-exited:
			t.Fatalf("the run ended (%v) before it could be killed", err)
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("no checkpoint appeared in 2 minutes")
		case <-time.After(5 * time.Millisecond):
			if _, err := os.Stat(killed + ".ckpt"); err == nil {
				break wait
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if _, err := os.Stat(killed); err == nil {
		t.Fatal("the killed run wrote its final model")
	}
	if out, err := cmcCommand(args(killed, "--resume")...).CombinedOutput(); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out)
	}

	a, err := delta.LoadGGUF(whole)
	if err != nil {
		t.Fatal(err)
	}
	b, err := delta.LoadGGUF(killed)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Params, b.Params) {
		t.Fatal("the killed and resumed run ends with other weights than the uninterrupted one")
	}
}

// TestTrainRefusesMismatchedVocab: a delta with another vocabulary stops the
// run before any work, naming both files.
func TestTrainRefusesMismatchedVocab(t *testing.T) {
	tmpl := fixture(t, "models/stories260K/stories260K.gguf")
	other := fixture(t, "models/llama-2-tiny-random/llama-2-tiny-random.gguf")
	out, err := cmcCommand("train", "--template", tmpl, "--delta", other, "--data", fixture(t, "datasets/tinystories/tinystories_val_sample.txt"), "--out", filepath.Join(t.TempDir(), "d.gguf")).CombinedOutput()
	if err == nil {
		t.Fatal("training with mismatched vocabularies succeeded")
	}
	for _, want := range []string{"share one vocabulary", tmpl, other, "512", "32000"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error %q does not mention %q", out, want)
		}
	}
}

// TestGenerateAlphaZeroPrintsGolden is the acceptance command: the
// reference greedy text of stories260K, through cmc with a delta at alpha
// 0, and with --no-delta.
func TestGenerateAlphaZeroPrintsGolden(t *testing.T) {
	b, err := os.ReadFile(fixture(t, "models/stories260K/golden_greedy_once_upon_a_time.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Text string `json:"greedy_text_including_prompt"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	model := fixture(t, "models/stories260K/stories260K.gguf")
	for _, extra := range [][]string{{"--delta", model, "--alpha", "0"}, {"--delta", model, "--no-delta"}} {
		args := append([]string{"generate", "--model", model, "--prompt", "Once upon a time", "--temp", "0", "--max-tokens", "60", "--threads", "1"}, extra...)
		out, err := cmcCommand(args...).Output()
		if err != nil {
			t.Fatalf("%v: %v", extra, err)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != g.Text {
			t.Errorf("%v printed\n%q\nwant\n%q", extra, got, g.Text)
		}
	}
}

// TestServeRealModel starts `cmc serve` on stories260K and asks it, over
// loopback, for the greedy continuation (whole and streamed), with the
// API key enforced; SIGTERM then shuts it down cleanly.
func TestServeRealModel(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := cmcCommand("serve", "--model", model, "--delta", model, "--alpha", "0", "--addr", addr, "--api-key", "secret", "--threads", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	post := func(body, key string) (*http.Response, error) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/completions", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		return http.DefaultClient.Do(req)
	}
	// Wait for the server to listen.
	for i := 0; ; i++ {
		if r, err := http.Get("http://" + addr + "/health"); err == nil {
			r.Body.Close()
			break
		}
		if i > 500 {
			t.Fatal("server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	body := `{"model":"stories260K","prompt":"Once upon a time","max_tokens":12,"temperature":0}`
	if r, err := post(body, ""); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the key: %v %v", r, err)
	}
	r, err := post(body, "secret")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Choices []struct{ Text string } `json:"choices"`
	}
	if err := json.NewDecoder(r.Body).Decode(&res); err != nil || len(res.Choices) != 1 {
		t.Fatalf("response: %v %+v", err, res)
	}
	r.Body.Close()
	if want := ", there was a little girl named Lily. She loved"; !strings.HasPrefix(res.Choices[0].Text, want[:20]) {
		t.Fatalf("completion %q, want the golden continuation %q...", res.Choices[0].Text, want)
	}
	r, err = post(strings.Replace(body, `"temperature":0`, `"temperature":0,"stream":true`, 1), "secret")
	if err != nil {
		t.Fatal(err)
	}
	sse, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(sse), "data: [DONE]") || !strings.Contains(string(sse), "there") {
		t.Fatalf("stream: %s", sse)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("server exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop after SIGTERM")
	}
}
