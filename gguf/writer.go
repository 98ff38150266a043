package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/cmc-dev/cmc/internal/atomicfile"
	"github.com/cmc-dev/cmc/vocab"
)

// Writer builds a GGUF v3 file in memory: metadata in insertion order, then
// tensors in the order they were added, each aligned to general.alignment
// (32 unless set).
type Writer struct {
	kv      []KV
	keys    map[string]int
	tensors []writerTensor
	names   map[string]bool
}

type writerTensor struct {
	info TensorInfo // Offset is assigned when writing
	data []byte
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer {
	return &Writer{keys: map[string]int{}, names: map[string]bool{}}
}

// Set sets a metadata key. Setting an existing key replaces its value and
// keeps the position of its first insertion.
func (w *Writer) Set(key string, v Value) {
	if i, ok := w.keys[key]; ok {
		w.kv[i].Value = v
		return
	}
	w.keys[key] = len(w.kv)
	w.kv = append(w.kv, KV{Key: key, Value: v})
}

// SetString sets a string key.
func (w *Writer) SetString(key, v string) { w.Set(key, NewScalar(v)) }

// SetUint32 sets a uint32 key.
func (w *Writer) SetUint32(key string, v uint32) { w.Set(key, NewScalar(v)) }

// SetInt32 sets an int32 key.
func (w *Writer) SetInt32(key string, v int32) { w.Set(key, NewScalar(v)) }

// SetFloat32 sets a float32 key.
func (w *Writer) SetFloat32(key string, v float32) { w.Set(key, NewScalar(v)) }

// SetBool sets a bool key.
func (w *Writer) SetBool(key string, v bool) { w.Set(key, NewScalar(v)) }

// SetStrings sets an array-of-strings key.
func (w *Writer) SetStrings(key string, v []string) { w.Set(key, NewArray(v)) }

// SetFloat32s sets an array-of-float32 key.
func (w *Writer) SetFloat32s(key string, v []float32) { w.Set(key, NewArray(v)) }

// SetInt32s sets an array-of-int32 key.
func (w *Writer) SetInt32s(key string, v []int32) { w.Set(key, NewArray(v)) }

// SetVocab writes the tokenizer.ggml.* keys for every field of v that is
// present (non-empty strings, non-nil slices, special ids >= 0).
func (w *Writer) SetVocab(v *vocab.Vocab) {
	w.SetString(KeyTokenizerModel, v.Model)
	if v.Pre != "" {
		w.SetString(KeyTokenizerPre, v.Pre)
	}
	w.SetStrings(KeyTokens, v.Pieces)
	if v.Scores != nil {
		w.SetFloat32s(KeyScores, v.Scores)
	}
	if v.Types != nil {
		types := make([]int32, len(v.Types))
		for i, t := range v.Types {
			types[i] = int32(t)
		}
		w.SetInt32s(KeyTokenTypes, types)
	}
	if v.Merges != nil {
		w.SetStrings(KeyMerges, v.Merges)
	}
	for _, s := range []struct {
		key string
		id  int32
	}{{KeyBOS, v.BOS}, {KeyEOS, v.EOS}, {KeyUNK, v.UNK}, {KeyPAD, v.PAD}} {
		if s.id >= 0 {
			w.SetUint32(s.key, uint32(s.id))
		}
	}
	w.SetBool(KeyAddBOS, v.AddBOS)
	w.SetBool(KeyAddEOS, v.AddEOS)
}

// CopyKV copies the metadata of f, in file order, except the keys for
// which skip returns true (skip may be nil).
func (w *Writer) CopyKV(f *File, skip func(key string) bool) {
	for _, kv := range f.KV {
		if skip == nil || !skip(kv.Key) {
			w.Set(kv.Key, kv.Value)
		}
	}
}

// AddTensorF32 adds a float32 tensor. shape lists ne0 (the row length) first.
func (w *Writer) AddTensorF32(name string, shape []uint64, data []float32) error {
	if err := checkShapeLen(name, shape, len(data)); err != nil {
		return err
	}
	b := make([]byte, 4*len(data))
	for i, x := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return w.AddTensor(name, TypeF32, shape, b)
}

// AddTensorF16 adds a tensor stored as float16, converting data with
// round-to-nearest-even.
func (w *Writer) AddTensorF16(name string, shape []uint64, data []float32) error {
	if err := checkShapeLen(name, shape, len(data)); err != nil {
		return err
	}
	b := make([]byte, 2*len(data))
	for i, x := range data {
		binary.LittleEndian.PutUint16(b[2*i:], F32ToF16(x))
	}
	return w.AddTensor(name, TypeF16, shape, b)
}

func checkShapeLen(name string, shape []uint64, n int) error {
	elements := uint64(1)
	for _, d := range shape {
		elements *= d
	}
	if elements != uint64(n) || len(shape) == 0 {
		return fmt.Errorf("tensor %q: shape %v holds %d elements, data has %d", name, shape, elements, n)
	}
	return nil
}

// AddTensor adds a tensor's raw data, already in typ's ggml encoding (for
// example bytes read with File.ReadTensorBytes). The Writer keeps data; do
// not modify it afterwards.
func (w *Writer) AddTensor(name string, typ TensorType, shape []uint64, data []byte) error {
	switch {
	case name == "":
		return fmt.Errorf("tensor with empty name")
	case len(name) > maxNameLen:
		return fmt.Errorf("tensor %q: name is %d bytes, ggml allows at most %d", name, len(name), maxNameLen)
	case w.names[name]:
		return fmt.Errorf("tensor %q added twice", name)
	case typ.BlockSize() == 0:
		return fmt.Errorf("tensor %q: unknown tensor type %d", name, uint32(typ))
	case len(shape) == 0 || len(shape) > maxDims:
		return fmt.Errorf("tensor %q: %d dimensions, want 1 to %d", name, len(shape), maxDims)
	case shape[0]%typ.BlockSize() != 0:
		return fmt.Errorf("tensor %q: row length %d is not a multiple of the %s block size %d", name, shape[0], typ, typ.BlockSize())
	}
	info := TensorInfo{Name: name, Shape: append([]uint64(nil), shape...), Type: typ}
	// The byte count must not overflow, the same check Parse makes.
	elements := uint64(1)
	for _, d := range shape {
		if d != 0 && elements > math.MaxInt64/d {
			return fmt.Errorf("tensor %q: shape %v overflows the element count", name, shape)
		}
		elements *= d
	}
	if want := info.Bytes(); uint64(len(data)) != want {
		return fmt.Errorf("tensor %q: %s %v needs %d bytes, got %d", name, typ, shape, want, len(data))
	}
	w.names[name] = true
	w.tensors = append(w.tensors, writerTensor{info: info, data: data})
	return nil
}

// alignment returns general.alignment if set, else DefaultAlignment.
func (w *Writer) alignment() (uint64, error) {
	i, ok := w.keys[KeyAlignment]
	if !ok {
		return DefaultAlignment, nil
	}
	v := w.kv[i].Value
	a, _ := v.Uint64()
	if v.Type != ValueUint32 || a == 0 || a&(a-1) != 0 {
		return 0, fmt.Errorf("key %s must be a uint32 power of two, is %s %s", KeyAlignment, v.typeName(), v.Describe(1))
	}
	return a, nil
}

// WriteTo writes the GGUF file to out.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	align, err := w.alignment()
	if err != nil {
		return 0, err
	}
	e := &encoder{w: bufio.NewWriterSize(out, 1<<20)}
	e.bytes([]byte(Magic))
	e.u32(3)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kv)))
	for _, kv := range w.kv {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		if err := e.value(kv.Value); err != nil {
			return e.n, fmt.Errorf("key %q: %w", kv.Key, err)
		}
	}
	var offset uint64
	for _, t := range w.tensors {
		e.str(t.info.Name)
		e.u32(uint32(len(t.info.Shape)))
		for _, d := range t.info.Shape {
			e.u64(d)
		}
		e.u32(uint32(t.info.Type))
		e.u64(offset)
		offset += padding(uint64(len(t.data)), align) + uint64(len(t.data))
	}
	// Like gguf-py, leave out the padding before an empty data section: a
	// vocabulary-only file ends right after its metadata.
	if len(w.tensors) > 0 {
		e.pad(align)
	}
	for _, t := range w.tensors {
		e.bytes(t.data)
		e.pad(align)
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.n, e.err
}

