//go:build amd64 && !purego

#include "textflag.h"

// XTS-AES data path (IEEE 1619-2007 §5.3.1 / §5.4.1) for data units that
// are whole numbers of 16-byte blocks. Each routine loops over every data
// unit of the buffer itself:
//   T   = AES-Enc(key2, unit number)                 (tweak of block 0)
//   C_j = AES(key1, P_j ^ T·α^j) ^ T·α^j             (AES-Enc or equivalent AES-Dec)
// The tweak is a 128-bit little-endian integer; multiplying by α shifts it
// left by one bit and, when bit 127 falls out, XORs 0x87 into the low byte
// (x^128 = x^7 + x^2 + x + 1).
//
// Arguments (see xts_amd64.go): rk = data key schedule (encryption order or
// equivalent-inverse-cipher order), tk = key2's encryption schedule,
// nr = 10 or 14 rounds, n > 0 a multiple of sectorSize, sectorSize a
// positive multiple of 16.

// xtsPoly: per 32-bit lane {0x87, 0, 1, 0}: the bits a one-bit left shift of
// the two 64-bit halves must add (reduction into bit 0..7, carry into 64).
DATA xtsPoly<>+0(SB)/4, $0x87
DATA xtsPoly<>+4(SB)/4, $0
DATA xtsPoly<>+8(SB)/4, $1
DATA xtsPoly<>+12(SB)/4, $0
GLOBL xtsPoly<>(SB), RODATA|NOPTR, $16

// xtsPolyZ: 0x87 in every quadword (carry-less multiplier for the reduction).
DATA xtsPolyZ<>+0(SB)/8, $0x87
DATA xtsPolyZ<>+8(SB)/8, $0x87
DATA xtsPolyZ<>+16(SB)/8, $0x87
DATA xtsPolyZ<>+24(SB)/8, $0x87
DATA xtsPolyZ<>+32(SB)/8, $0x87
DATA xtsPolyZ<>+40(SB)/8, $0x87
DATA xtsPolyZ<>+48(SB)/8, $0x87
DATA xtsPolyZ<>+56(SB)/8, $0x87
GLOBL xtsPolyZ<>(SB), RODATA|NOPTR, $64

// xtsLoMask keeps the low quadword of each 128-bit lane.
DATA xtsLoMask<>+0(SB)/8, $-1
DATA xtsLoMask<>+8(SB)/8, $0
DATA xtsLoMask<>+16(SB)/8, $-1
DATA xtsLoMask<>+24(SB)/8, $0
DATA xtsLoMask<>+32(SB)/8, $-1
DATA xtsLoMask<>+40(SB)/8, $0
DATA xtsLoMask<>+48(SB)/8, $-1
DATA xtsLoMask<>+56(SB)/8, $0
GLOBL xtsLoMask<>(SB), RODATA|NOPTR, $64

// xtsLaneInc adds k to the low quadword of lane k.
DATA xtsLaneInc<>+0(SB)/8, $0
DATA xtsLaneInc<>+8(SB)/8, $0
DATA xtsLaneInc<>+16(SB)/8, $1
DATA xtsLaneInc<>+24(SB)/8, $0
DATA xtsLaneInc<>+32(SB)/8, $2
DATA xtsLaneInc<>+40(SB)/8, $0
DATA xtsLaneInc<>+48(SB)/8, $3
DATA xtsLaneInc<>+56(SB)/8, $0
GLOBL xtsLaneInc<>(SB), RODATA|NOPTR, $64

// xtsShl0123 / xtsShr0123: per-lane shift counts to multiply lane k by α^k
// (left by k; the bits that leave each quadword: right by 64-k).
DATA xtsShl0123<>+0(SB)/8, $0
DATA xtsShl0123<>+8(SB)/8, $0
DATA xtsShl0123<>+16(SB)/8, $1
DATA xtsShl0123<>+24(SB)/8, $1
DATA xtsShl0123<>+32(SB)/8, $2
DATA xtsShl0123<>+40(SB)/8, $2
DATA xtsShl0123<>+48(SB)/8, $3
DATA xtsShl0123<>+56(SB)/8, $3
GLOBL xtsShl0123<>(SB), RODATA|NOPTR, $64

DATA xtsShr0123<>+0(SB)/8, $64
DATA xtsShr0123<>+8(SB)/8, $64
DATA xtsShr0123<>+16(SB)/8, $63
DATA xtsShr0123<>+24(SB)/8, $63
DATA xtsShr0123<>+32(SB)/8, $62
DATA xtsShr0123<>+40(SB)/8, $62
DATA xtsShr0123<>+48(SB)/8, $61
DATA xtsShr0123<>+56(SB)/8, $61
GLOBL xtsShr0123<>(SB), RODATA|NOPTR, $64

