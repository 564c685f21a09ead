package xts

import (
	"encoding/binary"
	"math/bits"
)

// AES (FIPS 197) key schedule and a portable block cipher that reads its
// round keys from the Cipher's state. Round keys are stored as the bytes of
// the words w[i] in big-endian order, which is also the layout AES-NI
// expects.
//
// The portable cipher is table-driven: like crypto/aes's generic code it is
// not constant-time with respect to cache timing. It only runs on machines
// without AES instructions (or under the purego tag).

// aesTables are the S-boxes and the round lookup tables, computed once from
// the field arithmetic in FIPS 197 §4 and §5; read-only afterwards.
type aesTables struct {
	sbox, inv [256]byte
	te, td    [256]uint32 // te[x] = (2s,s,s,3s), td[x] = (14t,9t,13t,11t) for s = sbox[x], t = inv[x]
}

var tables = newTables()

// gfMul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		a = a<<1 ^ 0x1b&-(a>>7)
		b >>= 1
	}
	return p
}

func newTables() *aesTables {
	t := new(aesTables)
	for x := 0; x < 256; x++ {
		// Multiplicative inverse (0 maps to 0): x^254.
		inv := byte(0)
		if x != 0 {
			p, e := byte(1), byte(x)
			for n := 254; n > 0; n >>= 1 {
				if n&1 != 0 {
					p = gfMul(p, e)
				}
				e = gfMul(e, e)
			}
			inv = p
		}
		// Affine transformation (FIPS 197 §5.1.1).
		s := inv ^ bits.RotateLeft8(inv, 1) ^ bits.RotateLeft8(inv, 2) ^
			bits.RotateLeft8(inv, 3) ^ bits.RotateLeft8(inv, 4) ^ 0x63
		t.sbox[x] = s
		t.inv[s] = byte(x)
	}
	for x := 0; x < 256; x++ {
		s := t.sbox[x]
		t.te[x] = uint32(gfMul(s, 2))<<24 | uint32(s)<<16 | uint32(s)<<8 | uint32(gfMul(s, 3))
		v := t.inv[x]
		t.td[x] = uint32(gfMul(v, 14))<<24 | uint32(gfMul(v, 9))<<16 | uint32(gfMul(v, 13))<<8 | uint32(gfMul(v, 11))
	}
	return t
}

func subWord(w uint32) uint32 {
	s := &tables.sbox
	return uint32(s[w>>24])<<24 | uint32(s[w>>16&0xff])<<16 | uint32(s[w>>8&0xff])<<8 | uint32(s[w&0xff])
}

