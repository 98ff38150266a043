//go:build amd64 && !noasm

#include "textflag.h"

// func kernel6x16AVX2(k int, a *float32, rowStep, kStep uintptr, b, c *float32, ldc uintptr, accumulate bool)
//
// c[6×16] (+)= A[6×k]·B[k×16]. Y0..Y11 hold the tile, two YMM per row. Each
// k step loads one 16-float row of the packed panel B into Y12, Y13 and
// multiplies it with each row's element of A, broadcast into Y14 or Y15.
// Rows 0-2 of A are at SI + {0,1,2}·rowStep, rows 3-5 at R9 + the same.
TEXT ·kernel6x16AVX2(SB), NOSPLIT, $0-57
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rowStep+16(FP), R8
	MOVQ kStep+24(FP), R10
	MOVQ b+32(FP), BX
	LEAQ (SI)(R8*2), R9
	ADDQ R8, R9

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

loop6x16:
	VMOVUPS      (BX), Y12
	VMOVUPS      32(BX), Y13
	VBROADCASTSS (SI), Y14
	VFMADD231PS  Y12, Y14, Y0
	VFMADD231PS  Y13, Y14, Y1
	VBROADCASTSS (SI)(R8*1), Y15
	VFMADD231PS  Y12, Y15, Y2
	VFMADD231PS  Y13, Y15, Y3
	VBROADCASTSS (SI)(R8*2), Y14
	VFMADD231PS  Y12, Y14, Y4
	VFMADD231PS  Y13, Y14, Y5
	VBROADCASTSS (R9), Y15
	VFMADD231PS  Y12, Y15, Y6
	VFMADD231PS  Y13, Y15, Y7
	VBROADCASTSS (R9)(R8*1), Y14
	VFMADD231PS  Y12, Y14, Y8
	VFMADD231PS  Y13, Y14, Y9
	VBROADCASTSS (R9)(R8*2), Y15
	VFMADD231PS  Y12, Y15, Y10
	VFMADD231PS  Y13, Y15, Y11
	ADDQ         $64, BX
	ADDQ         R10, SI
	ADDQ         R10, R9
	DECQ         CX
	JNZ          loop6x16

	MOVQ    c+40(FP), DI
	MOVQ    ldc+48(FP), DX
	MOVBQZX accumulate+56(FP), AX
	TESTQ   AX, AX
	JZ      store6x16

#define ADDROW(lo, hi) \
	VADDPS (DI), lo, lo; \
	VADDPS 32(DI), hi, hi; \
	VMOVUPS lo, (DI); \
	VMOVUPS hi, 32(DI); \
	ADDQ DX, DI

	ADDROW(Y0, Y1)
	ADDROW(Y2, Y3)
	ADDROW(Y4, Y5)
	ADDROW(Y6, Y7)
	ADDROW(Y8, Y9)
	ADDROW(Y10, Y11)
	VZEROUPPER
	RET

#define STOREROW(lo, hi) \
	VMOVUPS lo, (DI); \
	VMOVUPS hi, 32(DI); \
	ADDQ DX, DI

store6x16:
	STOREROW(Y0, Y1)
	STOREROW(Y2, Y3)
	STOREROW(Y4, Y5)
	STOREROW(Y6, Y7)
	STOREROW(Y8, Y9)
	STOREROW(Y10, Y11)
	VZEROUPPER
	RET

// func kernel12x32AVX512(k int, a *float32, rowStep, kStep uintptr, b, c *float32, ldc uintptr, accumulate bool)
//
// c[12×32] (+)= A[12×k]·B[k×32], the AVX-512 version of kernel6x16AVX2:
// Z0..Z23 hold the tile, Z24 and Z25 a row of B, Z26 and Z27 the
// broadcast elements of A. Rows 0-2 of A are at SI + {0,1,2}·rowStep, rows
// 3-5 at R9, 6-8 at R11, 9-11 at R12.
TEXT ·kernel12x32AVX512(SB), NOSPLIT, $0-57
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rowStep+16(FP), R8
	MOVQ kStep+24(FP), R10
	MOVQ b+32(FP), BX
	LEAQ (R8)(R8*2), AX
	LEAQ (SI)(AX*1), R9
	LEAQ (R9)(AX*1), R11
	LEAQ (R11)(AX*1), R12

	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23