// ---- AES-NI: 8 blocks in flight, X0-X7 data, X8 round key, X9 tweak,
// X10 scratch, X11 xtsPoly; the 8 tweaks of a group are kept at 0(SP)..127(SP).

// MULALPHA: X9 *= α.
#define MULALPHA \
	PSHUFD $0x13, X9, X10; \
	PSRAL  $31, X10;       \
	PAND   X11, X10;       \
	PADDQ  X9, X9;         \
	PXOR   X10, X9

// LOAD8: load one block, whiten it with the current tweak, save the tweak, advance it.
#define LOAD8(off, R) \
	MOVOU off(SI), R;  \
	PXOR  X9, R;       \
	MOVOU X9, off(SP); \
	MULALPHA

#define XOR8 \
	PXOR X8, X0; PXOR X8, X1; PXOR X8, X2; PXOR X8, X3; \
	PXOR X8, X4; PXOR X8, X5; PXOR X8, X6; PXOR X8, X7

#define ROUND8(INS) \
	INS X8, X0; INS X8, X1; INS X8, X2; INS X8, X3; \
	INS X8, X4; INS X8, X5; INS X8, X6; INS X8, X7

// STORE8: output whitening with the saved tweak, store.
#define STORE8(off, R) \
	MOVOU off(SP), X8; \
	PXOR  X8, R;       \
	MOVOU R, off(DI)

// WIPEAESNI clears the registers and stack slots that held round keys and
// tweaks before returning.
#define WIPEAESNI \
	PXOR  X8, X8;       \
	PXOR  X9, X9;       \
	PXOR  X10, X10;     \
	MOVOU X8, 0(SP);    \
	MOVOU X8, 16(SP);   \
	MOVOU X8, 32(SP);   \
	MOVOU X8, 48(SP);   \
	MOVOU X8, 64(SP);   \
	MOVOU X8, 80(SP);   \
	MOVOU X8, 96(SP);   \
	MOVOU X8, 112(SP)

// WIPEVAES clears every vector register (round keys live in Z16..Z30) and
// the tweak slots on the stack; VZEROALL also leaves the upper state clean.
#define WIPEVAES \
	VZEROALL;                \
	VPXORQ    Z16, Z16, Z16; \
	VPXORQ    Z17, Z17, Z17; \
	VPXORQ    Z18, Z18, Z18; \
	VPXORQ    Z19, Z19, Z19; \
	VPXORQ    Z20, Z20, Z20; \
	VPXORQ    Z21, Z21, Z21; \
	VPXORQ    Z22, Z22, Z22; \
	VPXORQ    Z23, Z23, Z23; \
	VPXORQ    Z24, Z24, Z24; \
	VPXORQ    Z25, Z25, Z25; \
	VPXORQ    Z26, Z26, Z26; \
	VPXORQ    Z27, Z27, Z27; \
	VPXORQ    Z28, Z28, Z28; \
	VPXORQ    Z29, Z29, Z29; \
	VPXORQ    Z30, Z30, Z30; \
	VPXORQ    Z31, Z31, Z31; \
	VMOVDQU64 Z31, (SP)


// ---- VAES/AVX-512: four blocks per ZMM register, 8 registers (32 blocks,
// 512 bytes) in flight. Z0-Z7 data, Z8-Z15 their tweaks, Z16 round key 0,
// Z17..Z29 the middle round keys aligned so that round key nr-1 is in Z29
// (AES-128 uses Z21..Z29), Z30 the last round key, Z31 the next tweak.

// MULX: D = S·α^s in each 128-bit lane, 1 <= s <= 56: shift both quadwords
// left by s, move the bits leaving the low quadword into the high one and
// reduce the bits leaving the high quadword by carry-less multiplication
// with 0x87. T1, T2 are scratch.
#define MULX(s, S, D, T1, T2) \
	VPSLLQ     $(s), S, D;                     \
	VPSRLQ     $(64-(s)), S, T1;               \
	VPCLMULQDQ $0x11, xtsPolyZ<>(SB), T1, T2; \
	VPSLLDQ    $8, T1, T1;                     \
	VPTERNLOGQ $0x96, T1, T2, D

// LOADKEYS broadcasts round keys 0, 1..9 (counted back from nr-1) and nr into
// Z16, Z21..Z29 and Z30; AES-256 also needs Z17..Z20, loaded after it.
#define LOADKEYS \
	MOVQ            R8, DX;      \
	SHLQ            $4, DX;      \
	ADDQ            AX, DX;      \
	VBROADCASTI32X4 (AX), Z16;   \
	VBROADCASTI32X4 (DX), Z30;   \
	VBROADCASTI32X4 -16(DX), Z29;  \
	VBROADCASTI32X4 -32(DX), Z28;  \
	VBROADCASTI32X4 -48(DX), Z27;  \
	VBROADCASTI32X4 -64(DX), Z26;  \
	VBROADCASTI32X4 -80(DX), Z25;  \
	VBROADCASTI32X4 -96(DX), Z24;  \
	VBROADCASTI32X4 -112(DX), Z23; \
	VBROADCASTI32X4 -128(DX), Z22; \
	VBROADCASTI32X4 -144(DX), Z21

