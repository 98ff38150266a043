package llama

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/internal/hostile"
)

// TestLoadHostile hands every hostile file to LoadModel: each is refused
// with an error naming the file and what it lies about (none reaches a
// GGML_ASSERT, which would end the test binary), except the one whose lie
// is in its weights, which loads and fails at its first logits.
func TestLoadHostile(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	cases, err := hostile.Files(t.TempDir(), model, fixture(t, "gguf-vocab/ggml-vocab-llama-spm.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if strings.HasSuffix(c.Path, ".bin") {
				if _, err := LoadModel(c.Path, ModelParams{}); !errors.Is(err, ErrNotGGUF) {
					t.Fatalf("llama2.c file: got %v, want ErrNotGGUF", err)
				}
				return
			}
			m, err := LoadModel(c.Path, ModelParams{})
			if !c.Loads {
				if err == nil {
					m.Close()
					t.Fatalf("%s loaded", c.Path)
				}
				if !strings.Contains(err.Error(), c.Path) || !strings.Contains(err.Error(), c.Key) {
					t.Fatalf("error %q, want one naming %s and %s", err, c.Path, c.Key)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, err := m.NewContext(ContextParams{Size: 32, Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer ctx.Close()
			_, err = ctx.Append([]int32{1, 403})
			if !errors.Is(err, ErrNonFiniteLogits) || !strings.Contains(err.Error(), c.Path) {
				t.Fatalf("decode: got %v, want ErrNonFiniteLogits naming %s", err, c.Path)
			}
		})
	}
}

// When llama.cpp itself refuses a file, its reason is in the error: loads
// of two differently broken files, run concurrently, each carry their own.
func TestLoadReasonPerLoad(t *testing.T) {
	model := fixture(t, "models/stories260K/stories260K.gguf")
	dir := t.TempDir()
	files := map[string]string{ // file → the reason llama.cpp gives
		filepath.Join(dir, "six-blocks.gguf"): "missing tensor 'blk.5.attn_norm.weight'",
		filepath.Join(dir, "rope-4.gguf"):     "invalid n_rot: 4, expected 8",
	}
	edits := map[string]func(w *gguf.Writer){
		"six-blocks.gguf": func(w *gguf.Writer) { w.SetUint32("llama.block_count", 6) },
		"rope-4.gguf":     func(w *gguf.Writer) { w.SetUint32("llama.rope.dimension_count", 4) },
	}
	for path := range files {
		if err := hostile.RewriteGGUF(model, path, hostile.Edit{Set: edits[filepath.Base(path)]}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*20)
	for path, want := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				_, err := LoadModel(path, ModelParams{})
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
					errs <- fmt.Errorf("load %s: error %v, want one naming the file and %q", path, err, want)
				}
				for other, otherWant := range files {
					if other != path && err != nil && strings.Contains(err.Error(), otherWant) {
						errs <- fmt.Errorf("load %s: error %v carries the other load's reason", path, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLlamaReason(t *testing.T) {
	buf := make([]byte, reasonSize)
	copy(buf, "llama_model_load: error loading model: missing tensor 'x'\nllama_model_load_from_file_impl: failed to load model\n")
	if got, want := llamaReason(buf), "llama.cpp: error loading model: missing tensor 'x'; failed to load model"; got != want {
		t.Errorf("llamaReason = %q, want %q", got, want)
	}
	if got := llamaReason(make([]byte, 8)); !strings.Contains(got, LogEnv) {
		t.Errorf("no reason logged: %q, want a pointer to %s", got, LogEnv)
	}
}

// Ids outside the vocabulary (from a client, a corrupt map) get an empty
// answer or an error: llama.cpp's own lookups would abort the process.
func TestVocabOutOfRange(t *testing.T) {
	v := loadModel(t, "models/stories260K/stories260K.gguf", ModelParams{VocabOnly: true}).Vocab()
	for _, id := range []int32{-1, int32(v.Size()), 1 << 30} {
		if a := v.Attr(id); a != AttrUndefined {
			t.Errorf("Attr(%d) = %v, want AttrUndefined", id, a)
		}
		if p := v.Piece(id, true); p != "" {
			t.Errorf("Piece(%d) = %q, want empty", id, p)
		}
		if txt := v.Text(id); txt != "" {
			t.Errorf("Text(%d) = %q, want empty", id, txt)
		}
		if _, err := v.Detokenize([]int32{1, id}, false, false); err == nil || !strings.Contains(err.Error(), "index 1") {
			t.Errorf("Detokenize with %d: error %v, want one naming index 1", id, err)
		}
	}
}