#define FMAROW(addr, bcast, lo, hi) \
	VBROADCASTSS addr, bcast; \
	VFMADD231PS  Z24, bcast, lo; \
	VFMADD231PS  Z25, bcast, hi

loop12x32:
	VMOVUPS (BX), Z24
	VMOVUPS 64(BX), Z25
	FMAROW((SI), Z26, Z0, Z1)
	FMAROW((SI)(R8*1), Z27, Z2, Z3)
	FMAROW((SI)(R8*2), Z26, Z4, Z5)
	FMAROW((R9), Z27, Z6, Z7)
	FMAROW((R9)(R8*1), Z26, Z8, Z9)
	FMAROW((R9)(R8*2), Z27, Z10, Z11)
	FMAROW((R11), Z26, Z12, Z13)
	FMAROW((R11)(R8*1), Z27, Z14, Z15)
	FMAROW((R11)(R8*2), Z26, Z16, Z17)
	FMAROW((R12), Z27, Z18, Z19)
	FMAROW((R12)(R8*1), Z26, Z20, Z21)
	FMAROW((R12)(R8*2), Z27, Z22, Z23)
	ADDQ $128, BX
	ADDQ R10, SI
	ADDQ R10, R9
	ADDQ R10, R11
	ADDQ R10, R12
	DECQ CX
	JNZ  loop12x32

	MOVQ    c+40(FP), DI
	MOVQ    ldc+48(FP), DX
	MOVBQZX accumulate+56(FP), AX
	TESTQ   AX, AX
	JZ      store12x32

#define ADDROW512(lo, hi) \
	VADDPS (DI), lo, lo; \
	VADDPS 64(DI), hi, hi; \
	VMOVUPS lo, (DI); \
	VMOVUPS hi, 64(DI); \
	ADDQ DX, DI

	ADDROW512(Z0, Z1)
	ADDROW512(Z2, Z3)
	ADDROW512(Z4, Z5)
	ADDROW512(Z6, Z7)
	ADDROW512(Z8, Z9)
	ADDROW512(Z10, Z11)
	ADDROW512(Z12, Z13)
	ADDROW512(Z14, Z15)
	ADDROW512(Z16, Z17)
	ADDROW512(Z18, Z19)
	ADDROW512(Z20, Z21)
	ADDROW512(Z22, Z23)
	VZEROUPPER
	RET

#define STOREROW512(lo, hi) \
	VMOVUPS lo, (DI); \
	VMOVUPS hi, 64(DI); \
	ADDQ DX, DI

store12x32:
	STOREROW512(Z0, Z1)
	STOREROW512(Z2, Z3)
	STOREROW512(Z4, Z5)
	STOREROW512(Z6, Z7)
	STOREROW512(Z8, Z9)
	STOREROW512(Z10, Z11)
	STOREROW512(Z12, Z13)
	STOREROW512(Z14, Z15)
	STOREROW512(Z16, Z17)
	STOREROW512(Z18, Z19)
	STOREROW512(Z20, Z21)
	STOREROW512(Z22, Z23)
	VZEROUPPER
	RET

// func dotAVX2(a, b *float32, n int) float32
//
// Four YMM accumulators take 32 elements per iteration, enough to keep both
// FMA units busy; the remainder is done one element at a time in X0.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	CMPQ   CX, $32
	JLT    dotTail

dotLoop:
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	CMPQ        CX, $32
	JGE         dotLoop