// WriteFile writes the GGUF file to path atomically (internal/atomicfile):
// readers see the old file or the new one, never half of one.
func (w *Writer) WriteFile(path string) error {
	return atomicfile.WriteFunc(path, func(out io.Writer) error {
		_, err := w.WriteTo(out)
		return err
	})
}

// padding is the number of bytes that bring n up to a multiple of align.
func padding(n, align uint64) uint64 { return (align - n%align) % align }

// encoder writes little-endian values, remembering the first error and
// the number of bytes written.
type encoder struct {
	w       *bufio.Writer
	n       int64
	err     error
	scratch [8]byte
}

func (e *encoder) bytes(b []byte) {
	if e.err != nil {
		return
	}
	var k int
	k, e.err = e.w.Write(b)
	e.n += int64(k)
}

func (e *encoder) u8(x uint8) { e.scratch[0] = x; e.bytes(e.scratch[:1]) }

func (e *encoder) u16(x uint16) {
	binary.LittleEndian.PutUint16(e.scratch[:], x)
	e.bytes(e.scratch[:2])
}

func (e *encoder) u32(x uint32) {
	binary.LittleEndian.PutUint32(e.scratch[:], x)
	e.bytes(e.scratch[:4])
}

func (e *encoder) u64(x uint64) {
	binary.LittleEndian.PutUint64(e.scratch[:], x)
	e.bytes(e.scratch[:8])
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		var k int
		k, e.err = e.w.WriteString(s)
		e.n += int64(k)
	}
}

