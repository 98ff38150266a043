package delta

import (
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func checkpointFixture(t *testing.T) (string, *Model, *AdamW) {
	t.Helper()
	m, err := New(Config{Dim: 16, HiddenDim: 24, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 20, SeqLen: 8, SharedClassifier: true}, 3)
	if err != nil {
		t.Fatal(err)
	}
	o := NewAdamW(m, AdamWConfig{LR: 1e-3, DecaySteps: 10})
	o.Step = 4
	for i := range o.M {
		o.M[i], o.V[i] = float32(i), float32(2*i)
	}
	return filepath.Join(t.TempDir(), "d.ckpt"), m, o
}

func TestCheckpointKeepsTheRunIdentity(t *testing.T) {
	path, m, o := checkpointFixture(t)
	run := map[string]string{"batch": "8", "data": "sha256:ab12"}
	if err := SaveCheckpoint(path, m, o, run); err != nil {
		t.Fatal(err)
	}
	m2, o2, run2, err := LoadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(run, run2) {
		t.Fatalf("run identity %v, want %v", run2, run)
	}
	if !slices.Equal(m.Params, m2.Params) || !slices.Equal(o.M, o2.M) || !slices.Equal(o.V, o2.V) || o2.Step != 4 || o2.Config != o.Config {
		t.Fatal("checkpoint did not round-trip")
	}
}

// TestCheckpointRefusesDamage: any flipped byte (header, weights,
// optimiser state or the checksum itself), a truncation or an appended byte
// is refused with an error naming the file, never resumed from.
func TestCheckpointRefusesDamage(t *testing.T) {
	path, m, o := checkpointFixture(t)
	if err := SaveCheckpoint(path, m, o, map[string]string{"seed": "1"}); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	headerEnd := 16 + int(binary.LittleEndian.Uint32(good[12:]))
	damaged := map[string][]byte{
		"truncated": good[:len(good)-1],
		"appended":  append(slices.Clone(good), 0),
		"version 1": func() []byte { b := slices.Clone(good); b[8] = 1; return b }(),
	}
	for _, at := range []int{headerEnd - 3, headerEnd + 5, len(good) / 2, len(good) - 40, len(good) - 1} {
		b := slices.Clone(good)
		b[at] ^= 0x10
		damaged["flipped byte "+strconv.Itoa(at)] = b
	}
	for name, b := range damaged {
		bad := filepath.Join(t.TempDir(), "bad.ckpt")
		if err := os.WriteFile(bad, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, _, err := LoadCheckpoint(bad)
		if err == nil {
			t.Errorf("%s: loaded", name)
			continue
		}
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
}