#define ROUNDS8(INS, K) \
	INS K, Z0, Z0; INS K, Z1, Z1; INS K, Z2, Z2; INS K, Z3, Z3; \
	INS K, Z4, Z4; INS K, Z5, Z5; INS K, Z6, Z6; INS K, Z7, Z7

// func xtsEncAESNI(rk, tk *byte, nr int, dst, src *byte, n, sectorSize int, unit uint64)
TEXT ·xtsEncAESNI(SB), NOSPLIT, $128-64
	MOVQ  rk+0(FP), AX
	MOVQ  tk+8(FP), BX
	MOVQ  nr+16(FP), R8
	MOVQ  dst+24(FP), DI
	MOVQ  src+32(FP), SI
	MOVQ  n+40(FP), R9
	MOVQ  sectorSize+48(FP), R10
	MOVQ  unit+56(FP), R11
	MOVOU xtsPoly<>(SB), X11
	DECQ  R8 // R8 = number of full rounds (nr-1)

	// The data key schedule is addressed from its end,
	// R13 = rk + 16*nr, so AES-128/192/256 share one unrolled sequence.
	MOVQ  R8, R13
	INCQ  R13
	SHLQ  $4, R13
	ADDQ  AX, R13

sector:
	// X9 = AES-Enc(key2, unit as 128-bit little-endian): the tweak of block 0.
	MOVQ       R11, X9
	MOVOU      (BX), X8
	PXOR       X8, X9
	LEAQ       16(BX), DX
	MOVQ       R8, CX

tweakRound:
	MOVOU  (DX), X8
	AESENC X8, X9
	ADDQ   $16, DX
	DECQ   CX
	JNZ    tweakRound
	MOVOU      (DX), X8
	AESENCLAST X8, X9
	MOVQ       R10, R12 // bytes left in this sector

blocks8:
	CMPQ R12, $128
	JB   tail
	LOAD8(0, X0)
	LOAD8(16, X1)
	LOAD8(32, X2)
	LOAD8(48, X3)
	LOAD8(64, X4)
	LOAD8(80, X5)
	LOAD8(96, X6)
	LOAD8(112, X7)
	MOVOU (AX), X8
	XOR8
	CMPQ  R8, $11
	JB    gr10
	JEQ   gr12
	MOVOU -208(R13), X8
	ROUND8(AESENC)
	MOVOU -192(R13), X8
	ROUND8(AESENC)

gr12:
	MOVOU -176(R13), X8
	ROUND8(AESENC)
	MOVOU -160(R13), X8
	ROUND8(AESENC)

gr10:
	MOVOU -144(R13), X8
	ROUND8(AESENC)
	MOVOU -128(R13), X8
	ROUND8(AESENC)
	MOVOU -112(R13), X8
	ROUND8(AESENC)
	MOVOU -96(R13), X8
	ROUND8(AESENC)
	MOVOU -80(R13), X8
	ROUND8(AESENC)
	MOVOU -64(R13), X8
	ROUND8(AESENC)
	MOVOU -48(R13), X8
	ROUND8(AESENC)
	MOVOU -32(R13), X8
	ROUND8(AESENC)
	MOVOU -16(R13), X8
	ROUND8(AESENC)
	MOVOU (R13), X8
	ROUND8(AESENCLAST)
	STORE8(0, X0)
	STORE8(16, X1)
	STORE8(32, X2)
	STORE8(48, X3)
	STORE8(64, X4)
	STORE8(80, X5)
	STORE8(96, X6)
	STORE8(112, X7)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $128, R12
	JMP  blocks8

tail:
	// Fewer than 8 blocks left: one at a time.
	TESTQ R12, R12
	JZ    nextSector
	MOVOU (SI), X0
	PXOR  X9, X0
	MOVOU (AX), X8
	PXOR  X8, X0
	CMPQ  R8, $11
	JB    tr10
	JEQ   tr12
	MOVOU -208(R13), X8
	AESENC X8, X0
	MOVOU -192(R13), X8
	AESENC X8, X0

tr12:
	MOVOU -176(R13), X8
	AESENC X8, X0
	MOVOU -160(R13), X8
	AESENC X8, X0

