package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// ollamaStore lays stories260K out in a temporary store exactly as `ollama
// pull stories:260k` would (manifest with config and layers, blobs named
// sha256-<hex>) and returns the store's directory.
func ollamaStore(t *testing.T, model string) string {
	t.Helper()
	dir := t.TempDir()
	weights, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	layer := func(mediaType string, data []byte) map[string]any {
		sum := sha256.Sum256(data)
		name := "sha256-" + hex.EncodeToString(sum[:])
		if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "blobs", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"mediaType": mediaType, "digest": "sha256:" + hex.EncodeToString(sum[:]), "size": len(data)}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config":        layer("application/vnd.docker.container.image.v1+json", []byte(`{"model_format":"gguf","model_family":"llama","model_type":"260K","file_type":"F32"}`)),
		"layers": []any{
			layer("application/vnd.ollama.image.model", weights),
			layer("application/vnd.ollama.image.params", []byte(`{"temperature":0}`)),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "manifests", "registry.ollama.ai", "library", "stories", "260k")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGenerateFromOllamaStore: `--model ollama:stories:260k` (and the same
// for --delta) runs the model ollama stored and prints the golden text of
// the direct path; a name the store lacks fails naming what it holds.
func TestGenerateFromOllamaStore(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
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
	store := ollamaStore(t, model)
	run := func(args ...string) (string, error) {
		cmd := cmcCommand(append([]string{"generate", "--prompt", "Once upon a time", "--temp", "0", "--max-tokens", "60", "--threads", "1"}, args...)...)
		cmd.Env = append(cmd.Env, "OLLAMA_MODELS="+store)
		out, err := cmd.CombinedOutput()
		return strings.TrimSuffix(string(out), "\n"), err
	}
	for _, args := range [][]string{
		{"--model", "ollama:stories:260k", "--no-delta"},
		{"--model", "ollama:stories:260k", "--delta", "ollama:library/stories:260k", "--alpha", "0"},
	} {
		out, err := run(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if out != g.Text {
			t.Errorf("%v printed\n%q\nwant the golden text\n%q", args, out, g.Text)
		}
	}
	out, err := run("--model", "ollama:llama3", "--no-delta")
	if err == nil {
		t.Fatalf("a model missing from the store ran:\n%s", out)
	}
	for _, want := range []string{"--model", "llama3:latest", "stories:260k"} {
		if !strings.Contains(out, want) {
			t.Errorf("error output %q does not mention %q", out, want)
		}
	}

	cmd := cmcCommand("inspect", "ollama:stories:260k")
	cmd.Env = append(cmd.Env, "OLLAMA_MODELS="+store)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "llama") {
		t.Errorf("inspect ollama:stories:260k: %v\n%s", err, out)
	}
}

// TestModelNameOfAnOllamaModel: cmc serve lists a model from ollama's store
// by its ollama name, not by the blob's file name; a file by its base name.
func TestModelNameOfAnOllamaModel(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	t.Setenv("OLLAMA_MODELS", ollamaStore(t, model))
	var names []string
	app := &cli.App{Commands: withModelRefs([]*cli.Command{{
		Name:  "serve",
		Flags: []cli.Flag{&cli.StringFlag{Name: "model"}, &cli.StringFlag{Name: "delta"}},
		Action: func(c *cli.Context) error {
			names = append(names, modelName(c, "model"), modelName(c, "delta"))
			return nil
		},
	}})}
	if err := app.Run([]string{"cmc", "serve", "--model", "ollama:stories:260k", "--delta", model}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"stories:260k", "stories260K"}) {
		t.Errorf("names %q, want the ollama name and the file's base name", names)
	}
}
