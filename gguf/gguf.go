// Package gguf reads and writes GGUF files, the model format of llama.cpp
// and ggml: a header, typed key/value metadata (hyper-parameters, the
// tokenizer vocabulary), tensor descriptions, then aligned tensor data.
//
// The reader accepts GGUF versions 2 and 3 (little-endian) and treats every
// file as hostile: each count and length is checked against the bytes the
// file still holds before anything is allocated, and every error names the
// byte offset, key or tensor concerned. The writer produces version 3.
//
// Format reference: ggml's docs/gguf.md and src/gguf.cpp.
package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the alignment of tensor data when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that overrides DefaultAlignment.
const KeyAlignment = "general.alignment"

// maxDims is ggml's GGML_MAX_DIMS.
const maxDims = 4

// maxNameLen is the longest tensor name ggml accepts (GGML_MAX_NAME is 64
// bytes including the terminating NUL).
const maxNameLen = 63

// maxArrayDepth bounds the nesting of arrays of arrays. Real files never
// nest; the bound keeps a hostile file from recursing without limit.
const maxArrayDepth = 8

// File is a parsed GGUF file. The metadata and tensor descriptions are in
// memory; tensor data is read on demand, and those reads may run
// concurrently.
type File struct {
	Version    uint32
	KV         []KV         // in file order
	Tensors    []TensorInfo // in file order
	Alignment  uint64
	DataOffset int64 // absolute offset of the tensor data section

	r       io.ReaderAt
	size    int64
	path    string    // "" when parsed from a reader
	closer  io.Closer // the *os.File of Open, nil otherwise
	keys    map[string]int
	tensors map[string]int
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// Open parses the header, metadata and tensor infos of a GGUF v2/v3 file
// and keeps it open for tensor reads. Errors name the file.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := Parse(fd, st.Size())
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	f.path = path
	f.closer = fd
	return f, nil
}

// Close closes the underlying file of Open; it does nothing for Parse.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// ErrNotGGUF reports a file that does not start with the GGUF magic.
var ErrNotGGUF = errors.New("not a GGUF file")

