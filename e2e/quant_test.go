package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/llama"
)

// The quantized-model tests run the real cmc binary: cmc quantize makes
// the K-quant files the way a user would, and train, generate and eval
// read them as they read any user's model.

// buildCMC builds cmd/cmc into dir and returns the binary's path.
func buildCMC(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "cmc")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cmc-dev/cmc/cmd/cmc").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// cmcOK runs bin with args and returns its stdout; a non-zero exit fails
// the test with everything the command printed. A run still going after
// two minutes has hung (each takes seconds) and is killed.
func cmcOK(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "CMC_LLAMA_LOG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("cmc %s\n%s", strings.Join(args, " "), strings.TrimSpace(stderr.String()))
	if err != nil {
		t.Fatalf("cmc %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// writeRandom exports a random Llama with the vocabulary of tok to path.
func writeRandom(t *testing.T, tok *gguf.File, path string, c delta.Config, f16 bool, seed uint64) string {
	t.Helper()
	v, err := tok.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	c.VocabSize = len(v.Pieces)
	m, err := delta.New(c, seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ExportGGUF(path, delta.ExportOptions{Tokenizer: tok, F16: f16, Name: "random"}); err != nil {
		t.Fatal(err)
	}
	return path
}

// countTypes counts the tensors of the GGUF at path by type.
func countTypes(t *testing.T, path string) map[gguf.TensorType]int {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := map[gguf.TensorType]int{}
	for _, ti := range f.Tensors {
		n[ti.Type]++
	}
	return n
}

// logitGap is how far one model's logits are from a reference's on the
// same tokens: the largest absolute difference, that and the root mean
// square difference over the reference's standard deviation (random models
// have small logits, so absolute numbers alone say little), and the share
// of positions whose argmax agrees (random models' top logits are close, so
// 4-bit weights swap some).
type logitGap struct {
	maxAbs, relative, rmsRelative, argmaxAgree float64
}

func compareLogits(got, want []float32, vocab int) logitGap {
	var g logitGap
	var sum, sumSq, diffSq float64
	for i, w := range want {
		d := float64(got[i] - w)
		g.maxAbs = math.Max(g.maxAbs, math.Abs(d))
		diffSq += d * d
		sum += float64(w)
		sumSq += float64(w) * float64(w)
	}
	n := float64(len(want))
	std := math.Sqrt(sumSq/n - (sum/n)*(sum/n))
	g.relative = g.maxAbs / std
	g.rmsRelative = math.Sqrt(diffSq/n) / std
	rows := len(want) / vocab
	agree := 0
	for r := range rows {
		if argmax(got[r*vocab:(r+1)*vocab]) == argmax(want[r*vocab:(r+1)*vocab]) {
			agree++
		}
	}
	g.argmaxAgree = float64(agree) / float64(rows)
	return g
}

// userLogits loads the model at path in llama.cpp and returns its logits
// at every position of the prompt's tokens.
func userLogits(t *testing.T, path, prompt string) ([]float32, int) {
	t.Helper()
	m, err := llama.LoadModel(path, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, err := m.NewContext(llama.ContextParams{Size: 64, Threads: 2, KVF32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	ids, err := m.Vocab().Tokenize(prompt, true, false)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(ids)*ctx.VocabSize())
	if err := ctx.SequenceLogits(ids, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out, ctx.VocabSize()
}

// deltaLogits loads a delta GGUF with delta.LoadGGUF (quantized tensors
// dequantised) and returns its logits at every position of ids.
func deltaLogits(t *testing.T, path string, ids []int32) []float32 {
	t.Helper()
	m, err := delta.LoadGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	m.Pool = kernels.NewPool(1)
	defer m.Pool.Close()
	return append([]float32(nil), m.Forward(ids, 1, len(ids))...)
}

const quantPrompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."

// TestQuantizedModels makes a Q4_K_M template and Q4_K_M and Q8_0 users
// with cmc quantize from F16 random Llamas whose rows are multiples of 256
// (K-quants quantize 256-wide blocks; a narrower row would silently fall
// back to another type), then trains a delta against the Q4_K_M template,
// generates and evaluates with both users and that delta, and compares
// each quantized model's logits, and those of the delta quantized in turn
// and loaded by delta.LoadGGUF, with the unquantized ones.
func TestQuantizedModels(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bin/cmc")
	}
	vocabPath := testfixture.Path(t, "gguf-vocab/ggml-vocab-llama-spm.gguf")
	stories := testfixture.Path(t, "datasets/tinystories/tinystories_val_sample.txt")
	dir := t.TempDir()
	bin := buildCMC(t, dir)
	tok, err := gguf.Open(vocabPath)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()

	templateF16 := writeRandom(t, tok, filepath.Join(dir, "template-f16.gguf"),
		delta.Config{Dim: 256, HiddenDim: 768, NLayers: 1, NHeads: 4, NKVHeads: 4, SeqLen: 256}, true, 1)
	userF16 := writeRandom(t, tok, filepath.Join(dir, "user-f16.gguf"),
		delta.Config{Dim: 256, HiddenDim: 768, NLayers: 2, NHeads: 4, NKVHeads: 2, SeqLen: 256}, true, 2)
	quantize := func(in, typ string) string {
		out := strings.TrimSuffix(in, "-f16.gguf") + "-" + strings.ToLower(typ) + ".gguf"
		if !strings.Contains(cmcOK(t, bin, "quantize", "--threads", "2", in, out, typ), "wrote "+out) {
			t.Fatalf("quantize %s to %s printed no 'wrote' line", in, typ)
		}
		return out
	}
	templateQ4 := quantize(templateF16, "Q4_K_M")
	userQ4 := quantize(userF16, "Q4_K_M")
	userQ8 := quantize(userF16, "Q8_0")
	for path, typ := range map[string]gguf.TensorType{templateQ4: gguf.TypeQ4_K, userQ4: gguf.TypeQ4_K, userQ8: gguf.TypeQ8_0} {
		if n := countTypes(t, path); n[typ] == 0 {
			t.Fatalf("%s holds no %v tensor: %v", path, typ, n)
		}
	}

	t.Run("logits against F16", func(t *testing.T) {
		want, vocab := userLogits(t, userF16, quantPrompt)
		gaps := map[string]logitGap{}
		for name, path := range map[string]string{"Q4_K_M": userQ4, "Q8_0": userQ8} {
			got, _ := userLogits(t, path, quantPrompt)
			g := compareLogits(got, want, vocab)
			gaps[name] = g
			t.Logf("user %s against F16: %v at %d positions", name, g, len(want)/vocab)
		}
		tmplWant, _ := userLogits(t, templateF16, quantPrompt)
		tmplGot, _ := userLogits(t, templateQ4, quantPrompt)
		g := compareLogits(tmplGot, tmplWant, vocab)
		t.Logf("template Q4_K_M against F16: %v", g)
		gaps["template Q4_K_M"] = g
		checkGaps(t, gaps)
		if gaps["Q8_0"].maxAbs >= gaps["Q4_K_M"].maxAbs {
			t.Errorf("Q8_0 (%.4f) is not closer to F16 than Q4_K_M (%.4f)", gaps["Q8_0"].maxAbs, gaps["Q4_K_M"].maxAbs)
		}
	})

	// Eight TinyStories paragraphs, ~64 tokens each: two optimiser steps.
	text, err := os.ReadFile(stories)
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, line := range strings.Split(string(text), "\n") {
		if len(line) > 300 && len(docs) < 8 {
			docs = append(docs, line)
		}
	}
	data := filepath.Join(dir, "stories.txt")
	if err := os.WriteFile(data, []byte(strings.Join(docs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deltaPath := filepath.Join(dir, "delta.gguf")
	// 256 wide and 256 in the feed-forward, so that the delta itself
	// quantizes to K-quants below.
	cmcOK(t, bin, "train", "--template", templateQ4, "--delta", "new", "--dim", "256", "--layers", "1", "--heads", "4", "--hidden", "256",
		"--data", data, "--format", "text", "--prompt-template", "raw", "--max-len", "64",
		"--epochs", "1", "--batch", "4", "--micro-batch", "2", "--lr", "1e-3", "--threads", "1", "--template-threads", "1",
		"--checkpoint-every", "1000", "--out", deltaPath)
	checkLossCSV(t, filepath.Join(dir, "delta.loss.csv"), 2)

	maps := filepath.Join(dir, "maps")
	for name, user := range map[string]string{"Q4_K_M": userQ4, "Q8_0": userQ8} {
		t.Run("generate and eval with a "+name+" user", func(t *testing.T) {
			out := cmcOK(t, bin, "generate", "--model", user, "--delta", deltaPath, "--template", "raw", "--delta-template", "raw",
				"--prompt", "Once upon a time", "-n", "12", "--temp", "0", "--threads", "1", "--ctx", "128", "--map-cache", maps)
			if !strings.HasPrefix(out, "Once upon a time") || len(strings.TrimSpace(out)) <= len("Once upon a time") {
				t.Fatalf("generate printed %q, want the prompt and a continuation", out)
			}
			doc := filepath.Join(t.TempDir(), "eval.json")
			cmcOK(t, bin, "eval", "--model", user, "--delta", deltaPath, "--template", "raw", "--delta-template", "raw",
				"--data", data, "--format", "text", "--task", "nll", "--limit", "2", "--threads", "1", "--ctx", "128",
				"--map-cache", maps, "--json", doc)
			checkEvalNLL(t, doc)
		})
	}

	t.Run("quantized delta", func(t *testing.T) {
		ids := make([]int32, 48)
		for i := range ids {
			ids[i] = int32(1 + 613*i%31999) // any tokens: the comparison is of the arithmetic
		}
		want := deltaLogits(t, deltaPath, ids)
		vocab := len(want) / len(ids)
		gaps := map[string]logitGap{}
		for _, typ := range []string{"Q8_0", "Q4_K_M"} {
			path := strings.TrimSuffix(deltaPath, ".gguf") + "-" + strings.ToLower(typ) + ".gguf"
			cmcOK(t, bin, "quantize", "--threads", "2", deltaPath, path, typ)
			kinds := countTypes(t, path)
			if typ == "Q4_K_M" && kinds[gguf.TypeQ4_K] == 0 {
				t.Fatalf("%s holds no Q4_K tensor: %v", path, kinds)
			}
			g := compareLogits(deltaLogits(t, path, ids), want, vocab)
			gaps[typ] = g
			t.Logf("delta %s (tensors %v) against F32: %v", typ, kinds, g)
		}
		checkGaps(t, gaps)
		if gaps["Q8_0"].maxAbs >= gaps["Q4_K_M"].maxAbs {
			t.Errorf("Q8_0 (%.4f) is not closer to F32 than Q4_K_M (%.4f)", gaps["Q8_0"].maxAbs, gaps["Q4_K_M"].maxAbs)
		}
	})
}

func (g logitGap) String() string {
	return fmt.Sprintf("max |logit difference| %.4f (%.3f of the logits' std, root mean square %.3f), argmax agrees at %.0f%%",
		g.maxAbs, g.relative, g.rmsRelative, 100*g.argmaxAgree)
}

// checkGaps holds quantized logits to loose bounds, relative to the
// reference logits' spread: wrong scales or misread blocks give
// differences of the order of the logits themselves. Q4_K_M's largest
// error over ~10^6 logits is several of its typical ones, hence the
// looser bound on the maximum.
func checkGaps(t *testing.T, gaps map[string]logitGap) {
	t.Helper()
	for name, g := range gaps {
		maxRel, rmsRel := 1.5, 0.3
		if name == "Q8_0" {
			maxRel, rmsRel = 0.25, 0.05
		}
		if g.relative > maxRel || g.rmsRelative > rmsRel {
			t.Errorf("%s: %v; want at most %.2f (maximum) and %.2f (root mean square) of the std", name, g, maxRel, rmsRel)
		}
	}
}

// checkLossCSV checks that training wrote steps optimiser steps, each
// with a finite, positive loss.
func checkLossCSV(t *testing.T, path string, steps int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(rows) != steps+1 {
		t.Fatalf("%s: %d rows, want a header and %d steps", path, len(rows), steps)
	}
	for _, row := range rows[1:] {
		loss, err := strconv.ParseFloat(row[2], 64)
		if err != nil || !(loss > 0) || math.IsInf(loss, 0) {
			t.Fatalf("%s: step %s has loss %q", path, row[0], row[2])
		}
	}
}

// checkEvalNLL checks that an eval --json document holds a finite NLL
// for the user alone and with the delta.
func checkEvalNLL(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Results []struct {
			Metric   string `json:"metric"`
			User     any    `json:"user"`
			Delta    any    `json:"user_delta"`
			Examples int    `json:"examples"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(doc.Results) == 0 {
		t.Fatalf("%s: no results:\n%s", path, b)
	}
	for _, r := range doc.Results {
		u, uok := r.User.(float64)
		d, dok := r.Delta.(float64)
		if !uok || !dok || !(u > 0) || !(d > 0) || r.Examples == 0 {
			t.Fatalf("%s: result %+v, want positive numbers over some examples", path, r)
		}
		t.Logf("eval %s: user %.4f, user+delta %.4f over %d examples", r.Metric, u, d, r.Examples)
	}
}

// TestLargeVocabSampling: a user model with DBRX's 100k cl100k vocabulary,
// steered by a Llama-2-vocabulary delta through PM-MinED, sampled with the
// nucleus over the whole vocabulary (--top-k 0 --top-p 0.9): the path whose
// full sort made it 10x slower than greedy. One seed gives one text twice;
// another seed another text.
func TestLargeVocabSampling(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bin/cmc")
	}
	dbrx, err := gguf.Open(testfixture.Path(t, "gguf-vocab/ggml-vocab-dbrx.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer dbrx.Close()
	llama2, err := gguf.Open(testfixture.Path(t, "gguf-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer llama2.Close()
	dir := t.TempDir()
	bin := buildCMC(t, dir)
	user := writeRandom(t, dbrx, filepath.Join(dir, "user-dbrx.gguf"),
		delta.Config{Dim: 64, HiddenDim: 128, NLayers: 1, NHeads: 4, NKVHeads: 4, SeqLen: 256, SharedClassifier: true}, false, 3)
	if v := userVocabSize(t, user); v < 100000 {
		t.Fatalf("user vocabulary has %d tokens, want 100k+", v)
	}
	deltaPath := writeRandom(t, llama2, filepath.Join(dir, "delta-llama2.gguf"),
		delta.Config{Dim: 32, HiddenDim: 64, NLayers: 1, NHeads: 2, NKVHeads: 2, SeqLen: 256, SharedClassifier: true}, false, 4)

	const prompt = "Once upon a time"
	generate := func(seed string) string {
		out := cmcOK(t, bin, "generate", "--model", user, "--delta", deltaPath, "--template", "raw", "--delta-template", "raw",
			"--map-strategy", "pmmined", "--map-cache", filepath.Join(dir, "maps"),
			"--prompt", prompt, "-n", "24", "--temp", "0.8", "--top-p", "0.9", "--top-k", "0", "--seed", seed,
			"--threads", "1", "--ctx", "128", "--stats")
		if !strings.HasPrefix(out, prompt) || len(strings.TrimSpace(out)) <= len(prompt) {
			t.Fatalf("generate printed %q, want the prompt and a continuation", out)
		}
		return out
	}
	a, again, b := generate("1"), generate("1"), generate("2")
	t.Logf("seed 1: %q\nseed 2: %q", a, b)
	if a != again {
		t.Errorf("seed 1 gave two texts:\n%q\n%q", a, again)
	}
	if a == b {
		t.Errorf("seeds 1 and 2 gave the same text %q", a)
	}
}

// userVocabSize reads the vocabulary size of a model llama.cpp loads.
func userVocabSize(t *testing.T, path string) int {
	t.Helper()
	m, err := llama.LoadModel(path, llama.ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return m.Vocab().Size()
}