func (e *encoder) pad(align uint64) {
	var zeros [256]byte
	for n := padding(uint64(e.n), align); n > 0 && e.err == nil; {
		k := min(n, uint64(len(zeros)))
		e.bytes(zeros[:k])
		n -= k
	}
}

// value writes v's payload (its type code has been written by the caller).
func (e *encoder) value(v Value) error {
	switch v.Type {
	case ValueUint8, ValueInt8, ValueBool:
		e.u8(uint8(v.bits))
	case ValueUint16, ValueInt16:
		e.u16(uint16(v.bits))
	case ValueUint32, ValueInt32, ValueFloat32:
		e.u32(uint32(v.bits))
	case ValueUint64, ValueInt64, ValueFloat64:
		e.u64(v.bits)
	case ValueString:
		e.str(v.str)
	case ValueArray:
		return e.array(v, 0)
	default:
		return fmt.Errorf("unknown value type %d", uint32(v.Type))
	}
	return nil
}

func (e *encoder) array(v Value, depth int) error {
	if depth >= maxArrayDepth {
		return fmt.Errorf("arrays nested more than %d deep, which Parse refuses", maxArrayDepth)
	}
	e.u32(uint32(v.elem))
	e.u64(uint64(v.Len()))
	switch a := v.array.(type) {
	case []string:
		for _, s := range a {
			e.str(s)
		}
	case []float32:
		for _, x := range a {
			e.u32(math.Float32bits(x))
		}
	case []int32:
		for _, x := range a {
			e.u32(uint32(x))
		}
	case []Value:
		for i, x := range a {
			if x.Type != ValueArray {
				return fmt.Errorf("element %d of an array of arrays has type %v", i, x.Type)
			}
			if err := e.array(x, depth+1); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
	default:
		for i := range v.Len() {
			if err := e.value(v.Index(i)); err != nil {
				return err
			}
		}
	}
	return nil
}