// Parse reads a GGUF file from r, whose size is size bytes. r must stay
// valid while tensor data is read from the File.
func Parse(r io.ReaderAt, size int64) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative file size %d", size)
	}
	d := &decoder{r: r, size: size}
	f := &File{r: r, size: size}
	if err := f.parseHeader(d); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) parseHeader(d *decoder) error {
	magic, err := d.next(len(Magic))
	if err != nil {
		return fmt.Errorf("reading magic: %w", err)
	}
	if string(magic) != Magic {
		return fmt.Errorf("offset 0: magic is %q, want %q: %w", magic, Magic, ErrNotGGUF)
	}
	version, err := d.u32()
	if err != nil {
		return fmt.Errorf("reading version: %w", err)
	}
	switch {
	case version == 2 || version == 3:
	case version == 1:
		return fmt.Errorf("offset 4: GGUF version 1 is not supported (only 2 and 3)")
	case bits.ReverseBytes32(version) == 2 || bits.ReverseBytes32(version) == 3:
		return fmt.Errorf("offset 4: version field reads %#x: this is a big-endian GGUF, only little-endian is supported", version)
	default:
		return fmt.Errorf("offset 4: unsupported GGUF version %d (only 2 and 3)", version)
	}
	f.Version = version

	nTensors, err := d.u64()
	if err != nil {
		return fmt.Errorf("reading tensor count: %w", err)
	}
	nKV, err := d.u64()
	if err != nil {
		return fmt.Errorf("reading metadata count: %w", err)
	}
	// A key/value pair takes at least 13 bytes (key length, type, one byte
	// of value); a tensor info at least 24 (name length, n_dims, type, offset).
	if err := d.fits(nKV, 13, 8, "metadata count"); err != nil {
		return err
	}
	if err := d.fits(nTensors, 24, 16, "tensor count"); err != nil {
		return err
	}

	f.KV = make([]KV, 0, nKV)
	f.keys = make(map[string]int, nKV)
	for i := range nKV {
		start := d.off
		kv, err := d.keyValue()
		if err != nil {
			return fmt.Errorf("metadata entry %d at offset %d: %w", i, start, err)
		}
		if j, dup := f.keys[kv.Key]; dup {
			return fmt.Errorf("metadata entry %d at offset %d: duplicate key %q (first is entry %d)", i, start, kv.Key, j)
		}
		f.keys[kv.Key] = len(f.KV)
		f.KV = append(f.KV, kv)
	}

	if err := f.parseAlignment(); err != nil {
		return err
	}

	f.Tensors = make([]TensorInfo, 0, nTensors)
	f.tensors = make(map[string]int, nTensors)
	for i := range nTensors {
		start := d.off
		t, err := d.tensorInfo()
		if err != nil {
			return fmt.Errorf("tensor info %d at offset %d: %w", i, start, err)
		}
		if j, dup := f.tensors[t.Name]; dup {
			return fmt.Errorf("tensor info %d at offset %d: duplicate tensor name %q (first is tensor %d)", i, start, t.Name, j)
		}
		f.tensors[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}

	// The data section starts at the next multiple of the alignment. A file
	// without tensors may end before that padding: its data section is empty.
	dataOffset := uint64(d.off) + (f.Alignment-uint64(d.off)%f.Alignment)%f.Alignment
	if dataOffset > uint64(f.size) {
		if len(f.Tensors) > 0 {
			return fmt.Errorf("tensor data section would start at offset %d, beyond the end of the file (%d bytes)", dataOffset, f.size)
		}
		dataOffset = uint64(f.size)
	}
	f.DataOffset = int64(dataOffset)
	for _, t := range f.Tensors {
		if err := f.checkTensorData(t); err != nil {
			return err
		}
	}
	return nil
}

func (f *File) parseAlignment() error {
	f.Alignment = DefaultAlignment
	v, ok := f.Lookup(KeyAlignment)
	if !ok {
		return nil
	}
	// ggml requires uint32, and so does the Writer: a file this reader
	// accepts can be written back.
	a, _ := v.Uint64()
	if v.Type != ValueUint32 {
		return fmt.Errorf("key %s: has type %s, want uint32", KeyAlignment, v.typeName())
	}
	if a == 0 || a&(a-1) != 0 {
		return fmt.Errorf("key %s: alignment %d is not a power of two", KeyAlignment, a)
	}
	f.Alignment = a
	return nil
}

// checkTensorData checks that a tensor's data is aligned and lies inside the file.
func (f *File) checkTensorData(t TensorInfo) error {
	if t.Offset%f.Alignment != 0 {
		return fmt.Errorf("tensor %q: data offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
	}
	avail := uint64(f.size - f.DataOffset)
	if t.Offset > avail || t.Bytes() > avail-t.Offset {
		return fmt.Errorf("tensor %q: data [%d, +%d bytes) at absolute offset %d runs past the end of the file (%d bytes)",
			t.Name, t.Offset, t.Bytes(), uint64(f.DataOffset)+t.Offset, f.size)
	}
	return nil
}

// decoder reads the little-endian header of a GGUF file through a window
// of the file, tracking the offset for error messages and the bytes left
// for allocation checks.
type decoder struct {
	r      io.ReaderAt
	size   int64
	off    int64  // bytes consumed so far
	win    []byte // the file's bytes [winOff, winOff+len(win))
	winOff int64
}

// windowSize is how much of the file the decoder reads at a time.
const windowSize = 64 << 10

func (d *decoder) remaining() int64 { return d.size - d.off }

// next consumes n bytes and returns them. The slice is only valid until
// the following call.
func (d *decoder) next(n int) ([]byte, error) {
	if int64(n) > d.remaining() {
		return nil, fmt.Errorf("file truncated at offset %d: needed %d bytes, %d remain", d.off, n, d.remaining())
	}
	pos := int(d.off - d.winOff)
	if pos+n > len(d.win) {
		size := int(min(max(windowSize, int64(n)), d.remaining()))
		if cap(d.win) < size {
			d.win = make([]byte, size)
		}
		d.win = d.win[:size]
		// A ReaderAt may report io.EOF along with a full read at the end.
		if got, err := d.r.ReadAt(d.win, d.off); got < size {
			return nil, fmt.Errorf("reading %d bytes at offset %d: %w", size, d.off, err)
		}
		d.winOff, pos = d.off, 0
	}
	d.off += int64(n)
	return d.win[pos : pos+n], nil
}

// fits checks that count items of at least minSize bytes each can fit in
// the rest of the file, so that allocating count items is justified. at
// says how far back the count was read, for the error message.
func (d *decoder) fits(count uint64, minSize int64, at int64, what string) error {
	if count > uint64(d.remaining()/minSize) {
		return fmt.Errorf("offset %d: %s %d needs at least %d bytes per item but only %d bytes remain in the file",
			d.off-at, what, count, minSize, d.remaining())
	}
	return nil
}

func (d *decoder) u8() (uint8, error) {
	b, err := d.next(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) u16() (uint16, error) {
	b, err := d.next(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.next(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.next(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// strBytes reads a string (u64 length, then bytes) and returns its bytes,
// valid until the next read.
func (d *decoder) strBytes() ([]byte, error) {
	n, err := d.u64()
	if err != nil {
		return nil, err
	}
	if n > uint64(d.remaining()) {
		return nil, fmt.Errorf("offset %d: string length %d exceeds the %d bytes left in the file", d.off-8, n, d.remaining())
	}
	return d.next(int(n))
}

func (d *decoder) str() (string, error) {
	b, err := d.strBytes()
	return string(b), err
}

func (d *decoder) keyValue() (KV, error) {
	key, err := d.str()
	if err != nil {
		return KV{}, fmt.Errorf("reading key: %w", err)
	}
	t, err := d.u32()
	if err != nil {
		return KV{}, fmt.Errorf("key %q: reading type: %w", key, err)
	}
	v, err := d.value(ValueType(t), 0)
	if err != nil {
		return KV{}, fmt.Errorf("key %q: %w", key, err)
	}
	return KV{Key: key, Value: v}, nil
}

func (d *decoder) value(t ValueType, depth int) (Value, error) {
	v := Value{Type: t}
	var err error
	switch t {
	case ValueUint8:
		var x uint8
		x, err = d.u8()
		v.bits = uint64(x)
	case ValueBool:
		// Like ggml, any non-zero byte is true.
		var x uint8
		x, err = d.u8()
		v.bits = uint64(min(x, 1))
	case ValueInt8:
		var x uint8
		x, err = d.u8()
		v.bits = uint64(int64(int8(x)))
	case ValueUint16:
		var x uint16
		x, err = d.u16()
		v.bits = uint64(x)
	case ValueInt16:
		var x uint16
		x, err = d.u16()
		v.bits = uint64(int64(int16(x)))
	case ValueUint32, ValueFloat32:
		var x uint32
		x, err = d.u32()
		v.bits = uint64(x)
	case ValueInt32:
		var x uint32
		x, err = d.u32()
		v.bits = uint64(int64(int32(x)))
	case ValueUint64, ValueInt64, ValueFloat64:
		v.bits, err = d.u64()
	case ValueString:
		v.str, err = d.str()
	case ValueArray:
		return d.array(depth)
	default:
		return v, fmt.Errorf("offset %d: unknown metadata value type %d", d.off-4, uint32(t))
	}
	return v, err
}

func (d *decoder) array(depth int) (Value, error) {
	if depth >= maxArrayDepth {
		return Value{}, fmt.Errorf("offset %d: arrays nested more than %d deep", d.off, maxArrayDepth)
	}
	et, err := d.u32()
	if err != nil {
		return Value{}, err
	}
	elem := ValueType(et)
	if !elem.known() {
		return Value{}, fmt.Errorf("offset %d: unknown array element type %d", d.off-4, et)
	}
	n, err := d.u64()
	if err != nil {
		return Value{}, err
	}
	if err := d.fits(n, elem.encodedSize(), 8, "array length"); err != nil {
		return Value{}, err
	}
	v := Value{Type: ValueArray, elem: elem}
	switch elem {
	case ValueUint8:
		v.array, err = readArray(d, n, func() (uint8, error) { return d.u8() })
	case ValueInt8:
		v.array, err = readArray(d, n, func() (int8, error) { x, err := d.u8(); return int8(x), err })
	case ValueUint16:
		v.array, err = readArray(d, n, d.u16)
	case ValueInt16:
		v.array, err = readArray(d, n, func() (int16, error) { x, err := d.u16(); return int16(x), err })
	case ValueUint32:
		v.array, err = readArray(d, n, d.u32)
	case ValueInt32:
		v.array, err = readArray(d, n, func() (int32, error) { x, err := d.u32(); return int32(x), err })
	case ValueFloat32:
		v.array, err = readArray(d, n, func() (float32, error) { x, err := d.u32(); return math.Float32frombits(x), err })
	case ValueBool:
		v.array, err = readArray(d, n, func() (bool, error) { x, err := d.u8(); return x != 0, err })
	case ValueString:
		v.array, err = d.strs(n)
	case ValueUint64:
		v.array, err = readArray(d, n, d.u64)
	case ValueInt64:
		v.array, err = readArray(d, n, func() (int64, error) { x, err := d.u64(); return int64(x), err })
	case ValueFloat64:
		v.array, err = readArray(d, n, func() (float64, error) { x, err := d.u64(); return math.Float64frombits(x), err })
	case ValueArray:
		v.array, err = readArray(d, n, func() (Value, error) { return d.array(depth + 1) })
	}
	return v, err
}

// readArray reads n elements with next. The caller has checked that n
// elements fit in the rest of the file.
func readArray[T any](d *decoder, n uint64, next func() (T, error)) ([]T, error) {
	out := make([]T, n)
	for i := range out {
		x, err := next()
		if err != nil {
			return nil, fmt.Errorf("array element %d: %w", i, err)
		}
		out[i] = x
	}
	return out, nil
}

// strs reads an array of n strings. Vocabularies hold 100k of them, so
// their bytes are gathered into 64 KiB chunks, each turned into one string
// that the elements slice: a few dozen allocations instead of n.
func (d *decoder) strs(n uint64) ([]string, error) {
	const chunkSize = 64 << 10
	out := make([]string, n)
	ends := make([]int, 0, 1024) // end offsets in chunk of out[first:]
	var chunk []byte
	first := 0
	flush := func() {
		all := string(chunk)
		start := 0
		for k, end := range ends {
			out[first+k] = all[start:end]
			start = end
		}
		first += len(ends)
		ends, chunk = ends[:0], chunk[:0]
	}
	for i := range out {
		b, err := d.strBytes()
		if err != nil {
			return nil, fmt.Errorf("array element %d: %w", i, err)
		}
		if len(chunk)+len(b) > cap(chunk) {
			flush()
			// The rest of the file bounds what the strings still need.
			chunk = make([]byte, 0, len(b)+int(min(chunkSize, d.remaining())))
		}
		chunk = append(chunk, b...)
		ends = append(ends, len(chunk))
	}
	flush()
	return out, nil
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	name, err := d.str()
	if err != nil {
		return TensorInfo{}, fmt.Errorf("reading name: %w", err)
	}
	t := TensorInfo{Name: name}
	if len(name) > maxNameLen {
		return t, fmt.Errorf("tensor name %q is %d bytes long, ggml allows at most %d", name, len(name), maxNameLen)
	}
	nDims, err := d.u32()
	if err != nil {
		return t, fmt.Errorf("tensor %q: %w", name, err)
	}
	if nDims > maxDims {
		return t, fmt.Errorf("tensor %q: offset %d: %d dimensions, ggml allows at most %d", name, d.off-4, nDims, maxDims)
	}
	t.Shape = make([]uint64, nDims)
	elements := uint64(1)
	for i := range t.Shape {
		if t.Shape[i], err = d.u64(); err != nil {
			return t, fmt.Errorf("tensor %q: %w", name, err)
		}
		// ggml stores dimensions as int64.
		hi, lo := bits.Mul64(elements, t.Shape[i])
		if t.Shape[i] > math.MaxInt64 || hi != 0 || lo > math.MaxInt64 {
			return t, fmt.Errorf("tensor %q: offset %d: shape %v overflows the element count", name, d.off-8, t.Shape[:i+1])
		}
		elements = lo
	}
	typ, err := d.u32()
	if err != nil {
		return t, fmt.Errorf("tensor %q: %w", name, err)
	}
	t.Type = TensorType(typ)
	if t.Type.BlockSize() == 0 {
		return t, fmt.Errorf("tensor %q: offset %d: unknown tensor type %d", name, d.off-4, typ)
	}
	if len(t.Shape) > 0 && t.Shape[0]%t.Type.BlockSize() != 0 {
		return t, fmt.Errorf("tensor %q: row length %d is not a multiple of the %s block size %d", name, t.Shape[0], t.Type, t.Type.BlockSize())
	}
	if t.Offset, err = d.u64(); err != nil {
		return t, fmt.Errorf("tensor %q: %w", name, err)
	}
	return t, nil
}

// Lookup returns the value of a metadata key.
func (f *File) Lookup(key string) (Value, bool) {
	i, ok := f.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// String returns a string metadata value.
func (f *File) String(key string) (string, error) {
	v, ok := f.Lookup(key)
	if !ok {
		return "", f.errorf("key %s is missing, want a string", key)
	}
	s, ok := v.String()
	if !ok {
		return "", f.errorf("key %s has type %s, want string", key, v.typeName())
	}
	return s, nil
}

// Uint returns an integer metadata value of any type that is not negative.
func (f *File) Uint(key string) (uint64, error) {
	v, ok := f.Lookup(key)
	if !ok {
		return 0, f.errorf("key %s is missing, want an unsigned integer", key)
	}
	u, ok := v.Uint64()
	if !ok {
		if i, isInt := v.Int64(); isInt {
			return 0, f.errorf("key %s is %d, want a non-negative integer", key, i)
		}
		return 0, f.errorf("key %s has type %s, want an unsigned integer", key, v.typeName())
	}
	return u, nil
}

// Float returns a float32 or float64 metadata value.
func (f *File) Float(key string) (float64, error) {
	v, ok := f.Lookup(key)
	if !ok {
		return 0, f.errorf("key %s is missing, want a float", key)
	}
	x, ok := v.Float64()
	if !ok {
		return 0, f.errorf("key %s has type %s, want float32 or float64", key, v.typeName())
	}
	return x, nil
}

// Architecture returns general.architecture, "" if absent or not a string.
func (f *File) Architecture() string {
	v, _ := f.Lookup("general.architecture")
	s, _ := v.String()
	return s
}

// Tensor returns the description of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tensors[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// errorf returns an error prefixed with the file's path when it has one.
func (f *File) errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if f.path == "" {
		return err
	}
	return fmt.Errorf("gguf %s: %w", f.path, err)
}