tr10:
	MOVOU -144(R13), X8
	AESENC X8, X0
	MOVOU -128(R13), X8
	AESENC X8, X0
	MOVOU -112(R13), X8
	AESENC X8, X0
	MOVOU -96(R13), X8
	AESENC X8, X0
	MOVOU -80(R13), X8
	AESENC X8, X0
	MOVOU -64(R13), X8
	AESENC X8, X0
	MOVOU -48(R13), X8
	AESENC X8, X0
	MOVOU -32(R13), X8
	AESENC X8, X0
	MOVOU -16(R13), X8
	AESENC X8, X0
	MOVOU (R13), X8
	AESENCLAST X8, X0
	PXOR   X9, X0
	MOVOU  X0, (DI)
	MULALPHA
	ADDQ   $16, SI
	ADDQ   $16, DI
	SUBQ   $16, R12
	JMP    tail

nextSector:
	INCQ R11
	SUBQ R10, R9
	JNZ  sector
	WIPEAESNI
	RET

// func xtsDecAESNI(rk, tk *byte, nr int, dst, src *byte, n, sectorSize int, unit uint64)
TEXT ·xtsDecAESNI(SB), NOSPLIT, $128-64
	MOVQ  rk+0(FP), AX
	MOVQ  tk+8(FP), BX
	MOVQ  nr+16(FP), R8
	MOVQ  dst+24(FP), DI
	MOVQ  src+32(FP), SI
	MOVQ  n+40(FP), R9
	MOVQ  sectorSize+48(FP), R10
	MOVQ  unit+56(FP), R11
	MOVOU xtsPoly<>(SB), X11
	DECQ  R8 // R8 = number of full rounds (nr-1)

	// The data key schedule is addressed from its end,
	// R13 = rk + 16*nr, so AES-128/192/256 share one unrolled sequence.
	MOVQ  R8, R13
	INCQ  R13
	SHLQ  $4, R13
	ADDQ  AX, R13

sector:
	// X9 = AES-Enc(key2, unit as 128-bit little-endian): the tweak of block 0.
	MOVQ       R11, X9
	MOVOU      (BX), X8
	PXOR       X8, X9
	LEAQ       16(BX), DX
	MOVQ       R8, CX

tweakRound:
	MOVOU  (DX), X8
	AESENC X8, X9
	ADDQ   $16, DX
	DECQ   CX
	JNZ    tweakRound
	MOVOU      (DX), X8
	AESENCLAST X8, X9
	MOVQ       R10, R12 // bytes left in this sector

blocks8:
	CMPQ R12, $128
	JB   tail
	LOAD8(0, X0)
	LOAD8(16, X1)
	LOAD8(32, X2)
	LOAD8(48, X3)
	LOAD8(64, X4)
	LOAD8(80, X5)
	LOAD8(96, X6)
	LOAD8(112, X7)
	MOVOU (AX), X8
	XOR8
	CMPQ  R8, $11
	JB    gr10
	JEQ   gr12
	MOVOU -208(R13), X8
	ROUND8(AESDEC)
	MOVOU -192(R13), X8
	ROUND8(AESDEC)

gr12:
	MOVOU -176(R13), X8
	ROUND8(AESDEC)
	MOVOU -160(R13), X8
	ROUND8(AESDEC)

gr10:
	MOVOU -144(R13), X8
	ROUND8(AESDEC)
	MOVOU -128(R13), X8
	ROUND8(AESDEC)
	MOVOU -112(R13), X8
	ROUND8(AESDEC)
	MOVOU -96(R13), X8
	ROUND8(AESDEC)
	MOVOU -80(R13), X8
	ROUND8(AESDEC)
	MOVOU -64(R13), X8
	ROUND8(AESDEC)
	MOVOU -48(R13), X8
	ROUND8(AESDEC)
	MOVOU -32(R13), X8
	ROUND8(AESDEC)
	MOVOU -16(R13), X8
	ROUND8(AESDEC)
	MOVOU (R13), X8
	ROUND8(AESDECLAST)
	STORE8(0, X0)
	STORE8(16, X1)
	STORE8(32, X2)
	STORE8(48, X3)
	STORE8(64, X4)
	STORE8(80, X5)
	STORE8(96, X6)
	STORE8(112, X7)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $128, R12
	JMP  blocks8

tail:
	// Fewer than 8 blocks left: one at a time.
	TESTQ R12, R12
	JZ    nextSector
	MOVOU (SI), X0
	PXOR  X9, X0
	MOVOU (AX), X8
	PXOR  X8, X0
	CMPQ  R8, $11
	JB    tr10
	JEQ   tr12
	MOVOU -208(R13), X8
	AESDEC X8, X0
	MOVOU -192(R13), X8
	AESDEC X8, X0

tr12:
	MOVOU -176(R13), X8
	AESDEC X8, X0
	MOVOU -160(R13), X8
	AESDEC X8, X0

