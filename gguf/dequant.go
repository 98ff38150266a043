package gguf

import (
	"encoding/binary"
	"fmt"
)

// The block formats below are ggml's (ggml-common.h): each block is a run of
// little-endian fields, f16 scales first or last as ggml lays them out. The
// formulas are those of ggml's dequantize_row_* functions; a test compares
// every type with ggml's own dequantisation of data its quantiser wrote.
//
// These are the types llama.cpp's quantiser writes for the usual presets
// (Q4_0 ... Q8_0, the K-quants, IQ4_NL/IQ4_XS, and the fallbacks it picks for
// tensors whose rows are not a multiple of 256), so a delta quantised by
// `cmc quantize` or llama-quantize loads.

// dequantizers maps a quantised type to the function expanding whole blocks
// of b into out (len(out) is a multiple of the block size, and b holds
// exactly len(out)/BlockSize blocks).
var dequantizers = map[TensorType]func(out []float32, b []byte){
	TypeQ4_0:   dequantizeQ4_0,
	TypeQ4_1:   dequantizeQ4_1,
	TypeQ5_0:   dequantizeQ5_0,
	TypeQ5_1:   dequantizeQ5_1,
	TypeQ8_0:   dequantizeQ8_0,
	TypeQ2_K:   dequantizeQ2K,
	TypeQ3_K:   dequantizeQ3K,
	TypeQ4_K:   dequantizeQ4K,
	TypeQ5_K:   dequantizeQ5K,
	TypeQ6_K:   dequantizeQ6K,
	TypeIQ4_NL: dequantizeIQ4NL,
	TypeIQ4_XS: dequantizeIQ4XS,
}

// CanDequantize reports whether Dequantize (and so ReadTensorF32) expands
// tensors of type t.
func CanDequantize(t TensorType) bool {
	_, ok := dequantizers[t]
	return ok
}

// Dequantize expands n elements of type t stored in b into float32. It
// fails for a type it cannot expand, or when b is not exactly n elements'
// worth of blocks.
func Dequantize(t TensorType, b []byte, n int) ([]float32, error) {
	f, ok := dequantizers[t]
	if !ok {
		return nil, fmt.Errorf("cannot dequantise tensor type %s", t)
	}
	bs, ts := int(t.BlockSize()), int(t.TypeSize())
	if n%bs != 0 || len(b) != n/bs*ts {
		return nil, fmt.Errorf("%s: %d bytes for %d elements, want %d (blocks of %d elements in %d bytes)", t, len(b), n, n/bs*ts, bs, ts)
	}
	out := make([]float32, n)
	f(out, b)
	return out, nil
}

func f16At(b []byte, off int) float32 { return F16ToF32(binary.LittleEndian.Uint16(b[off:])) }

// dequantizeQ8_0 expands Q8_0 blocks: an f16 scale d followed by 32 int8
// quants q, each element being d*q.
func dequantizeQ8_0(out []float32, b []byte) {
	const block, size = 32, 34
	for i := 0; i < len(out)/block; i++ {
		blk := b[i*size : (i+1)*size]
		d := f16At(blk, 0)
		for j, q := range blk[2:] {
			out[i*block+j] = d * float32(int8(q))
		}
	}
}

// Q4_0: d, 16 bytes of nibbles; element j is the low nibble of byte j, element
// j+16 the high one, both offset by -8.
func dequantizeQ4_0(out []float32, b []byte) {
	const block, size = 32, 18
	for i := 0; i < len(out)/block; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*block:(i+1)*block]
		d := f16At(blk, 0)
		for j, q := range blk[2:] {
			y[j] = float32(int(q&0xF)-8) * d
			y[j+16] = float32(int(q>>4)-8) * d
		}
	}
}

// Q4_1: d, m, 16 bytes of nibbles; elements are q·d + m.
func dequantizeQ4_1(out []float32, b []byte) {
	const block, size = 32, 20
	for i := 0; i < len(out)/block; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*block:(i+1)*block]
		d, m := f16At(blk, 0), f16At(blk, 2)
		for j, q := range blk[4:] {
			y[j] = float32(q&0xF)*d + m
			y[j+16] = float32(q>>4)*d + m
		}
	}
}

