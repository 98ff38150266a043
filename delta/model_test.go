package delta

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// New is reproducible from its seed and initialises like llama2.c's
// training script: N(0, 0.02²) matrices, residual projections scaled by
// 1/√(2·n_layers), RMSNorm gains 1.
func TestNewInit(t *testing.T) {
	c := Config{Dim: 128, HiddenDim: 256, NLayers: 4, NHeads: 4, NKVHeads: 2, VocabSize: 300, SharedClassifier: false}
	a, err := New(c, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(c, 7)
	other, _ := New(c, 8)
	if !slices.Equal(a.Params, b.Params) || slices.Equal(a.Params, other.Params) {
		t.Fatal("New is not a function of its seed")
	}
	std := func(name string) float64 {
		var ss float64
		n := 0
		for _, ts := range a.Tensors {
			if ts.Name == name {
				for _, v := range a.TensorData(ts) {
					ss += float64(v) * float64(v)
					n++
				}
			}
		}
		return math.Sqrt(ss / float64(n))
	}
	residual := 0.02 / math.Sqrt(2*4)
	for name, want := range map[string]float64{
		"token_embedding": 0.02, "wq": 0.02, "wk": 0.02, "wv": 0.02, "w1": 0.02, "w3": 0.02, "wcls": 0.02,
		"wo": residual, "w2": residual, "rms_att": 1, "rms_ffn": 1, "rms_final": 1,
	} {
		if got := std(name); math.Abs(got-want) > 0.03*want {
			t.Errorf("%s: rms %.5f, want %.5f", name, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.NKVHeads = 3 },                           // 8 heads not a multiple of 3
		func(c *Config) { c.NHeads = 5 },                             // 64 not a multiple of 5
		func(c *Config) { c.Dim, c.NHeads, c.NKVHeads = 72, 24, 24 }, // head size 3 is odd
		func(c *Config) { c.VocabSize = 0 },
	} {
		c := good
		bad(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// A truncated checkpoint is refused with the file name and the size expected.
func TestLoadLlama2CTruncated(t *testing.T) {
	needFile(t, stories260KBin)
	b, err := os.ReadFile(stories260KBin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "short.bin")
	if err := os.WriteFile(path, b[:len(b)-4], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadLlama2C(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "want 1056540") {
		t.Fatalf("error %v, want one naming %s and the expected size", err, path)
	}
}

// The generation loop decodes one token at a time; that must not allocate.
func TestDecodeDoesNotAllocate(t *testing.T) {
	m := load260KBin(t)
	m.Pool = kernels.NewPool(2)
	defer m.Pool.Close()
	s := m.NewSession(64)
	s.Decode([]int32{1, 403, 407})
	allocs := testing.AllocsPerRun(50, func() {
		if s.Len() > 60 {
			s.Trim(3)
		}
		s.Decode([]int32{261})
	})
	if allocs != 0 {
		t.Errorf("Decode of one token allocates %v times", allocs)
	}
}