tr10:
	MOVOU -144(R13), X8
	AESDEC X8, X0
	MOVOU -128(R13), X8
	AESDEC X8, X0
	MOVOU -112(R13), X8
	AESDEC X8, X0
	MOVOU -96(R13), X8
	AESDEC X8, X0
	MOVOU -80(R13), X8
	AESDEC X8, X0
	MOVOU -64(R13), X8
	AESDEC X8, X0
	MOVOU -48(R13), X8
	AESDEC X8, X0
	MOVOU -32(R13), X8
	AESDEC X8, X0
	MOVOU -16(R13), X8
	AESDEC X8, X0
	MOVOU (R13), X8
	AESDECLAST X8, X0
	PXOR   X9, X0
	MOVOU  X0, (DI)
	MULALPHA
	ADDQ   $16, SI
	ADDQ   $16, DI
	SUBQ   $16, R12
	JMP    tail

nextSector:
	INCQ R11
	SUBQ R10, R9
	JNZ  sector
	WIPEAESNI
	RET

// func xtsEncVAES(rk, tk *byte, nr int, dst, src *byte, n, sectorSize int, unit uint64)
TEXT ·xtsEncVAES(SB), NOSPLIT, $64-64
	MOVQ rk+0(FP), AX
	MOVQ tk+8(FP), BX
	MOVQ nr+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), R9
	MOVQ sectorSize+48(FP), R10
	MOVQ unit+56(FP), R11
	LOADKEYS
	CMPQ R8, $10
	JEQ  keysDone
	VBROADCASTI32X4 -160(DX), Z20
	VBROADCASTI32X4 -176(DX), Z19
	CMPQ R8, $12
	JEQ  keysDone
	VBROADCASTI32X4 -192(DX), Z18
	VBROADCASTI32X4 -208(DX), Z17

keysDone:
	MOVQ $64, R13 // offset of the next precomputed tweak; 64: compute 4 more

sector:
	CMPQ R13, $64
	JNE  haveTweak

	// Encrypt the tweaks of the next four data units at once, one per lane:
	// unit+k zero-extended to 128 bits, k = 0..3 (wrapping modulo 2^64).
	VPBROADCASTQ    R11, Z9
	VPANDQ          xtsLoMask<>(SB), Z9, Z9
	VPADDQ          xtsLaneInc<>(SB), Z9, Z9
	VBROADCASTI32X4 (BX), Z31
	VPXORQ          Z31, Z9, Z9
	LEAQ            16(BX), DX
	MOVQ            R8, CX
	DECQ            CX

tweakRound:
	VBROADCASTI32X4 (DX), Z31
	VAESENC         Z31, Z9, Z9
	ADDQ            $16, DX
	DECQ            CX
	JNZ             tweakRound
	VBROADCASTI32X4 (DX), Z31
	VAESENCLAST     Z31, Z9, Z9
	VMOVDQU64       Z9, (SP)
	XORQ            R13, R13

haveTweak:
	// Z8 = [T, T·α, T·α², T·α³] for this sector's first four blocks.
	VBROADCASTI32X4 (SP)(R13*1), Z8
	ADDQ            $16, R13
	VPSLLVQ         xtsShl0123<>(SB), Z8, Z0
	VPSRLVQ         xtsShr0123<>(SB), Z8, Z1
	VPCLMULQDQ      $0x11, xtsPolyZ<>(SB), Z1, Z2
	VPSLLDQ         $8, Z1, Z1
	VPTERNLOGQ      $0x96, Z1, Z2, Z0
	VMOVDQA64       Z0, Z8
	MOVQ            R10, R12 // bytes left in this sector

blocks32:
	CMPQ R12, $512
	JB   blocks4
	MULX(4, Z8, Z9, Z0, Z1)
	MULX(8, Z8, Z10, Z0, Z1)
	MULX(12, Z8, Z11, Z0, Z1)
	MULX(16, Z8, Z12, Z0, Z1)
	MULX(20, Z8, Z13, Z0, Z1)
	MULX(24, Z8, Z14, Z0, Z1)
	MULX(28, Z8, Z15, Z0, Z1)
	MULX(32, Z8, Z31, Z0, Z1) // first tweaks of the next 32 blocks
	VMOVDQU64  0(SI), Z0
	VPTERNLOGQ $0x96, Z16, Z8, Z0
	VMOVDQU64  64(SI), Z1
	VPTERNLOGQ $0x96, Z16, Z9, Z1
	VMOVDQU64  128(SI), Z2
	VPTERNLOGQ $0x96, Z16, Z10, Z2
	VMOVDQU64  192(SI), Z3
	VPTERNLOGQ $0x96, Z16, Z11, Z3
	VMOVDQU64  256(SI), Z4
	VPTERNLOGQ $0x96, Z16, Z12, Z4
	VMOVDQU64  320(SI), Z5
	VPTERNLOGQ $0x96, Z16, Z13, Z5
	VMOVDQU64  384(SI), Z6
	VPTERNLOGQ $0x96, Z16, Z14, Z6
	VMOVDQU64  448(SI), Z7
	VPTERNLOGQ $0x96, Z16, Z15, Z7
	CMPQ R8, $12
	JB   r10x8
	JEQ  r12x8
	ROUNDS8(VAESENC, Z17)
	ROUNDS8(VAESENC, Z18)