// expandKey writes the FIPS 197 §5.2 key expansion of key (16 or 32 bytes)
// into rk, working in place so that no copy of the key is left elsewhere,
// and returns the number of rounds.
func expandKey(rk []byte, key []byte) int {
	nk := len(key) / 4
	nr := nk + 6
	copy(rk, key)
	rcon := uint32(1)
	for i := nk; i < 4*(nr+1); i++ {
		t := binary.BigEndian.Uint32(rk[4*(i-1):])
		switch {
		case i%nk == 0:
			t = subWord(bits.RotateLeft32(t, 8)) ^ rcon<<24
			rcon = uint32(gfMul(byte(rcon), 2))
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		binary.BigEndian.PutUint32(rk[4*i:], binary.BigEndian.Uint32(rk[4*(i-nk):])^t)
	}
	return nr
}

// invMixColumn applies InvMixColumns (FIPS 197 §5.3.3) to one column.
func invMixColumn(w uint32) uint32 {
	a0, a1, a2, a3 := byte(w>>24), byte(w>>16), byte(w>>8), byte(w)
	b0 := gfMul(a0, 14) ^ gfMul(a1, 11) ^ gfMul(a2, 13) ^ gfMul(a3, 9)
	b1 := gfMul(a0, 9) ^ gfMul(a1, 14) ^ gfMul(a2, 11) ^ gfMul(a3, 13)
	b2 := gfMul(a0, 13) ^ gfMul(a1, 9) ^ gfMul(a2, 14) ^ gfMul(a3, 11)
	b3 := gfMul(a0, 11) ^ gfMul(a1, 13) ^ gfMul(a2, 9) ^ gfMul(a3, 14)
	return uint32(b0)<<24 | uint32(b1)<<16 | uint32(b2)<<8 | uint32(b3)
}

// invertSchedule writes the round keys of the equivalent inverse cipher
// (FIPS 197 §5.3.5) in the order they are applied: dk[0] = rk[nr],
// dk[i] = InvMixColumns(rk[nr-i]), dk[nr] = rk[0]. This is the order
// AESDEC/AESDECLAST consume them in.
func invertSchedule(dk, rk []byte, nr int) {
	for i := 0; i <= nr; i++ {
		src := rk[(nr-i)*blockSize : (nr-i+1)*blockSize]
		dst := dk[i*blockSize : (i+1)*blockSize]
		for j := 0; j < blockSize; j += 4 {
			w := binary.BigEndian.Uint32(src[j:])
			if i != 0 && i != nr {
				w = invMixColumn(w)
			}
			binary.BigEndian.PutUint32(dst[j:], w)
		}
	}
}

// encryptBlock encrypts b in place with the encryption schedule rk.
func encryptBlock(rk []byte, nr int, b *[blockSize]byte) {
	te, sb := &tables.te, &tables.sbox
	s0 := binary.BigEndian.Uint32(b[0:]) ^ binary.BigEndian.Uint32(rk[0:])
	s1 := binary.BigEndian.Uint32(b[4:]) ^ binary.BigEndian.Uint32(rk[4:])
	s2 := binary.BigEndian.Uint32(b[8:]) ^ binary.BigEndian.Uint32(rk[8:])
	s3 := binary.BigEndian.Uint32(b[12:]) ^ binary.BigEndian.Uint32(rk[12:])
	for r := 1; r < nr; r++ {
		k := rk[r*blockSize : (r+1)*blockSize]
		t0 := te[s0>>24] ^ bits.RotateLeft32(te[s1>>16&0xff], -8) ^ bits.RotateLeft32(te[s2>>8&0xff], -16) ^ bits.RotateLeft32(te[s3&0xff], -24)
		t1 := te[s1>>24] ^ bits.RotateLeft32(te[s2>>16&0xff], -8) ^ bits.RotateLeft32(te[s3>>8&0xff], -16) ^ bits.RotateLeft32(te[s0&0xff], -24)
		t2 := te[s2>>24] ^ bits.RotateLeft32(te[s3>>16&0xff], -8) ^ bits.RotateLeft32(te[s0>>8&0xff], -16) ^ bits.RotateLeft32(te[s1&0xff], -24)
		t3 := te[s3>>24] ^ bits.RotateLeft32(te[s0>>16&0xff], -8) ^ bits.RotateLeft32(te[s1>>8&0xff], -16) ^ bits.RotateLeft32(te[s2&0xff], -24)
		s0 = t0 ^ binary.BigEndian.Uint32(k[0:])
		s1 = t1 ^ binary.BigEndian.Uint32(k[4:])
		s2 = t2 ^ binary.BigEndian.Uint32(k[8:])
		s3 = t3 ^ binary.BigEndian.Uint32(k[12:])
	}
	k := rk[nr*blockSize : (nr+1)*blockSize]
	t0 := uint32(sb[s0>>24])<<24 | uint32(sb[s1>>16&0xff])<<16 | uint32(sb[s2>>8&0xff])<<8 | uint32(sb[s3&0xff])
	t1 := uint32(sb[s1>>24])<<24 | uint32(sb[s2>>16&0xff])<<16 | uint32(sb[s3>>8&0xff])<<8 | uint32(sb[s0&0xff])
	t2 := uint32(sb[s2>>24])<<24 | uint32(sb[s3>>16&0xff])<<16 | uint32(sb[s0>>8&0xff])<<8 | uint32(sb[s1&0xff])
	t3 := uint32(sb[s3>>24])<<24 | uint32(sb[s0>>16&0xff])<<16 | uint32(sb[s1>>8&0xff])<<8 | uint32(sb[s2&0xff])
	binary.BigEndian.PutUint32(b[0:], t0^binary.BigEndian.Uint32(k[0:]))
	binary.BigEndian.PutUint32(b[4:], t1^binary.BigEndian.Uint32(k[4:]))
	binary.BigEndian.PutUint32(b[8:], t2^binary.BigEndian.Uint32(k[8:]))
	binary.BigEndian.PutUint32(b[12:], t3^binary.BigEndian.Uint32(k[12:]))
}

// decryptBlock decrypts b in place with the equivalent-inverse-cipher
// schedule dk written by invertSchedule.
func decryptBlock(dk []byte, nr int, b *[blockSize]byte) {
	td, ib := &tables.td, &tables.inv
	s0 := binary.BigEndian.Uint32(b[0:]) ^ binary.BigEndian.Uint32(dk[0:])
	s1 := binary.BigEndian.Uint32(b[4:]) ^ binary.BigEndian.Uint32(dk[4:])
	s2 := binary.BigEndian.Uint32(b[8:]) ^ binary.BigEndian.Uint32(dk[8:])
	s3 := binary.BigEndian.Uint32(b[12:]) ^ binary.BigEndian.Uint32(dk[12:])
	for r := 1; r < nr; r++ {
		k := dk[r*blockSize : (r+1)*blockSize]
		t0 := td[s0>>24] ^ bits.RotateLeft32(td[s3>>16&0xff], -8) ^ bits.RotateLeft32(td[s2>>8&0xff], -16) ^ bits.RotateLeft32(td[s1&0xff], -24)
		t1 := td[s1>>24] ^ bits.RotateLeft32(td[s0>>16&0xff], -8) ^ bits.RotateLeft32(td[s3>>8&0xff], -16) ^ bits.RotateLeft32(td[s2&0xff], -24)
		t2 := td[s2>>24] ^ bits.RotateLeft32(td[s1>>16&0xff], -8) ^ bits.RotateLeft32(td[s0>>8&0xff], -16) ^ bits.RotateLeft32(td[s3&0xff], -24)
		t3 := td[s3>>24] ^ bits.RotateLeft32(td[s2>>16&0xff], -8) ^ bits.RotateLeft32(td[s1>>8&0xff], -16) ^ bits.RotateLeft32(td[s0&0xff], -24)
		s0 = t0 ^ binary.BigEndian.Uint32(k[0:])
		s1 = t1 ^ binary.BigEndian.Uint32(k[4:])
		s2 = t2 ^ binary.BigEndian.Uint32(k[8:])
		s3 = t3 ^ binary.BigEndian.Uint32(k[12:])
	}
	k := dk[nr*blockSize : (nr+1)*blockSize]
	t0 := uint32(ib[s0>>24])<<24 | uint32(ib[s3>>16&0xff])<<16 | uint32(ib[s2>>8&0xff])<<8 | uint32(ib[s1&0xff])
	t1 := uint32(ib[s1>>24])<<24 | uint32(ib[s0>>16&0xff])<<16 | uint32(ib[s3>>8&0xff])<<8 | uint32(ib[s2&0xff])
	t2 := uint32(ib[s2>>24])<<24 | uint32(ib[s1>>16&0xff])<<16 | uint32(ib[s0>>8&0xff])<<8 | uint32(ib[s3&0xff])
	t3 := uint32(ib[s3>>24])<<24 | uint32(ib[s2>>16&0xff])<<16 | uint32(ib[s1>>8&0xff])<<8 | uint32(ib[s0&0xff])
	binary.BigEndian.PutUint32(b[0:], t0^binary.BigEndian.Uint32(k[0:]))
	binary.BigEndian.PutUint32(b[4:], t1^binary.BigEndian.Uint32(k[4:]))
	binary.BigEndian.PutUint32(b[8:], t2^binary.BigEndian.Uint32(k[8:]))
	binary.BigEndian.PutUint32(b[12:], t3^binary.BigEndian.Uint32(k[12:]))
}