dotTail:
	CMPQ  CX, $8
	JLT   dotReduce
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         dotTail

dotReduce:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	TESTQ        CX, CX
	JZ           dotDone

dotScalar:
	VMOVSS      (SI), X4
	VFMADD231SS (DI), X4, X0
	ADDQ        $4, SI
	ADDQ        $4, DI
	DECQ        CX
	JNZ         dotScalar

dotDone:
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func axpyAVX2(alpha float32, x, y *float32, n int)
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	VBROADCASTSS alpha+0(FP), Y0
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), DI
	MOVQ         n+24(FP), CX
	CMPQ         CX, $32
	JLT          axpyTail

axpyLoop:
	VMOVUPS     (DI), Y4
	VMOVUPS     32(DI), Y5
	VMOVUPS     64(DI), Y6
	VMOVUPS     96(DI), Y7
	VFMADD231PS (SI), Y0, Y4
	VFMADD231PS 32(SI), Y0, Y5
	VFMADD231PS 64(SI), Y0, Y6
	VFMADD231PS 96(SI), Y0, Y7
	VMOVUPS     Y4, (DI)
	VMOVUPS     Y5, 32(DI)
	VMOVUPS     Y6, 64(DI)
	VMOVUPS     Y7, 96(DI)
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	CMPQ        CX, $32
	JGE         axpyLoop

axpyTail:
	CMPQ        CX, $8
	JLT         axpyScalar
	VMOVUPS     (DI), Y4
	VFMADD231PS (SI), Y0, Y4
	VMOVUPS     Y4, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         axpyTail

axpyScalar:
	TESTQ       CX, CX
	JZ          axpyDone
	VMOVSS      (DI), X4
	VFMADD231SS (SI), X0, X4
	VMOVSS      X4, (DI)
	ADDQ        $4, SI
	ADDQ        $4, DI
	DECQ        CX
	JMP         axpyScalar

axpyDone:
	VZEROUPPER
	RET

// func scaleAVX2(alpha float32, x *float32, n int)
TEXT ·scaleAVX2(SB), NOSPLIT, $0-24
	VBROADCASTSS alpha+0(FP), Y0
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX

scaleTail:
	CMPQ    CX, $8
	JLT     scaleScalar
	VMULPS  (SI), Y0, Y4
	VMOVUPS Y4, (SI)
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     scaleTail

scaleScalar:
	TESTQ  CX, CX
	JZ     scaleDone
	VMULSS (SI), X0, X4
	VMOVSS X4, (SI)
	ADDQ   $4, SI
	DECQ   CX
	JMP    scaleScalar

scaleDone:
	VZEROUPPER
	RET

// func transpose8x8AVX(dst *float32, ldd uintptr, src *float32, lds uintptr, blocks int)
//
// Transposes blocks consecutive 8×8 blocks: block b is the 8 rows (lds bytes
// apart) of 8 floats at src + 32b bytes, and becomes the 8 rows (ldd bytes
// apart) of 8 floats at dst + 8b·ldd bytes. Rows pair up with VUNPCKL/HPS,
// quads with VSHUFPS, and VPERM2F128 joins the 128-bit lanes.
TEXT ·transpose8x8AVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), DX
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R8
	MOVQ blocks+32(FP), CX
	LEAQ (R8)(R8*2), R10
	LEAQ (SI)(R8*4), R9
	LEAQ (DX)(DX*2), R11
	LEAQ (DI)(DX*4), R12
	SHLQ $3, DX

