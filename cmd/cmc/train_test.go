package main

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/gguf"
)

// trainFixture is a tiny training setup on stories260K: a text file of a
// few dozen sequences in dir.
type trainFixture struct {
	dir, template, text string
}

func newTrainFixture(t *testing.T) trainFixture {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(fixture(t, "datasets/tinystories/tinystories_val_sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "stories.txt")
	if err := os.WriteFile(text, src[:12000], 0o644); err != nil {
		t.Fatal(err)
	}
	return trainFixture{dir: dir, template: fixture(t, "models/stories260K/stories260K.gguf"), text: text}
}

// args trains a new 2-layer delta for the given epochs, one micro-batch of
// 2 per step, without periodic checkpoints; extra flags come last and win.
func (f trainFixture) args(out string, epochs int, extra ...string) []string {
	return append([]string{"train", "--template", f.template,
		"--delta", "new", "--dim", "32", "--layers", "2", "--heads", "4", "--hidden", "64",
		"--data", f.text, "--format", "text", "--prompt-template", "raw", "--max-len", "64",
		"--epochs", strconv.Itoa(epochs), "--batch", "2", "--micro-batch", "2", "--lr", "1e-3",
		"--threads", "1", "--checkpoint-every", "0", "--out", out}, extra...)
}

// training is a `cmc train` child process whose stderr is watched.
type training struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	marked chan struct{} // closed when a line holding the marker appears
	exited chan error
}

// startTraining starts cmc with args and watches its stderr for marker:
// "step 1/", the first step's progress line, unless told otherwise.
func startTraining(t *testing.T, args []string, marker ...string) *training {
	t.Helper()
	mark := "step 1/"
	if len(marker) > 0 {
		mark = marker[0]
	}
	r := &training{cmd: cmcCommand(args...), marked: make(chan struct{}), exited: make(chan error, 1)}
	pipe, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pipe)
		once := sync.Once{}
		for sc.Scan() {
			r.mu.Lock()
			r.stderr.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), mark) {
				once.Do(func() { close(r.marked) })
			}
		}
	}()
	go func() {
		<-scanned
		r.exited <- r.cmd.Wait()
	}()
	t.Cleanup(func() { r.cmd.Process.Kill() })
	return r
}

// waitMarker waits for the marker line (by default the first step).
func (r *training) waitMarker(t *testing.T) {
	t.Helper()
	select {
	case <-r.marked:
	case err := <-r.exited:
		t.Fatalf("cmc ended (%v) before its marker line:\n%s", err, r.output())
	case <-time.After(2 * time.Minute):
		t.Fatalf("no marker line in 2 minutes:\n%s", r.output())
	}
}

// wait returns the exit status and stderr.
func (r *training) wait(t *testing.T) (int, string) {
	t.Helper()
	select {
	case err := <-r.exited:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		if exit != nil && !exit.Exited() {
			t.Fatalf("cmc was killed by %v:\n%s", exit.Sys(), r.output())
		}
		return r.cmd.ProcessState.ExitCode(), r.output()
	case <-time.After(2 * time.Minute):
		t.Fatalf("cmc did not exit in 2 minutes:\n%s", r.output())
	}
	return 0, ""
}

func (r *training) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// assertNoCrash fails on any sign of a crash in a command's output.
func assertNoCrash(t *testing.T, out string) {
	t.Helper()
	for _, bad := range []string{"panic", "SIGSEGV", "fatal error", "GGML_ASSERT", "goroutine "} {
		if strings.Contains(out, bad) {
			t.Fatalf("output shows a crash (%q):\n%s", bad, out)
		}
	}
}

func onDisk(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestTrainInterruptSavesCheckpoint: Ctrl-C during training exits 130 after
// saving a checkpoint of the last finished step, writes no model, and
// --resume finishes the run, removing the temporary file a killed
// checkpoint write left.
func TestTrainInterruptSavesCheckpoint(t *testing.T) {
	f := newTrainFixture(t)
	out := filepath.Join(f.dir, "d.gguf")
	r := startTraining(t, f.args(out, 8))
	r.waitMarker(t)
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code, stderr := r.wait(t)
	assertNoCrash(t, stderr)
	if code != 130 {
		t.Fatalf("exit status %d after Ctrl-C, want 130:\n%s", code, stderr)
	}
	ckpt := out + ".ckpt"
	if !strings.Contains(stderr, "checkpoint saved to "+ckpt) {
		t.Errorf("stderr does not say where the checkpoint went:\n%s", stderr)
	}
	m, opt, _, err := delta.LoadCheckpoint(ckpt)
	if err != nil {
		t.Fatalf("checkpoint after Ctrl-C: %v", err)
	}
	if opt.Step < 1 || len(m.Params) == 0 {
		t.Fatalf("checkpoint at step %d", opt.Step)
	}
	if onDisk(out) || onDisk(filepath.Join(f.dir, "d.loss.csv")) {
		t.Fatal("the interrupted run wrote its model or loss curve")
	}

	// A SIGKILL in the middle of a checkpoint write leaves this behind.
	stale := filepath.Join(f.dir, ".d.gguf.ckpt.tmp123456")
	if err := os.WriteFile(stale, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	resumed, err := cmcCommand(f.args(out, 8, "--resume")...).CombinedOutput()
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, resumed)
	}
	if onDisk(stale) {
		t.Error("the stale temporary checkpoint is still there")
	}
	if !onDisk(out) || !onDisk(filepath.Join(f.dir, "d.loss.csv")) {
		t.Fatal("the resumed run wrote no model or loss curve")
	}
}

