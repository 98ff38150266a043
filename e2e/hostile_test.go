package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/internal/hostile"
)

// memoryLimitKiB bounds the address space of every cmc run below (ulimit
// -v): far above what stories260K needs, far below the 27 GB a 7B header
// claims, so an allocation sized by a lie fails instead of passing unseen
// on a large machine.
const memoryLimitKiB = 4 << 20

// crashMarks are what a process that did not end cleanly leaves on stderr.
var crashMarks = []string{"panic", "fatal error", "GGML_ASSERT", "SIGSEGV", "SIGABRT", "goroutine "}

// TestHostileFiles builds bin/cmc and feeds every hostile file of package
// hostile to every command that takes a model, in every role (user model,
// delta, training template): each run must end with a non-zero exit and an
// error naming the file, within bounded memory, with no crash.
func TestHostileFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bin/cmc")
	}
	good := fixture(t, "models/stories260K/stories260K.gguf")
	text := fixture(t, "datasets/tinystories/tinystories_val_sample.txt")
	dir := t.TempDir()
	cases, err := hostile.Files(dir, good, fixture(t, "gguf-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "stories.txt")
	src, err := os.ReadFile(text)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, src[:4000], 0o644); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(dir, "cmc")
	build := exec.Command("go", "build", "-o", bin, "github.com/cmc-dev/cmc/cmd/cmc")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	train := func(template, delta string) []string {
		return []string{"train", "--template", template, "--delta", delta,
			"--dim", "32", "--layers", "2", "--heads", "4", "--hidden", "64",
			"--data", data, "--format", "text", "--prompt-template", "raw", "--max-len", "64",
			"--epochs", "1", "--batch", "2", "--micro-batch", "1", "--threads", "1",
			"--out", filepath.Join(dir, "out.gguf")}
	}
	generate := func(model, delta string) []string {
		return []string{"generate", "--model", model, "--delta", delta, "--template", "raw", "--delta-template", "raw",
			"--prompt", "Once upon a time", "-n", "8", "--temp", "0", "--threads", "1", "--ctx", "128"}
	}
	eval := func(model, delta string) []string {
		return []string{"eval", "--model", model, "--delta", delta, "--template", "raw", "--delta-template", "raw",
			"--data", data, "--format", "text", "--limit", "2", "--threads", "1", "--ctx", "128"}
	}
	serve := func(model, delta string) []string {
		return []string{"serve", "--model", model, "--delta", delta, "--addr", "127.0.0.1:0", "--threads", "1", "--ctx", "128"}
	}

	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			runs := map[string][]string{
				"generate-user":  generate(c.Path, "none"),
				"generate-delta": generate(good, c.Path),
				"eval-user":      eval(c.Path, "none"),
				"eval-delta":     eval(good, c.Path),
				"serve-delta":    serve(good, c.Path),
				"train-template": train(c.Path, "new"),
				"train-delta":    train(good, c.Path),
			}
			if !c.Loads {
				// A user model that loads is only found out by its first
				// logits, which a server computes at its first request.
				runs["serve-user"] = serve(c.Path, "none")
			}
			for name, args := range runs {
				t.Run(name, func(t *testing.T) {
					out, code := runCMC(t, bin, args...)
					if code == 0 {
						t.Fatalf("cmc %s exited 0\n%s", strings.Join(args, " "), out)
					}
					checkClean(t, out, code)
					if !strings.Contains(out, c.Path) {
						t.Errorf("cmc %s: the error does not name %s:\n%s", strings.Join(args, " "), c.Path, out)
					}
				})
			}
			// inspect and map read what they can: a file they describe or
			// map may exit 0, but never crash, and a refusal names it.
			for name, args := range map[string][]string{
				"inspect":   {"inspect", c.Path},
				"map-user":  {"map", "--user", c.Path, "--delta", good},
				"map-delta": {"map", "--user", good, "--delta", c.Path},
			} {
				t.Run(name, func(t *testing.T) {
					out, code := runCMC(t, bin, args...)
					checkClean(t, out, code)
					if code != 0 && !strings.Contains(out, c.Path) {
						t.Errorf("cmc %s failed without naming %s:\n%s", strings.Join(args, " "), c.Path, out)
					}
				})
			}
		})
	}
}

// runCMC runs bin with args under the memory limit and returns its stderr
// (where errors and crashes go; stdout may print any token of a
// vocabulary) and exit code. A run still going after a minute has hung
// (each of these fails within a second when it works) and is killed.
func runCMC(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	script := "ulimit -v " + strconv.Itoa(memoryLimitKiB) + " && exec \"$0\" \"$@\""
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", script, bin}, args...)...)
	cmd.Env = append(os.Environ(), "CMC_LLAMA_LOG=")
	var stdout, out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &out
	err := cmd.Run()
	t.Logf("cmc %s:\n%s\n%s", strings.Join(args, " "), strings.TrimSpace(stdout.String()), strings.TrimSpace(out.String()))
	if ctx.Err() != nil {
		t.Fatalf("cmc %s did not exit within a minute:\n%s", strings.Join(args, " "), out.String())
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// checkClean fails the test when stderr or the exit code shows a crash
// rather than an error: a signal (the shell reports 128+n), a Go
// panic or fatal error, a llama.cpp assertion.
func checkClean(t *testing.T, out string, code int) {
	t.Helper()
	if code > 128 || code < 0 {
		t.Errorf("exit code %d: killed by a signal\n%s", code, out)
	}
	for _, mark := range crashMarks {
		if strings.Contains(out, mark) {
			t.Errorf("output contains %q:\n%s", mark, out)
		}
	}
}