transposeLoop:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R8*1), Y1
	VMOVUPS (SI)(R8*2), Y2
	VMOVUPS (SI)(R10*1), Y3
	VMOVUPS (R9), Y4
	VMOVUPS (R9)(R8*1), Y5
	VMOVUPS (R9)(R8*2), Y6
	VMOVUPS (R9)(R10*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	// Registers 0-3 hold rows 0-3 of the block's columns 0-3 (low lane)
	// and 4-7 (high lane); registers 4-7 the same for rows 4-7.
	MOVQ       ldd+8(FP), AX
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15
	VMOVUPS    Y8, (DI)
	VMOVUPS    Y9, (DI)(AX*1)
	VMOVUPS    Y10, (DI)(AX*2)
	VMOVUPS    Y11, (DI)(R11*1)
	VMOVUPS    Y12, (R12)
	VMOVUPS    Y13, (R12)(AX*1)
	VMOVUPS    Y14, (R12)(AX*2)
	VMOVUPS    Y15, (R12)(R11*1)

	ADDQ $32, SI
	ADDQ $32, R9
	ADDQ DX, DI
	ADDQ DX, R12
	DECQ CX
	JNZ  transposeLoop
	VZEROUPPER
	RET

// func copyRowsAVX(dst *float32, ldd uintptr, src *float32, lds uintptr, rows, width int)
//
// Copies rows rows of width floats from src (rows lds bytes apart) to dst
// (rows ldd bytes apart), 8 floats at a time and then 4, 2 and 1: packed
// rows are 6 to 32 floats, too short for copy's call overhead to pay.
TEXT ·copyRowsAVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), DX
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R8
	MOVQ rows+32(FP), CX

copyRow:
	MOVQ width+40(FP), BX
	XORQ AX, AX

copy8:
	CMPQ    BX, $8
	JLT     copy4
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ    $32, AX
	SUBQ    $8, BX
	JMP     copy8

copy4:
	CMPQ    BX, $4
	JLT     copy2
	VMOVUPS (SI)(AX*1), X0
	VMOVUPS X0, (DI)(AX*1)
	ADDQ    $16, AX
	SUBQ    $4, BX

copy2:
	CMPQ BX, $2
	JLT  copy1
	MOVQ (SI)(AX*1), R9
	MOVQ R9, (DI)(AX*1)
	ADDQ $8, AX
	SUBQ $2, BX

copy1:
	TESTQ BX, BX
	JZ    copyNext
	MOVL  (SI)(AX*1), R9
	MOVL  R9, (DI)(AX*1)

copyNext:
	ADDQ R8, SI
	ADDQ DX, DI
	DECQ CX
	JNZ  copyRow
	VZEROUPPER
	RET

// The constants of expShiftedGeneric, as float32 bits, in the order used
// below.
DATA expConsts<>+0(SB)/4, $0xc2ae0000  // expMin = -87
DATA expConsts<>+4(SB)/4, $0x42b00000  // expMax = 88
DATA expConsts<>+8(SB)/4, $0x3fb8aa3b  // expLog2e
DATA expConsts<>+12(SB)/4, $0x3f318000 // expLn2Hi
DATA expConsts<>+16(SB)/4, $0xb95e8083 // expLn2Lo
DATA expConsts<>+20(SB)/4, $0x39506967 // expC0
DATA expConsts<>+24(SB)/4, $0x3ab743ce // expC1
DATA expConsts<>+28(SB)/4, $0x3c088908 // expC2
DATA expConsts<>+32(SB)/4, $0x3d2aa9c1 // expC3
DATA expConsts<>+36(SB)/4, $0x3e2aaaaa // expC4
DATA expConsts<>+40(SB)/4, $0x3f000000 // expC5
DATA expConsts<>+44(SB)/4, $0x3f800000 // 1
GLOBL expConsts<>(SB), RODATA|NOPTR, $48