r12x8:
	ROUNDS8(VAESENC, Z19)
	ROUNDS8(VAESENC, Z20)

r10x8:
	ROUNDS8(VAESENC, Z21)
	ROUNDS8(VAESENC, Z22)
	ROUNDS8(VAESENC, Z23)
	ROUNDS8(VAESENC, Z24)
	ROUNDS8(VAESENC, Z25)
	ROUNDS8(VAESENC, Z26)
	ROUNDS8(VAESENC, Z27)
	ROUNDS8(VAESENC, Z28)
	ROUNDS8(VAESENC, Z29)
	VAESENCLAST Z30, Z0, Z0
	VAESENCLAST Z30, Z1, Z1
	VAESENCLAST Z30, Z2, Z2
	VAESENCLAST Z30, Z3, Z3
	VAESENCLAST Z30, Z4, Z4
	VAESENCLAST Z30, Z5, Z5
	VAESENCLAST Z30, Z6, Z6
	VAESENCLAST Z30, Z7, Z7
	VPXORQ      Z8, Z0, Z0
	VMOVDQU64   Z0, 0(DI)
	VPXORQ      Z9, Z1, Z1
	VMOVDQU64   Z1, 64(DI)
	VPXORQ      Z10, Z2, Z2
	VMOVDQU64   Z2, 128(DI)
	VPXORQ      Z11, Z3, Z3
	VMOVDQU64   Z3, 192(DI)
	VPXORQ      Z12, Z4, Z4
	VMOVDQU64   Z4, 256(DI)
	VPXORQ      Z13, Z5, Z5
	VMOVDQU64   Z5, 320(DI)
	VPXORQ      Z14, Z6, Z6
	VMOVDQU64   Z6, 384(DI)
	VPXORQ      Z15, Z7, Z7
	VMOVDQU64   Z7, 448(DI)
	VMOVDQA64 Z31, Z8
	ADDQ      $512, SI
	ADDQ      $512, DI
	SUBQ      $512, R12
	JMP       blocks32

blocks4:
	// Fewer than 32 blocks left: four at a time, then 1..3 under a mask.
	CMPQ R12, $64
	JB   partial
	MULX(4, Z8, Z31, Z1, Z2)
	VMOVDQU64  (SI), Z0
	VPTERNLOGQ $0x96, Z16, Z8, Z0
	CMPQ R8, $12
	JB   qr10
	JEQ  qr12
	VAESENC Z17, Z0, Z0
	VAESENC Z18, Z0, Z0

qr12:
	VAESENC Z19, Z0, Z0
	VAESENC Z20, Z0, Z0

qr10:
	VAESENC Z21, Z0, Z0
	VAESENC Z22, Z0, Z0
	VAESENC Z23, Z0, Z0
	VAESENC Z24, Z0, Z0
	VAESENC Z25, Z0, Z0
	VAESENC Z26, Z0, Z0
	VAESENC Z27, Z0, Z0
	VAESENC Z28, Z0, Z0
	VAESENC Z29, Z0, Z0
	VAESENCLAST Z30, Z0, Z0
	VPXORQ Z8, Z0, Z0
	VMOVDQU64  Z0, (DI)
	VMOVDQA64  Z31, Z8
	ADDQ       $64, SI
	ADDQ       $64, DI
	SUBQ       $64, R12
	JMP        blocks4

partial:
	TESTQ R12, R12
	JZ    nextSector
	MOVQ  R12, CX
	SHRQ  $3, CX // quadwords left: 2, 4 or 6
	MOVL  $1, DX
	SHLQ  CX, DX
	DECQ  DX
	KMOVW DX, K1
	VMOVDQU64.Z (SI), K1, Z0
	VPTERNLOGQ  $0x96, Z16, Z8, Z0
	CMPQ R8, $12
	JB   pr10
	JEQ  pr12
	VAESENC Z17, Z0, Z0
	VAESENC Z18, Z0, Z0

pr12:
	VAESENC Z19, Z0, Z0
	VAESENC Z20, Z0, Z0

pr10:
	VAESENC Z21, Z0, Z0
	VAESENC Z22, Z0, Z0
	VAESENC Z23, Z0, Z0
	VAESENC Z24, Z0, Z0
	VAESENC Z25, Z0, Z0
	VAESENC Z26, Z0, Z0
	VAESENC Z27, Z0, Z0
	VAESENC Z28, Z0, Z0
	VAESENC Z29, Z0, Z0
	VAESENCLAST Z30, Z0, Z0
	VPXORQ Z8, Z0, Z0
	VMOVDQU64   Z0, K1, (DI)
	ADDQ        R12, SI
	ADDQ        R12, DI