// TestTrainSecondInterruptExitsAtOnce: two Ctrl-Cs in a row end the
// process with status 130, without waiting for a clean stop.
func TestTrainSecondInterruptExitsAtOnce(t *testing.T) {
	f := newTrainFixture(t)
	r := startTraining(t, f.args(filepath.Join(f.dir, "d.gguf"), 8))
	r.waitMarker(t)
	r.cmd.Process.Signal(os.Interrupt)
	r.cmd.Process.Signal(os.Interrupt)
	code, stderr := r.wait(t)
	assertNoCrash(t, stderr)
	if code != 130 {
		t.Fatalf("exit status %d after two Ctrl-Cs, want 130:\n%s", code, stderr)
	}
}

// TestTrainInterruptBeforeTraining: Ctrl-C while the data are read (or the
// template loads) stops before training with status 130 and writes
// nothing.
func TestTrainInterruptBeforeTraining(t *testing.T) {
	f := newTrainFixture(t)
	out := filepath.Join(f.dir, "d.gguf")
	r := startTraining(t, f.args(out, 8), "msg=data")
	r.waitMarker(t)
	r.cmd.Process.Signal(os.Interrupt)
	code, stderr := r.wait(t)
	assertNoCrash(t, stderr)
	if code != 130 || !strings.Contains(stderr, "interrupted") {
		t.Fatalf("exit status %d after Ctrl-C, want 130 and a word of it:\n%s", code, stderr)
	}
	if onDisk(out) {
		t.Fatal("an interrupted run wrote its model")
	}
}