// EXP replaces Y0 by e^Y0, clamped as exp32 does, with the constants loaded
// by EXPCONSTS; it uses Y1, Y2 and Y13. Most constants stay in registers
// (Y12 log2e, Y11 and Y10 ln2, Y9 one, Y3-Y7 the polynomial); the clamps
// and C0 are broadcast from memory each time to leave the working
// registers Y0 (x, then r), Y1 (n), Y2 (the polynomial) and Y13 (r²).
#define EXPCONSTS \
	VBROADCASTSS expConsts<>+8(SB), Y12; \
	VBROADCASTSS expConsts<>+12(SB), Y11; \
	VBROADCASTSS expConsts<>+16(SB), Y10; \
	VBROADCASTSS expConsts<>+24(SB), Y7; \
	VBROADCASTSS expConsts<>+28(SB), Y6; \
	VBROADCASTSS expConsts<>+32(SB), Y5; \
	VBROADCASTSS expConsts<>+36(SB), Y4; \
	VBROADCASTSS expConsts<>+40(SB), Y3; \
	VBROADCASTSS expConsts<>+44(SB), Y9

// n = round(x·log2e); r = x − n·ln2;
// e^r = ((((C0·r + C1)·r + C2)·r + C3)·r + C4)·r + C5)·r² + r + 1;
// e^x = e^r·2^n, by adding n to the exponent bits.
#define EXP \
	VBROADCASTSS expConsts<>+0(SB), Y2; \
	VMAXPS       Y2, Y0, Y0; \
	VBROADCASTSS expConsts<>+4(SB), Y2; \
	VMINPS       Y2, Y0, Y0; \
	VMULPS       Y12, Y0, Y1; \
	VROUNDPS     $0, Y1, Y1; \
	VFNMADD231PS Y11, Y1, Y0; \
	VFNMADD231PS Y10, Y1, Y0; \
	VMULPS       Y0, Y0, Y13; \
	VBROADCASTSS expConsts<>+20(SB), Y2; \
	VFMADD213PS  Y7, Y0, Y2; \
	VFMADD213PS  Y6, Y0, Y2; \
	VFMADD213PS  Y5, Y0, Y2; \
	VFMADD213PS  Y4, Y0, Y2; \
	VFMADD213PS  Y3, Y0, Y2; \
	VFMADD213PS  Y0, Y13, Y2; \
	VADDPS       Y9, Y2, Y2; \
	VCVTPS2DQ    Y1, Y1; \
	VPSLLD       $23, Y1, Y1; \
	VPADDD       Y1, Y2, Y0

// func expShiftedAVX2(x *float32, n int, shift float32) float32
//
// expShiftedGeneric eight elements at a time, summing in Y8.
TEXT ·expShiftedAVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS shift+16(FP), Y15
	EXPCONSTS
	VXORPS       Y8, Y8, Y8

expLoop:
	VMOVUPS (SI), Y0
	VSUBPS  Y15, Y0, Y0
	EXP
	VMOVUPS Y0, (SI)
	VADDPS  Y0, Y8, Y8
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     expLoop

	VEXTRACTF128 $1, Y8, X0
	VADDPS       X8, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET

// func sigmoidAVX2(dst, x *float32, n int)
//
// sigmoidGeneric eight elements at a time: 1/(1 + e^−x).
TEXT ·sigmoidAVX2(SB), NOSPLIT, $0-24
	MOVQ   dst+0(FP), DI
	MOVQ   x+8(FP), SI
	MOVQ   n+16(FP), CX
	EXPCONSTS
	VXORPS Y15, Y15, Y15

sigmoidLoop:
	VMOVUPS (SI), Y0
	VSUBPS  Y0, Y15, Y0
	EXP
	VADDPS  Y9, Y0, Y0
	VDIVPS  Y0, Y9, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     sigmoidLoop
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int) float32
//
// Four YMM running maxima take 32 elements per iteration; eight at a time
// for the rest, then the lanes are folded together.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	VMOVUPS (SI), Y0
	VMOVAPS Y0, Y1
	VMOVAPS Y0, Y2
	VMOVAPS Y0, Y3

max32:
	CMPQ    CX, $32
	JLT     max8
	VMAXPS  (SI), Y0, Y0
	VMAXPS  32(SI), Y1, Y1
	VMAXPS  64(SI), Y2, Y2
	VMAXPS  96(SI), Y3, Y3
	ADDQ    $128, SI
	SUBQ    $32, CX
	JMP     max32

