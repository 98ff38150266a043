package gguf

import (
	"encoding/binary"
	"math"
)

// ReadTensorBytes returns the raw data of the named tensor, as stored.
func (f *File) ReadTensorBytes(name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, f.errorf("no tensor named %q", name)
	}
	// Parse checked that the data lies inside the file, so the allocation
	// is bounded by the file size.
	b := make([]byte, t.Bytes())
	if len(b) == 0 {
		// A tensor with a zero dimension may sit at the very end of the
		// file, where even an empty ReadAt reports io.EOF.
		return b, nil
	}
	off := f.DataOffset + int64(t.Offset)
	if _, err := f.r.ReadAt(b, off); err != nil {
		return nil, f.errorf("tensor %q: reading %d bytes at offset %d: %w", name, len(b), off, err)
	}
	return b, nil
}

// ReadTensorF32 returns the named tensor converted to float32, row-major
// with ne0 varying fastest. It supports F32, F16, BF16 and the quantised
// types of Dequantize.
func (f *File) ReadTensorF32(name string) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, f.errorf("no tensor named %q", name)
	}
	switch t.Type {
	case TypeF32, TypeF16, TypeBF16:
	default:
		if _, ok := dequantizers[t.Type]; !ok {
			return nil, f.errorf("tensor %q has type %s; ReadTensorF32 supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K-Q6_K, IQ4_NL and IQ4_XS", name, t.Type)
		}
	}
	b, err := f.ReadTensorBytes(name)
	if err != nil {
		return nil, err
	}
	if t.Type != TypeF32 && t.Type != TypeF16 && t.Type != TypeBF16 {
		out, err := Dequantize(t.Type, b, int(t.Elements()))
		if err != nil {
			return nil, f.errorf("tensor %q: %w", name, err)
		}
		return out, nil
	}
	out := make([]float32, t.Elements())
	switch t.Type {
	case TypeF32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case TypeF16:
		for i := range out {
			out[i] = F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case TypeBF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
	}
	return out, nil
}

// F16ToF32 converts IEEE 754 half-precision bits to a float32 (exactly).
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN: keep the payload
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: mant * 2^-24
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToF16 converts a float32 to half-precision bits, rounding to nearest
// with ties to even; values too large become ±inf, NaN stays NaN.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 { // NaN: keep it quiet and non-zero
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): the result is m * 2^-24 with the
		// implicit bit made explicit, shifted right by 14-e.
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		return sign | uint16(roundShift(m, shift))
	}
	// Normal: rounding can carry into the exponent, which is exactly right
	// (up to and including overflow to infinity).
	return sign | uint16(uint32(e)<<10+roundShift(mant, 13))
}

// roundShift returns m >> s rounded to nearest, ties to even.
func roundShift(m, s uint32) uint32 {
	q := m >> s
	rem := m & (1<<s - 1)
	half := uint32(1) << (s - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	return q
}