nextSector:
	INCQ R11
	SUBQ R10, R9
	JNZ  sector
	WIPEVAES
	RET


// func xtsDecVAES(rk, tk *byte, nr int, dst, src *byte, n, sectorSize int, unit uint64)
TEXT ·xtsDecVAES(SB), NOSPLIT, $64-64
	MOVQ rk+0(FP), AX
	MOVQ tk+8(FP), BX
	MOVQ nr+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), R9
	MOVQ sectorSize+48(FP), R10
	MOVQ unit+56(FP), R11
	LOADKEYS
	CMPQ R8, $10
	JEQ  keysDone
	VBROADCASTI32X4 -160(DX), Z20
	VBROADCASTI32X4 -176(DX), Z19
	CMPQ R8, $12
	JEQ  keysDone
	VBROADCASTI32X4 -192(DX), Z18
	VBROADCASTI32X4 -208(DX), Z17

keysDone:
	MOVQ $64, R13 // offset of the next precomputed tweak; 64: compute 4 more

sector:
	CMPQ R13, $64
	JNE  haveTweak

	// Encrypt the tweaks of the next four data units at once, one per lane:
	// unit+k zero-extended to 128 bits, k = 0..3 (wrapping modulo 2^64).
	VPBROADCASTQ    R11, Z9
	VPANDQ          xtsLoMask<>(SB), Z9, Z9
	VPADDQ          xtsLaneInc<>(SB), Z9, Z9
	VBROADCASTI32X4 (BX), Z31
	VPXORQ          Z31, Z9, Z9
	LEAQ            16(BX), DX
	MOVQ            R8, CX
	DECQ            CX

tweakRound:
	VBROADCASTI32X4 (DX), Z31
	VAESENC         Z31, Z9, Z9
	ADDQ            $16, DX
	DECQ            CX
	JNZ             tweakRound
	VBROADCASTI32X4 (DX), Z31
	VAESENCLAST     Z31, Z9, Z9
	VMOVDQU64       Z9, (SP)
	XORQ            R13, R13

haveTweak:
	// Z8 = [T, T·α, T·α², T·α³] for this sector's first four blocks.
	VBROADCASTI32X4 (SP)(R13*1), Z8
	ADDQ            $16, R13
	VPSLLVQ         xtsShl0123<>(SB), Z8, Z0
	VPSRLVQ         xtsShr0123<>(SB), Z8, Z1
	VPCLMULQDQ      $0x11, xtsPolyZ<>(SB), Z1, Z2
	VPSLLDQ         $8, Z1, Z1
	VPTERNLOGQ      $0x96, Z1, Z2, Z0
	VMOVDQA64       Z0, Z8
	MOVQ            R10, R12 // bytes left in this sector

blocks32:
	CMPQ R12, $512
	JB   blocks4
	MULX(4, Z8, Z9, Z0, Z1)
	MULX(8, Z8, Z10, Z0, Z1)
	MULX(12, Z8, Z11, Z0, Z1)
	MULX(16, Z8, Z12, Z0, Z1)
	MULX(20, Z8, Z13, Z0, Z1)
	MULX(24, Z8, Z14, Z0, Z1)
	MULX(28, Z8, Z15, Z0, Z1)
	MULX(32, Z8, Z31, Z0, Z1) // first tweaks of the next 32 blocks
	VMOVDQU64  0(SI), Z0
	VPTERNLOGQ $0x96, Z16, Z8, Z0
	VMOVDQU64  64(SI), Z1
	VPTERNLOGQ $0x96, Z16, Z9, Z1
	VMOVDQU64  128(SI), Z2
	VPTERNLOGQ $0x96, Z16, Z10, Z2
	VMOVDQU64  192(SI), Z3
	VPTERNLOGQ $0x96, Z16, Z11, Z3
	VMOVDQU64  256(SI), Z4
	VPTERNLOGQ $0x96, Z16, Z12, Z4
	VMOVDQU64  320(SI), Z5
	VPTERNLOGQ $0x96, Z16, Z13, Z5
	VMOVDQU64  384(SI), Z6
	VPTERNLOGQ $0x96, Z16, Z14, Z6
	VMOVDQU64  448(SI), Z7
	VPTERNLOGQ $0x96, Z16, Z15, Z7
	CMPQ R8, $12
	JB   r10x8
	JEQ  r12x8
	ROUNDS8(VAESDEC, Z17)
	ROUNDS8(VAESDEC, Z18)

r12x8:
	ROUNDS8(VAESDEC, Z19)
	ROUNDS8(VAESDEC, Z20)

