package modelstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pullForTest lays a model out in dir exactly as `ollama pull` does: the
// weights and a config as blobs named by their SHA-256, and a manifest
// listing them (with the template and params layers ollama adds too).
func pullForTest(t *testing.T, dir, host, namespace, model, tag string, weights []byte) string {
	t.Helper()
	blob := func(data []byte) map[string]any {
		sum := sha256.Sum256(data)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		path := filepath.Join(dir, "blobs", "sha256-"+hex.EncodeToString(sum[:]))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"digest": digest, "size": len(data)}
	}
	layer := func(mediaType string, data []byte) map[string]any {
		l := blob(data)
		l["mediaType"] = mediaType
		return l
	}
	config := layer("application/vnd.docker.container.image.v1+json", []byte(`{"model_format":"gguf","model_family":"llama","file_type":"F32"}`))
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config":        config,
		"layers": []any{
			layer(ModelMediaType, weights),
			layer("application/vnd.ollama.image.template", []byte("{{ .Prompt }}")),
			layer("application/vnd.ollama.image.params", []byte(`{"stop":["</s>"]}`)),
		},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "manifests", host, namespace, model, tag)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(weights)
	return filepath.Join(dir, "blobs", "sha256-"+hex.EncodeToString(sum[:]))
}

func TestResolveNames(t *testing.T) {
	dir := t.TempDir()
	latest := pullForTest(t, dir, "registry.ollama.ai", "library", "stories", "latest", []byte("GGUF latest"))
	small := pullForTest(t, dir, "registry.ollama.ai", "library", "stories", "260k", []byte("GGUF 260k"))
	user := pullForTest(t, dir, "registry.ollama.ai", "someone", "tiny", "latest", []byte("GGUF someone's"))
	hf := pullForTest(t, dir, "hf.co", "user", "Repo-GGUF", "Q4_K_M", []byte("GGUF from hf"))
	t.Setenv("OLLAMA_MODELS", dir)
	for ref, want := range map[string]string{
		"ollama:stories":                                 latest,
		"ollama:stories:latest":                          latest,
		"ollama:stories:260k":                            small,
		"ollama:library/stories:260k":                    small,
		"ollama:registry.ollama.ai/library/stories:260k": small,
		"ollama:someone/tiny":                            user,
		"ollama:hf.co/user/Repo-GGUF:Q4_K_M":             hf,
		"ollama:hf.co/user/repo-gguf:q4_k_m":             hf, // ollama's names ignore case
		"models/plain.gguf":                              "models/plain.gguf",
		"none":                                           "none",
	} {
		got, err := Resolve(ref)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if got != want {
			t.Errorf("%s resolved to %s, want %s", ref, got, want)
		}
	}
}

func TestResolveMissingListsTheStore(t *testing.T) {
	dir := t.TempDir()
	pullForTest(t, dir, "registry.ollama.ai", "library", "stories", "260k", []byte("a"))
	pullForTest(t, dir, "hf.co", "user", "repo", "q8_0", []byte("b"))
	t.Setenv("OLLAMA_MODELS", dir)
	_, err := Resolve("ollama:llama3")
	if err == nil {
		t.Fatal("a name the store does not hold resolved")
	}
	for _, want := range []string{"llama3:latest", dir, "stories:260k", "hf.co/user/repo:q8_0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	t.Setenv("OLLAMA_MODELS", t.TempDir())
	if _, err := Resolve("ollama:llama3"); err == nil || !strings.Contains(err.Error(), "holds no models") {
		t.Errorf("empty store: %v", err)
	}
}

func TestResolveDefaultDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("OLLAMA_MODELS", "")
	t.Setenv("HOME", home)
	want := pullForTest(t, filepath.Join(home, ".ollama", "models"), "registry.ollama.ai", "library", "m", "latest", []byte("x"))
	if got, err := Resolve("ollama:m"); err != nil || got != want {
		t.Fatalf("got %q, %v; want %s", got, err, want)
	}
}

func TestResolveBadStores(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("OLLAMA_MODELS", dir)
	write := func(name, content string) {
		p := filepath.Join(dir, "manifests", "registry.ollama.ai", "library", name, "latest")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("broken", "{not json")
	write("adapter", `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.adapter","digest":"sha256:`+strings.Repeat("a", 64)+`","size":1}]}`)
	write("escape", `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:../../etc/passwd","size":1}]}`)
	write("gone", `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:`+strings.Repeat("b", 64)+`","size":1}]}`)
	short := pullForTest(t, dir, "registry.ollama.ai", "library", "short", "latest", []byte("whole"))
	if err := os.WriteFile(short, []byte("wh"), 0o644); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{
		"ollama:broken":  "manifest",
		"ollama:adapter": "no layer of type application/vnd.ollama.image.model",
		"ollama:escape":  "want sha256:<64 hex digits>",
		"ollama:gone":    "ollama pull gone:latest",
		"ollama:short":   "has 2 bytes, the manifest says 5",
		"ollama:":        "want [HOST/][NAMESPACE/]MODEL[:TAG]",
		"ollama:../../x": "no empty, . or .. part",
		"ollama:a/b/c/d": "want [HOST/][NAMESPACE/]MODEL[:TAG]",
	} {
		_, err := Resolve(ref)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", ref, err, want)
		}
	}
}