// Q5_0: d, 32 high bits, 16 bytes of nibbles; 5-bit quants offset by -16.
func dequantizeQ5_0(out []float32, b []byte) {
	const block, size = 32, 22
	for i := 0; i < len(out)/block; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*block:(i+1)*block]
		d := f16At(blk, 0)
		qh := binary.LittleEndian.Uint32(blk[2:])
		for j, q := range blk[6:] {
			h0 := byte(qh>>j<<4) & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			y[j] = float32(int((q&0xF)|h0)-16) * d
			y[j+16] = float32(int((q>>4)|h1)-16) * d
		}
	}
}

// Q5_1: d, m, 32 high bits, 16 bytes of nibbles; elements are q·d + m.
func dequantizeQ5_1(out []float32, b []byte) {
	const block, size = 32, 24
	for i := 0; i < len(out)/block; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*block:(i+1)*block]
		d, m := f16At(blk, 0), f16At(blk, 2)
		qh := binary.LittleEndian.Uint32(blk[4:])
		for j, q := range blk[8:] {
			h0 := byte(qh>>j<<4) & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			y[j] = float32((q&0xF)|h0)*d + m
			y[j+16] = float32((q>>4)|h1)*d + m
		}
	}
}

// Q2_K: 16 bytes of 4-bit scale/min pairs, 64 bytes of 2-bit quants, d, dmin.
func dequantizeQ2K(out []float32, b []byte) {
	const size = 84
	for i := 0; i < len(out)/qkK; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*qkK:(i+1)*qkK]
		scales, qs := blk[:16], blk[16:80]
		d, dmin := f16At(blk, 80), f16At(blk, 82)
		is, o := 0, 0
		for n := 0; n < qkK; n += 128 {
			q := qs[n/4:]
			for shift := uint(0); shift < 8; shift += 2 {
				for half := 0; half < 2; half++ {
					sc := scales[is]
					is++
					dl, ml := d*float32(sc&0xF), dmin*float32(sc>>4)
					for l := 0; l < 16; l++ {
						y[o] = dl*float32((q[l+16*half]>>shift)&3) - ml
						o++
					}
				}
			}
		}
	}
}

// Q3_K: 32 bytes of high bits, 64 bytes of 2-bit quants, 12 bytes of 6-bit
// scales, d.
func dequantizeQ3K(out []float32, b []byte) {
	const size = 110
	var scales [16]int8
	for i := 0; i < len(out)/qkK; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*qkK:(i+1)*qkK]
		hm, qs, sc := blk[:32], blk[32:96], blk[96:108]
		d := f16At(blk, 108)
		// 16 scales of 6 bits: low 4 bits from the first 8 bytes' nibbles,
		// high 2 bits from the last 4 bytes.
		for j := 0; j < 16; j++ {
			low := sc[j%8] >> (4 * uint(j/8)) & 0xF
			high := sc[8+j%4] >> (2 * uint(j/4)) & 3
			scales[j] = int8(low|high<<4) - 32
		}
		is, o := 0, 0
		m := byte(1)
		for n := 0; n < qkK; n += 128 {
			q := qs[n/4:]
			for shift := uint(0); shift < 8; shift += 2 {
				for half := 0; half < 2; half++ {
					dl := d * float32(scales[is])
					is++
					for l := 16 * half; l < 16*half+16; l++ {
						v := int((q[l] >> shift) & 3)
						if hm[l]&m == 0 {
							v -= 4
						}
						y[o] = dl * float32(v)
						o++
					}
				}
				m <<= 1
			}
		}
	}
}

// scaleMinK4 unpacks the j-th 6-bit scale and min of a Q4_K/Q5_K block.
func scaleMinK4(j int, q []byte) (sc, m byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xF | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// Q4_K: d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles.
func dequantizeQ4K(out []float32, b []byte) {
	const size = 144
	for i := 0; i < len(out)/qkK; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*qkK:(i+1)*qkK]
		d, dmin := f16At(blk, 0), f16At(blk, 2)
		scales, qs := blk[4:16], blk[16:]
		for j := 0; j < 4; j++ {
			sc1, m1 := scaleMinK4(2*j, scales)
			sc2, m2 := scaleMinK4(2*j+1, scales)
			d1, min1 := d*float32(sc1), dmin*float32(m1)
			d2, min2 := d*float32(sc2), dmin*float32(m2)
			q := qs[32*j : 32*j+32]
			for l, v := range q {
				y[64*j+l] = d1*float32(v&0xF) - min1
				y[64*j+32+l] = d2*float32(v>>4) - min2
			}
		}
	}
}

