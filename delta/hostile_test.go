package delta

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/internal/hostile"
)

const vocabOnlyGGUF = fixtures + "gguf-vocab/ggml-vocab-llama-spm.gguf"

// TestLoadHostile loads every hostile file as a delta: each is refused
// with an error naming the file and what it lies about, and loading
// allocates no more than a small multiple of the file's size, whatever its
// header claims (7B parameters, 1e8 layers).
func TestLoadHostile(t *testing.T) {
	needFile(t, stories260KGGUF)
	needFile(t, vocabOnlyGGUF)
	cases, err := hostile.Files(t.TempDir(), stories260KGGUF, vocabOnlyGGUF)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			load := LoadGGUF
			if strings.HasSuffix(c.Path, ".bin") {
				load = LoadLlama2C
			}
			st, err := os.Stat(c.Path)
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = load(c.Path)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("%s loaded", c.Path)
			}
			if !strings.Contains(err.Error(), c.Path) || !strings.Contains(err.Error(), c.Key) {
				t.Errorf("error %q, want one naming %s and %s", err, c.Path, c.Key)
			}
			if alloc, limit := after.TotalAlloc-before.TotalAlloc, uint64(8*st.Size()+4<<20); alloc > limit {
				t.Errorf("loading a %d-byte file allocated %d bytes, want at most %d", st.Size(), alloc, limit)
			}
		})
	}
}

// A header that is plausible but more than the file holds: the first
// missing tensor is named with the shape the metadata implies.
func TestLoadGGUFMoreLayersThanTensors(t *testing.T) {
	needFile(t, stories260KGGUF)
	path := filepath.Join(t.TempDir(), "six-layers.gguf")
	if err := hostile.RewriteGGUF(stories260KGGUF, path, hostile.Edit{Set: func(w *gguf.Writer) { w.SetUint32("llama.block_count", 6) }}); err != nil {
		t.Fatal(err)
	}
	_, err := LoadGGUF(path)
	if err == nil || !strings.Contains(err.Error(), "blk.5.attn_norm.weight is missing, want shape [64]") {
		t.Fatalf("error %v, want one naming the missing blk.5.attn_norm.weight", err)
	}
}

// A llama2.c header that needs more bytes than the file has is refused
// before the model is allocated, with the size it implies.
func TestLoadLlama2CHeaderOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "7b.bin")
	if err := hostile.WriteLlama2CHeader(path, hostile.Llama2C7BHeader); err != nil {
		t.Fatal(err)
	}
	want := Config{Dim: 4096, HiddenDim: 11008, NLayers: 32, NHeads: 32, NKVHeads: 32, VocabSize: 32000, SeqLen: 2048, SharedClassifier: true}
	size := 28 + 4*(want.ParamCount()+2048*128)
	_, err := LoadLlama2C(path)
	if err == nil || !strings.Contains(err.Error(), "28 bytes, want "+strconv.FormatInt(size, 10)) {
		t.Fatalf("error %v, want one saying 28 bytes, want %d", err, size)
	}
	// A negative seq_len or a vocabulary beyond any model is refused by the config check.
	for _, h := range [][7]int32{
		{64, 172, 5, 8, 4, 512, -1},
		{64, 172, 5, 8, 4, math.MinInt32, 512},
	} {
		if err := hostile.WriteLlama2CHeader(path, h); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadLlama2C(path); err == nil || !strings.Contains(err.Error(), "model config") {
			t.Errorf("header %v: error %v, want a config error", h, err)
		}
	}
}

// ParamCount agrees with the layout that newModel allocates.
func TestParamCount(t *testing.T) {
	for _, c := range []Config{
		{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, SharedClassifier: true},
		{Dim: 32, HiddenDim: 80, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 300},
	} {
		m, err := newModel(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ParamCount(); got != int64(len(m.Params)) {
			t.Errorf("config %+v: ParamCount %d, newModel allocated %d", c, got, len(m.Params))
		}
	}
}
