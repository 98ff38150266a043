package gguf

import (
	"bytes"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// copyFile writes every key and tensor of f through a Writer.
func copyFile(t *testing.T, f *File) *Writer {
	t.Helper()
	w := NewWriter()
	w.CopyKV(f, nil)
	for _, ti := range f.Tensors {
		data, err := f.ReadTensorBytes(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Shape, data); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func parseBytes(t *testing.T, b []byte) *File {
	t.Helper()
	f, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Rewriting a real file must give back the same metadata and tensors; the
// writer lays out data exactly as llama.cpp does, so the bytes match too.
func TestRoundTripStories260K(t *testing.T) {
	orig := readFixture(t, stories260K)
	f := parseBytes(t, orig)
	var buf bytes.Buffer
	n, err := copyFile(t, f).WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	g := parseBytes(t, buf.Bytes())
	if !reflect.DeepEqual(f.KV, g.KV) {
		t.Error("metadata differs after the round trip")
	}
	if !reflect.DeepEqual(f.Tensors, g.Tensors) || f.DataOffset != g.DataOffset {
		t.Error("tensor infos differ after the round trip")
	}
	for _, ti := range f.Tensors {
		a, _ := f.ReadTensorBytes(ti.Name)
		b, err := g.ReadTensorBytes(ti.Name)
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("tensor %s: data differs (%v)", ti.Name, err)
		}
	}
	if !bytes.Equal(orig, buf.Bytes()) {
		t.Errorf("rewritten file differs from the original (%d vs %d bytes)", buf.Len(), len(orig))
	}
}

// Vocabulary-only files end unpadded after their metadata, as gguf-py
// writes them: rewriting one reproduces it byte for byte.
func TestRoundTripVocabFile(t *testing.T) {
	orig := readFixture(t, filepath.Join(vocabFixture, "ggml-vocab-llama-spm.gguf"))
	var buf bytes.Buffer
	if _, err := copyFile(t, parseBytes(t, orig)).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, buf.Bytes()) {
		t.Errorf("rewritten vocabulary differs from the original (%d vs %d bytes)", buf.Len(), len(orig))
	}
}

func TestRoundTripVocab(t *testing.T) {
	f := openFixture(t, filepath.Join(vocabFixture, "ggml-vocab-phi-3.gguf"))
	v, err := f.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter()
	w.SetString("general.architecture", "llama")
	w.SetVocab(v)
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	v2, err := parseBytes(t, buf.Bytes()).Vocab()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Error("vocabulary differs after SetVocab and parsing")
	}
}

// Every metadata type, including nested arrays, survives writing and parsing.
func TestAllValueTypes(t *testing.T) {
	inner1, inner2 := NewArray([]string{"a", ""}), NewArray([]int16{-1, 7})
	nested, err := NewArrayOfArrays([]Value{inner1, inner2})
	if err != nil {
		t.Fatal(err)
	}
	deeper, err := NewArrayOfArrays([]Value{nested, NewArray([]bool{})})
	if err != nil {
		t.Fatal(err)
	}
	values := []KV{
		{"u8", NewScalar(uint8(200))}, {"i8", NewScalar(int8(-100))},
		{"u16", NewScalar(uint16(60000))}, {"i16", NewScalar(int16(-30000))},
		{"u32", NewScalar(uint32(4e9))}, {"i32", NewScalar(int32(-2e9))},
		{"f32", NewScalar(float32(1.5))}, {"bool", NewScalar(true)},
		{"str", NewScalar("héllo ▁")}, {"u64", NewScalar(uint64(math.MaxUint64))},
		{"i64", NewScalar(int64(math.MinInt64))}, {"f64", NewScalar(math.Pi)},
		{"arr.u8", NewArray([]uint8{1, 2})}, {"arr.i8", NewArray([]int8{-1})},
		{"arr.u16", NewArray([]uint16{9})}, {"arr.i16", NewArray([]int16{-9})},
		{"arr.u32", NewArray([]uint32{math.MaxUint32})}, {"arr.i32", NewArray([]int32{-5, 5})},
		{"arr.f32", NewArray([]float32{0.25})}, {"arr.bool", NewArray([]bool{true, false})},
		{"arr.str", NewArray([]string{"x", "yz"})}, {"arr.u64", NewArray([]uint64{1 << 60})},
		{"arr.i64", NewArray([]int64{-1 << 60})}, {"arr.f64", NewArray([]float64{-0.5})},
		{"arr.empty", NewArray([]float32{})}, {"arr.nested", deeper},
	}
	w := NewWriter()
	for _, kv := range values {
		w.Set(kv.Key, kv.Value)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f := parseBytes(t, buf.Bytes())
	if !reflect.DeepEqual(f.KV, values) {
		for i := range values {
			if i < len(f.KV) && !reflect.DeepEqual(f.KV[i], values[i]) {
				t.Errorf("key %s: got %+v, want %+v", values[i].Key, f.KV[i], values[i])
			}
		}
		t.Fatalf("metadata differs after the round trip (%d keys, want %d)", len(f.KV), len(values))
	}

	// Accessors: the right type gives the value, any other gives ok=false.
	if u, err := f.Uint("u32"); err != nil || u != 4e9 {
		t.Errorf("Uint(u32) = %d, %v", u, err)
	}
	if u, err := f.Uint("i8"); err == nil {
		t.Errorf("Uint(i8 = -100) = %d, want an error", u)
	}
	if _, err := f.String("u32"); err == nil || !strings.Contains(err.Error(), "u32") || !strings.Contains(err.Error(), "uint32") {
		t.Errorf("String(u32) error = %v, want it to name the key and its type", err)
	}
	if x, err := f.Float("f64"); err != nil || x != math.Pi {
		t.Errorf("Float(f64) = %g, %v", x, err)
	}
	if _, err := f.Float("missing"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Float(missing) error = %v", err)
	}
	v, _ := f.Lookup("arr.nested")
	outer, ok := v.Array()
	if !ok || len(outer) != 2 {
		t.Fatalf("arr.nested: %v, %d elements", ok, len(outer))
	}
	if inner, _ := outer[0].Array(); len(inner) != 2 {
		t.Errorf("arr.nested[0] has %d elements", len(inner))
	} else if s, _ := inner[0].Strings(); !reflect.DeepEqual(s, []string{"a", ""}) {
		t.Errorf("arr.nested[0][0] = %q", s)
	}
	if i, ok := NewScalar(uint64(math.MaxUint64)).Int64(); ok {
		t.Errorf("Int64(MaxUint64) = %d, ok; want !ok", i)
	}
	if _, ok := NewScalar("x").Uint64(); ok {
		t.Error("Uint64 of a string is ok")
	}
}

func TestWriterRefusesDeepNesting(t *testing.T) {
	v := NewArray([]uint8{1})
	for range maxArrayDepth {
		var err error
		if v, err = NewArrayOfArrays([]Value{v}); err != nil {
			t.Fatal(err)
		}
	}
	w := NewWriter()
	w.Set("deep", v)
	if _, err := w.WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), `key "deep"`) {
		t.Errorf("WriteTo of arrays nested %d deep: error %v", maxArrayDepth+1, err)
	}
}