r10x8:
	ROUNDS8(VAESDEC, Z21)
	ROUNDS8(VAESDEC, Z22)
	ROUNDS8(VAESDEC, Z23)
	ROUNDS8(VAESDEC, Z24)
	ROUNDS8(VAESDEC, Z25)
	ROUNDS8(VAESDEC, Z26)
	ROUNDS8(VAESDEC, Z27)
	ROUNDS8(VAESDEC, Z28)
	ROUNDS8(VAESDEC, Z29)
	VAESDECLAST Z30, Z0, Z0
	VAESDECLAST Z30, Z1, Z1
	VAESDECLAST Z30, Z2, Z2
	VAESDECLAST Z30, Z3, Z3
	VAESDECLAST Z30, Z4, Z4
	VAESDECLAST Z30, Z5, Z5
	VAESDECLAST Z30, Z6, Z6
	VAESDECLAST Z30, Z7, Z7
	VPXORQ      Z8, Z0, Z0
	VMOVDQU64   Z0, 0(DI)
	VPXORQ      Z9, Z1, Z1
	VMOVDQU64   Z1, 64(DI)
	VPXORQ      Z10, Z2, Z2
	VMOVDQU64   Z2, 128(DI)
	VPXORQ      Z11, Z3, Z3
	VMOVDQU64   Z3, 192(DI)
	VPXORQ      Z12, Z4, Z4
	VMOVDQU64   Z4, 256(DI)
	VPXORQ      Z13, Z5, Z5
	VMOVDQU64   Z5, 320(DI)
	VPXORQ      Z14, Z6, Z6
	VMOVDQU64   Z6, 384(DI)
	VPXORQ      Z15, Z7, Z7
	VMOVDQU64   Z7, 448(DI)
	VMOVDQA64 Z31, Z8
	ADDQ      $512, SI
	ADDQ      $512, DI
	SUBQ      $512, R12
	JMP       blocks32

blocks4:
	// Fewer than 32 blocks left: four at a time, then 1..3 under a mask.
	CMPQ R12, $64
	JB   partial
	MULX(4, Z8, Z31, Z1, Z2)
	VMOVDQU64  (SI), Z0
	VPTERNLOGQ $0x96, Z16, Z8, Z0
	CMPQ R8, $12
	JB   qr10
	JEQ  qr12
	VAESDEC Z17, Z0, Z0
	VAESDEC Z18, Z0, Z0

qr12:
	VAESDEC Z19, Z0, Z0
	VAESDEC Z20, Z0, Z0

qr10:
	VAESDEC Z21, Z0, Z0
	VAESDEC Z22, Z0, Z0
	VAESDEC Z23, Z0, Z0
	VAESDEC Z24, Z0, Z0
	VAESDEC Z25, Z0, Z0
	VAESDEC Z26, Z0, Z0
	VAESDEC Z27, Z0, Z0
	VAESDEC Z28, Z0, Z0
	VAESDEC Z29, Z0, Z0
	VAESDECLAST Z30, Z0, Z0
	VPXORQ Z8, Z0, Z0
	VMOVDQU64  Z0, (DI)
	VMOVDQA64  Z31, Z8
	ADDQ       $64, SI
	ADDQ       $64, DI
	SUBQ       $64, R12
	JMP        blocks4

partial:
	TESTQ R12, R12
	JZ    nextSector
	MOVQ  R12, CX
	SHRQ  $3, CX // quadwords left: 2, 4 or 6
	MOVL  $1, DX
	SHLQ  CX, DX
	DECQ  DX
	KMOVW DX, K1
	VMOVDQU64.Z (SI), K1, Z0
	VPTERNLOGQ  $0x96, Z16, Z8, Z0
	CMPQ R8, $12
	JB   pr10
	JEQ  pr12
	VAESDEC Z17, Z0, Z0
	VAESDEC Z18, Z0, Z0

pr12:
	VAESDEC Z19, Z0, Z0
	VAESDEC Z20, Z0, Z0

pr10:
	VAESDEC Z21, Z0, Z0
	VAESDEC Z22, Z0, Z0
	VAESDEC Z23, Z0, Z0
	VAESDEC Z24, Z0, Z0
	VAESDEC Z25, Z0, Z0
	VAESDEC Z26, Z0, Z0
	VAESDEC Z27, Z0, Z0
	VAESDEC Z28, Z0, Z0
	VAESDEC Z29, Z0, Z0
	VAESDECLAST Z30, Z0, Z0
	VPXORQ Z8, Z0, Z0
	VMOVDQU64   Z0, K1, (DI)
	ADDQ        R12, SI
	ADDQ        R12, DI

nextSector:
	INCQ R11
	SUBQ R10, R9
	JNZ  sector
	WIPEVAES
	RET