// Q5_K: d, dmin, 12 bytes of scales and mins, 32 bytes of high bits, 128
// bytes of nibbles.
func dequantizeQ5K(out []float32, b []byte) {
	const size = 176
	for i := 0; i < len(out)/qkK; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*qkK:(i+1)*qkK]
		d, dmin := f16At(blk, 0), f16At(blk, 2)
		scales, qh, qs := blk[4:16], blk[16:48], blk[48:]
		for j := 0; j < 4; j++ {
			sc1, m1 := scaleMinK4(2*j, scales)
			sc2, m2 := scaleMinK4(2*j+1, scales)
			d1, min1 := d*float32(sc1), dmin*float32(m1)
			d2, min2 := d*float32(sc2), dmin*float32(m2)
			u1, u2 := byte(1)<<(2*j), byte(2)<<(2*j)
			for l := 0; l < 32; l++ {
				lo, hi := qs[32*j+l]&0xF, qs[32*j+l]>>4
				if qh[l]&u1 != 0 {
					lo += 16
				}
				if qh[l]&u2 != 0 {
					hi += 16
				}
				y[64*j+l] = d1*float32(lo) - min1
				y[64*j+32+l] = d2*float32(hi) - min2
			}
		}
	}
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8
// scales, d; quants are offset by -32.
func dequantizeQ6K(out []float32, b []byte) {
	const size = 210
	for i := 0; i < len(out)/qkK; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*qkK:(i+1)*qkK]
		d := f16At(blk, 208)
		for n := 0; n < 2; n++ {
			ql, qh, sc := blk[64*n:], blk[128+32*n:], blk[192+8*n:]
			yy := y[128*n:]
			for l := 0; l < 32; l++ {
				is := l / 16
				q1 := int(ql[l]&0xF|(qh[l]>>0&3)<<4) - 32
				q2 := int(ql[l+32]&0xF|(qh[l]>>2&3)<<4) - 32
				q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
				q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
				yy[l] = d * float32(int8(sc[is])) * float32(q1)
				yy[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				yy[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				yy[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
		}
	}
}

// kvaluesIQ4NL is the non-linear 4-bit codebook of IQ4_NL and IQ4_XS.
var kvaluesIQ4NL = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// IQ4_NL: d, 16 bytes of codebook indices.
func dequantizeIQ4NL(out []float32, b []byte) {
	const block, size = 32, 18
	for i := 0; i < len(out)/block; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*block:(i+1)*block]
		d := f16At(blk, 0)
		for j, q := range blk[2:] {
			y[j] = d * float32(kvaluesIQ4NL[q&0xF])
			y[j+16] = d * float32(kvaluesIQ4NL[q>>4])
		}
	}
}

// IQ4_XS: d, 16 high scale bits, 4 bytes of low scale nibbles, 128 bytes of
// codebook indices; eight sub-blocks of 32 with 6-bit scales offset by -32.
func dequantizeIQ4XS(out []float32, b []byte) {
	const size = 136
	for i := 0; i < len(out)/qkK; i++ {
		blk, y := b[i*size:(i+1)*size], out[i*qkK:(i+1)*qkK]
		d := f16At(blk, 0)
		scalesH := binary.LittleEndian.Uint16(blk[2:])
		scalesL, qs := blk[4:8], blk[8:]
		for ib := 0; ib < 8; ib++ {
			ls := int(scalesL[ib/2]>>(4*uint(ib%2))&0xF) | int(scalesH>>(2*uint(ib))&3)<<4
			dl := d * float32(ls-32)
			q := qs[16*ib : 16*ib+16]
			for j, v := range q {
				y[32*ib+j] = dl * float32(kvaluesIQ4NL[v&0xF])
				y[32*ib+16+j] = dl * float32(kvaluesIQ4NL[v>>4])
			}
		}
	}
}