func TestWriterTensors(t *testing.T) {
	w := NewWriter()
	w.SetString("general.architecture", "llama")
	a := []float32{1, -2, 0.1, 65504, 1e-8, 3}
	if err := w.AddTensorF32("a", []uint64{3, 2}, a); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensorF16("b", []uint64{6}, a); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		name  string
		shape []uint64
		n     int
	}{
		{"a", []uint64{1}, 1},                     // duplicate
		{"c", []uint64{2, 2}, 3},                  // wrong length
		{"c", []uint64{1, 1, 1, 1, 1}, 1},         // 5 dims
		{strings.Repeat("x", 64), []uint64{1}, 1}, // name too long
		{"c", []uint64{1 << 62, 1 << 62}, 0},      // overflow
	} {
		if err := w.AddTensorF32(bad.name, bad.shape, make([]float32, bad.n)); err == nil {
			t.Errorf("AddTensorF32(%q, %v, %d values) succeeded", bad.name, bad.shape, bad.n)
		}
	}
	if err := w.AddTensor("q", TypeQ8_0, []uint64{16}, make([]byte, 34)); err == nil {
		t.Error("Q8_0 tensor with a row of 16 accepted")
	}
	q := make([]byte, 34) // one Q8_0 block: scale 0.5, quants 0, 1, ..., -1
	q[0], q[1] = 0x00, 0x38
	for i := range 32 {
		q[2+i] = byte(int8(i - 16))
	}
	if err := w.AddTensor("q", TypeQ8_0, []uint64{32}, q); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "t.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after WriteFile, want only the file", len(entries))
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, ti := range f.Tensors {
		if ti.Offset%32 != 0 {
			t.Errorf("tensor %s at offset %d, not 32-aligned", ti.Name, ti.Offset)
		}
	}
	got, err := f.ReadTensorF32("a")
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Errorf("F32 tensor = %v, %v; want %v", got, err, a)
	}
	got, err = f.ReadTensorF32("b")
	want := []float32{1, -2, 0.0999755859375, 65504, 0, 3}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("F16 tensor = %v, %v; want %v", got, err, want)
	}
	got, err = f.ReadTensorF32("q")
	if err != nil || got[0] != -8 || got[16] != 0 || got[31] != 7.5 {
		t.Errorf("Q8_0 tensor = %v, %v", got, err)
	}
	if _, err := f.ReadTensorF32("missing"); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadTensorF32(missing) error = %v, want it to name the file", err)
	}
}

func TestWriterAlignment(t *testing.T) {
	w := NewWriter()
	w.SetUint32(KeyAlignment, 64)
	if err := w.AddTensorF32("x", []uint64{1}, []float32{1}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensorF32("y", []uint64{1}, []float32{2}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f := parseBytes(t, buf.Bytes())
	if f.Alignment != 64 || f.DataOffset%64 != 0 || f.Tensors[1].Offset != 64 {
		t.Errorf("alignment %d, data offset %d, second tensor at %d", f.Alignment, f.DataOffset, f.Tensors[1].Offset)
	}
	// Without tensors there is no data section to align: a huge alignment
	// costs nothing (the fuzzer found the Writer padding such a file to 2 GiB).
	huge := NewWriter()
	huge.SetUint32(KeyAlignment, 1<<31)
	buf.Reset()
	if n, err := huge.WriteTo(&buf); err != nil || n > 100 {
		t.Errorf("vocabulary-only file with alignment 2^31: %d bytes, %v", n, err)
	}
	w.SetUint32(KeyAlignment, 48)
	if _, err := w.WriteTo(&buf); err == nil {
		t.Error("alignment 48 accepted")
	}
}