// TestTrainCheckpointFailureIsAnError: a checkpoint that cannot be written
// mid-training (here its directory vanished; a full disk behaves alike)
// ends the run with the real error and status 1, never a crash.
func TestTrainCheckpointFailureIsAnError(t *testing.T) {
	f := newTrainFixture(t)
	ckDir := filepath.Join(f.dir, "ck")
	if err := os.Mkdir(ckDir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(f.dir, "d.gguf")
	r := startTraining(t, f.args(out, 8, "--checkpoint", filepath.Join(ckDir, "d.ckpt"), "--checkpoint-every", "1"))
	r.waitMarker(t)
	if err := os.RemoveAll(ckDir); err != nil {
		t.Fatal(err)
	}
	code, stderr := r.wait(t)
	assertNoCrash(t, stderr)
	if code != 1 {
		t.Fatalf("exit status %d, want 1:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "checkpoint") || !strings.Contains(stderr, "no such file or directory") {
		t.Fatalf("stderr does not give the checkpoint's real error:\n%s", stderr)
	}
	if onDisk(out) {
		t.Fatal("a run whose checkpoint failed wrote its model")
	}
}

// TestTrainFailedExportKeepsLossFiles: when the model cannot be written at
// the end, the loss curve of the previous model beside it is untouched, and
// the finished state can be exported with --resume.
func TestTrainFailedExportKeepsLossFiles(t *testing.T) {
	f := newTrainFixture(t)
	out := filepath.Join(f.dir, "d.gguf")
	lossCSV, lossPNG := filepath.Join(f.dir, "d.loss.csv"), filepath.Join(f.dir, "d.loss.png")
	for _, p := range []string{lossCSV, lossPNG} {
		if err := os.WriteFile(p, []byte("the previous model's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := startTraining(t, f.args(out, 4))
	r.waitMarker(t)
	// The export's rename cannot replace a directory that is not empty.
	if err := os.MkdirAll(filepath.Join(out, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, stderr := r.wait(t)
	assertNoCrash(t, stderr)
	if code != 1 || !strings.Contains(stderr, "--resume") {
		t.Fatalf("exit status %d, want 1 and a hint to export with --resume:\n%s", code, stderr)
	}
	for _, p := range []string{lossCSV, lossPNG} {
		if b, _ := os.ReadFile(p); string(b) != "the previous model's" {
			t.Errorf("%s was overwritten by a run whose export failed", p)
		}
	}
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if b, err := cmcCommand(f.args(out, 4, "--resume")...).CombinedOutput(); err != nil {
		t.Fatalf("export with --resume: %v\n%s", err, b)
	}
	if b, _ := os.ReadFile(lossCSV); !strings.HasPrefix(string(b), "step,") {
		t.Errorf("after the export, %s holds %q", lossCSV, b)
	}
	if _, err := delta.LoadGGUF(out); err != nil {
		t.Fatal(err)
	}
}

// TestTrainRejectsBadFlags: every bad number or path is refused before any
// work, naming the flag; nothing is written.
func TestTrainRejectsBadFlags(t *testing.T) {
	f := newTrainFixture(t)
	out := filepath.Join(f.dir, "d.gguf")
	deltaFile := filepath.Join(f.dir, "start.gguf")
	if err := os.WriteFile(deltaFile, []byte("not read"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--micro-batch", "0"}, "--micro-batch 0"},
		{[]string{"--batch", "0"}, "--batch 0"},
		{[]string{"--epochs", "0"}, "--epochs 0"},
		{[]string{"--lr", "0"}, "--lr 0"},
		{[]string{"--lr", "-1e-3"}, "--lr -0.001"},
		{[]string{"--lr", "NaN"}, "--lr NaN"},
		{[]string{"--lr", "Inf"}, "--lr +Inf"},
		{[]string{"--warmup", "2"}, "--warmup 2"},
		{[]string{"--template-jitter", "1"}, "--template-jitter 1"},
		{[]string{"--template-jitter", "-0.5"}, "--template-jitter -0.5"},
		{[]string{"--template-jitter", "NaN"}, "--template-jitter NaN"},
		{[]string{"--template", "none", "--vocab", f.template, "--template-jitter", "0.5"}, "--template-jitter needs a template"},
		{[]string{"--anchor-flatness", "-1"}, "--anchor-flatness -1"},
		{[]string{"--anchor-flatness", "NaN"}, "--anchor-flatness NaN"},
		{[]string{"--anchor-flatness", "Inf"}, "--anchor-flatness +Inf"},
		{[]string{"--template", "none", "--vocab", f.template, "--anchor-flatness", "100"}, "--anchor-flatness needs a template"},
		{[]string{"--delta", deltaFile, "--out", deltaFile}, "same file as --delta"},
		{[]string{"--delta", deltaFile, "--out", filepath.Join(f.dir, "sub", "..", "start.gguf")}, "same file as --delta"},
		{[]string{"--out", f.text}, "same file as --data"},
		{[]string{"--out", f.template}, "same file as --template"},
		{[]string{"--out", filepath.Join(f.dir, "missing", "d.gguf")}, "missing"},
		{[]string{"--checkpoint", filepath.Join(f.dir, "missing", "d.ckpt")}, "missing"},
		{[]string{"--data", filepath.Join(f.dir, "absent.txt")}, "absent.txt"},
		{[]string{"--objective", "dpo"}, "--objective"},
		{[]string{"--objective", "grad_diff", "--forget", f.text}, "--retain is required"},
	} {
		b, err := cmcCommand(f.args(out, 1, tc.extra...)...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%v: %v, want exit status 1:\n%s", tc.extra, err, b)
			continue
		}
		assertNoCrash(t, string(b))
		if !strings.Contains(string(b), tc.want) {
			t.Errorf("%v: error %q does not say %q", tc.extra, b, tc.want)
		}
		if strings.Contains(string(b), "training") {
			t.Errorf("%v: refused only after the work started:\n%s", tc.extra, b)
		}
	}
	if b, _ := os.ReadFile(deltaFile); string(b) != "not read" {
		t.Fatal("the input delta was overwritten")
	}
	if onDisk(out) || onDisk(out+".ckpt") {
		t.Fatal("a refused run wrote files")
	}
}

// TestTrainStopsOnNonFinite: a learning rate that makes training diverge
// and a delta with NaN weights both end with an error naming the step or
// the weight, status 1, and no model written; the run never hangs.
func TestTrainStopsOnNonFinite(t *testing.T) {
	f := newTrainFixture(t)
	out := filepath.Join(f.dir, "d.gguf")
	b, err := cmcCommand(f.args(out, 20, "--lr", "1e30", "--warmup", "0", "--min-lr", "1e30", "--clip", "0")...).CombinedOutput()
	if err == nil {
		t.Fatalf("training at lr 1e30 succeeded:\n%s", b)
	}
	assertNoCrash(t, string(b))
	if !strings.Contains(string(b), "not finite") || !strings.Contains(string(b), "step ") {
		t.Errorf("lr 1e30: error does not name the non-finite step:\n%s", b)
	}
	if strings.Contains(string(b), "final loss") || onDisk(out) {
		t.Errorf("lr 1e30: a diverged model was written:\n%s", b)
	}

	// A delta of the template's vocabulary whose weights are all NaN.
	m, err := delta.New(delta.Config{Dim: 32, HiddenDim: 64, NLayers: 2, NHeads: 4, NKVHeads: 4, VocabSize: 512, SeqLen: 64, SharedClassifier: true}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Params {
		m.Params[i] = float32(math.NaN())
	}
	tok, err := gguf.Open(f.template)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	nanDelta := filepath.Join(f.dir, "nan.gguf")
	if err := m.ExportGGUF(nanDelta, delta.ExportOptions{Tokenizer: tok}); err != nil {
		t.Fatal(err)
	}
	b, err = cmcCommand(f.args(out, 1, "--delta", nanDelta)...).CombinedOutput()
	if err == nil {
		t.Fatalf("training a NaN delta succeeded:\n%s", b)
	}
	assertNoCrash(t, string(b))
	if !strings.Contains(string(b), "nan.gguf") || !strings.Contains(string(b), "NaN") {
		t.Errorf("NaN delta: error does not name the file and the NaN:\n%s", b)
	}
	if strings.Contains(string(b), "final loss") || onDisk(out) {
		t.Errorf("NaN delta: a model was written:\n%s", b)
	}
}

// TestResumeRefusesAnotherRun: a checkpoint resumes only the run that made
// it: a changed flag or data file is refused naming the difference, and a
// damaged checkpoint is refused by its checksum.
func TestResumeRefusesAnotherRun(t *testing.T) {
	f := newTrainFixture(t)
	out := filepath.Join(f.dir, "d.gguf")
	if b, err := cmcCommand(f.args(out, 1)...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	refused := func(what string, want []string, extra ...string) {
		t.Helper()
		b, err := cmcCommand(f.args(out, 1, append([]string{"--resume"}, extra...)...)...).CombinedOutput()
		if err == nil {
			t.Errorf("%s: resumed", what)
			return
		}
		assertNoCrash(t, string(b))
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: error does not say %q:\n%s", what, w, b)
			}
		}
	}
	refused("other batch", []string{"--micro-batch is 2 in the checkpoint, 1 now"}, "--micro-batch", "1")
	refused("other seed and lr", []string{"--seed is 1 in the checkpoint, 7 now", "--lr is 0.001 in the checkpoint, 0.002 now"}, "--seed", "7", "--lr", "2e-3")
	refused("other max-len", []string{"--max-len is 64"}, "--max-len", "48")
	refused("other prompt template", []string{"--prompt-template is raw"}, "--prompt-template", "qa")

	text, err := os.ReadFile(f.text)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.text, append(text, " The end."...), 0o644); err != nil {
		t.Fatal(err)
	}
	refused("other data", []string{"--data has other content"})
	if err := os.WriteFile(f.text, text, 0o644); err != nil {
		t.Fatal(err)
	}

	ckpt, err := os.ReadFile(out + ".ckpt")
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(ckpt)
	damaged[len(damaged)/2] ^= 1
	if err := os.WriteFile(out+".ckpt", damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	refused("flipped byte", []string{"checksum", out + ".ckpt"})
	if err := os.WriteFile(out+".ckpt", ckpt, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := cmcCommand(f.args(out, 1, "--resume")...).CombinedOutput(); err != nil {
		t.Fatalf("resuming the same run: %v\n%s", err, b)
	}
}

// The reported final loss is the token-weighted mean of the last steps, not
// the last batch's.
func TestRecentLoss(t *testing.T) {
	history := []control.Step{{Loss: 10, Tokens: 1}, {Loss: 1, Tokens: 3}, {Loss: 2, Tokens: 1}}
	for _, c := range []struct {
		n, steps int
		want     float64
	}{{2, 2, 1.25}, {50, 3, 3}, {1, 1, 2}} {
		if got, steps := recentLoss(history, c.n); got != c.want || steps != c.steps {
			t.Errorf("recentLoss(n=%d) = %v over %d steps, want %v over %d", c.n, got, steps, c.want, c.steps)
		}
	}
	if got, _ := recentLoss([]control.Step{{Loss: 4}}, 50); got != 4 {
		t.Errorf("recentLoss of a step with no labelled tokens = %v, want its own loss 4", got)
	}
}