max8:
	TESTQ  CX, CX
	JZ     maxFold
	VMAXPS (SI), Y0, Y0
	ADDQ   $32, SI
	SUBQ   $8, CX
	JMP    max8

maxFold:
	VMAXPS       Y1, Y0, Y0
	VMAXPS       Y3, Y2, Y2
	VMAXPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+16(FP)
	RET

// func adamWAVX2(params, grads, m, v *float32, n int, s *AdamWStep)
//
// adamWGeneric eight elements at a time, with the same operations in the
// same order. The step's scalars are broadcast into Y8-Y15 from *s, whose
// fields are float32s in the order GradScale, Beta1, Beta2, Eps, StepSize,
// Bc2Sqrt, Decay.
TEXT ·adamWAVX2(SB), NOSPLIT, $0-48
	MOVQ         params+0(FP), DI
	MOVQ         grads+8(FP), SI
	MOVQ         m+16(FP), R8
	MOVQ         v+24(FP), R9
	MOVQ         n+32(FP), CX
	MOVQ         s+40(FP), AX
	VBROADCASTSS 0(AX), Y8   // GradScale
	VBROADCASTSS 4(AX), Y9   // β1
	VBROADCASTSS 8(AX), Y10  // β2
	VBROADCASTSS 12(AX), Y11 // Eps
	VBROADCASTSS 16(AX), Y12 // StepSize
	VBROADCASTSS 20(AX), Y13 // Bc2Sqrt
	VBROADCASTSS 24(AX), Y14 // Decay
	VBROADCASTSS expConsts<>+44(SB), Y15
	VSUBPS       Y9, Y15, Y6  // 1 − β1
	VSUBPS       Y10, Y15, Y7 // 1 − β2
	VXORPS       Y15, Y15, Y15

adamLoop:
	VMULPS  (SI), Y8, Y0    // g
	VMOVUPS Y15, (SI)       // grads[i] = 0
	VMULPS  (R8), Y9, Y1    // β1·m
	VMULPS  Y0, Y6, Y2      // (1−β1)·g
	VADDPS  Y2, Y1, Y1      // m
	VMOVUPS Y1, (R8)
	VMULPS  (R9), Y10, Y2   // β2·v
	VMULPS  Y0, Y7, Y3      // (1−β2)·g
	VMULPS  Y0, Y3, Y3      // (1−β2)·g·g
	VADDPS  Y3, Y2, Y2      // v
	VMOVUPS Y2, (R9)
	VSQRTPS Y2, Y2
	VDIVPS  Y13, Y2, Y2     // √v / Bc2Sqrt
	VADDPS  Y11, Y2, Y2     // + Eps
	VMULPS  Y1, Y12, Y1     // StepSize·m
	VDIVPS  Y2, Y1, Y1      // / denom
	VMULPS  (DI), Y14, Y3   // params·Decay
	VSUBPS  Y1, Y3, Y3
	VMOVUPS Y3, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, R8
	ADDQ    $32, R9
	SUBQ    $8, CX
	JNZ     adamLoop
	VZEROUPPER
	RET

// func dot4AVX2(k int, x, b *float32, ldb uintptr, c *float32, accumulate bool)
//
// c[0..3] (+)= x·b_r for the four rows b_r at b + r·ldb bytes, over k > 0
// elements, k a multiple of 8: a matrix-vector product four rows at a time,
// so that the four sums are reduced together instead of each paying for a
// horizontal sum. The rows are read one after the other, in address order,
// which the hardware prefetcher follows; interleaving them (one load of x
// for four rows) ran at half the memory bandwidth on Zen 4. The four rows'
// chains are independent, so they still overlap. Row r sums into Y(r) and
// Y(r+4) (even and odd blocks of 8). R8 is the gap from a row's end to the
// next row's start.
TEXT ·dot4AVX2(SB), NOSPLIT, $0-41
	MOVQ   k+0(FP), CX
	MOVQ   x+8(FP), SI
	MOVQ   b+16(FP), DI
	MOVQ   ldb+24(FP), R8
	MOVQ   c+32(FP), DX
	SHLQ   $2, CX
	SUBQ   CX, R8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

	// row 0
	MOVQ        SI, AX
	MOVQ        k+0(FP), CX
dot4Loop0:
	CMPQ        CX, $16
	JLT         dot4Tail0
	VMOVUPS     (AX), Y8
	VMOVUPS     32(AX), Y9
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS 32(DI), Y9, Y4
	ADDQ        $64, AX
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         dot4Loop0

dot4Tail0:
	TESTQ       CX, CX
	JZ          dot4Next0
	VMOVUPS     (AX), Y8
	VFMADD231PS (DI), Y8, Y0
	ADDQ        $32, DI

dot4Next0:
	ADDQ        R8, DI

	// row 1
	MOVQ        SI, AX
	MOVQ        k+0(FP), CX
dot4Loop1:
	CMPQ        CX, $16
	JLT         dot4Tail1
	VMOVUPS     (AX), Y8
	VMOVUPS     32(AX), Y9
	VFMADD231PS (DI), Y8, Y1
	VFMADD231PS 32(DI), Y9, Y5
	ADDQ        $64, AX
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         dot4Loop1

dot4Tail1:
	TESTQ       CX, CX
	JZ          dot4Next1
	VMOVUPS     (AX), Y8
	VFMADD231PS (DI), Y8, Y1
	ADDQ        $32, DI

dot4Next1:
	ADDQ        R8, DI

	// row 2
	MOVQ        SI, AX
	MOVQ        k+0(FP), CX
dot4Loop2:
	CMPQ        CX, $16
	JLT         dot4Tail2
	VMOVUPS     (AX), Y8
	VMOVUPS     32(AX), Y9
	VFMADD231PS (DI), Y8, Y2
	VFMADD231PS 32(DI), Y9, Y6
	ADDQ        $64, AX
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         dot4Loop2

dot4Tail2:
	TESTQ       CX, CX
	JZ          dot4Next2
	VMOVUPS     (AX), Y8
	VFMADD231PS (DI), Y8, Y2
	ADDQ        $32, DI

dot4Next2:
	ADDQ        R8, DI

	// row 3
	MOVQ        SI, AX
	MOVQ        k+0(FP), CX
dot4Loop3:
	CMPQ        CX, $16
	JLT         dot4Tail3
	VMOVUPS     (AX), Y8
	VMOVUPS     32(AX), Y9
	VFMADD231PS (DI), Y8, Y3
	VFMADD231PS 32(DI), Y9, Y7
	ADDQ        $64, AX
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         dot4Loop3

dot4Tail3:
	TESTQ       CX, CX
	JZ          dot4Next3
	VMOVUPS     (AX), Y8
	VFMADD231PS (DI), Y8, Y3
	ADDQ        $32, DI

dot4Next3:
	ADDQ        R8, DI

	VADDPS       Y4, Y0, Y0
	VADDPS       Y5, Y1, Y1
	VADDPS       Y6, Y2, Y2
	VADDPS       Y7, Y3, Y3
	// Pairwise horizontal sums of rows 0,1 and 2,3, then of those: each
	// 128-bit lane ends as [row0, row1, row2, row3] partial sums.
	VHADDPS      Y1, Y0, Y0
	VHADDPS      Y3, Y2, Y2
	VHADDPS      Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	CMPB         accumulate+40(FP), $0
	JEQ          dot4Store
	VADDPS       (DX), X0, X0

dot4Store:
	VMOVUPS X0, (DX)
	VZEROUPPER
	RET
