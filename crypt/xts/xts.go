package xts

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// Sentinel errors returned by New and NewInState.
var (
	// ErrKeySize reports a key that is neither 32 nor 64 bytes long.
	ErrKeySize = errors.New("xts: key must be 32 (AES-128) or 64 (AES-256) bytes")
	// ErrEqualKeys reports key1 == key2, which IEEE 1619 (§5.1) and
	// FIPS 140 implementation guidance forbid.
	ErrEqualKeys = errors.New("xts: key1 and key2 must differ")
	// ErrStateSize reports a state buffer shorter than StateSize.
	ErrStateSize = errors.New("xts: state buffer shorter than StateSize")
	// ErrImpl reports an implementation name this CPU or build cannot run.
	ErrImpl = errors.New("xts: implementation not available")
)

const (
	blockSize   = 16
	maxRounds   = 14
	scheduleLen = (maxRounds + 1) * blockSize // 240 bytes: one expanded AES-256 key

	// Offsets of the three key schedules inside the state.
	encOff   = 0               // key1 encryption round keys rk[0..nr]
	decOff   = scheduleLen     // key1 decryption round keys, equivalent inverse cipher order
	tweakOff = 2 * scheduleLen // key2 encryption round keys

	// StateSize is the number of bytes of key-derived state a Cipher keeps:
	// key1's encryption and decryption schedules and key2's encryption
	// schedule, each sized for AES-256.
	StateSize = 3 * scheduleLen
)

// impl names an implementation of the bulk data path.
type impl uint8

const (
	implGeneric impl = iota
	implAESNI
	implVAES
)

func (i impl) String() string {
	switch i {
	case implAESNI:
		return "aesni"
	case implVAES:
		return "vaes-avx512"
	default:
		return "generic"
	}
}

// Cipher is AES-XTS keyed with a double-length key: 32 bytes (AES-128) or 64
// bytes (AES-256), key1 || key2. It is read-only after construction and safe
// for concurrent use.
type Cipher struct {
	st   *[StateSize]byte // all key-derived material; nil after Wipe
	nr   int              // AES rounds: 10 or 14
	impl impl
}

// New returns a Cipher whose key schedules live in memory it allocates.
// It does not retain key.
func New(key []byte) (*Cipher, error) {
	return newCipher(make([]byte, StateSize), key, bestImpl(), false)
}

// NewInState is New with every piece of key-derived material (all round keys,
// encryption and decryption, both halves) kept inside state, which must be at
// least StateSize bytes and stays owned by the caller (for example mlock'd
// memory). The Cipher never copies key material elsewhere, does not retain
// key, and uses state until Wipe. Keys of other lengths than 32 or 64 bytes
// and keys whose halves are equal are rejected.
func NewInState(state []byte, key []byte) (*Cipher, error) {
	return newCipher(state, key, bestImpl(), false)
}

// Implementations lists the implementations this CPU and build can run,
// best (the one New picks) last. For benchmarks and diagnostics.
func Implementations() []string {
	var names []string
	for _, im := range supportedImpls() {
		names = append(names, im.String())
	}
	return names
}

// NewImpl is New with the implementation named impl (one of
// Implementations), for benchmarks and tests that compare implementations.
func NewImpl(key []byte, impl string) (*Cipher, error) {
	for _, im := range supportedImpls() {
		if im.String() == impl {
			return newCipher(make([]byte, StateSize), key, im, false)
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrImpl, impl)
}

// newCipher builds a Cipher with the given implementation. allowEqual lets
// tests run IEEE 1619 vector 1, whose two halves are both zero.
func newCipher(state, key []byte, im impl, allowEqual bool) (*Cipher, error) {
	var nk int // key length of one half in bytes
	switch len(key) {
	case 32:
		nk = 16
	case 64:
		nk = 32
	default:
		return nil, fmt.Errorf("%w: got %d bytes", ErrKeySize, len(key))
	}
	if len(state) < StateSize {
		return nil, fmt.Errorf("%w: got %d bytes, need %d", ErrStateSize, len(state), StateSize)
	}
	if !allowEqual && subtle.ConstantTimeCompare(key[:nk], key[nk:]) == 1 {
		return nil, ErrEqualKeys
	}
	st := (*[StateSize]byte)(state[:StateSize])
	clear(st[:])
	nr := expandKey(st[encOff:decOff], key[:nk])
	expandKey(st[tweakOff:], key[nk:])
	invertSchedule(st[decOff:tweakOff], st[encOff:decOff], nr)
	return &Cipher{st: st, nr: nr, impl: im}, nil
}

// Impl reports which implementation runs: "vaes-avx512", "aesni" or "generic".
func (c *Cipher) Impl() string { return c.impl.String() }

// Wipe zeroes all key-derived state. The Cipher must not be used afterwards
// (doing so panics); Wipe must not run concurrently with other methods.
func (c *Cipher) Wipe() {
	if c.st == nil {
		return
	}
	clear(c.st[:])
	c.st = nil
}

// EncryptSectors encrypts buf in place as consecutive data units of
// sectorSize bytes; the first has data unit number first, the next first+1
// (wrapping modulo 2^64), and so on. It panics unless sectorSize is a
// positive multiple of 16 and len(buf) a multiple of sectorSize.
func (c *Cipher) EncryptSectors(buf []byte, sectorSize int, first uint64) {
	checkSectors(len(buf), sectorSize)
	if len(buf) == 0 {
		return
	}
	c.crypt(buf, buf, sectorSize, first, false)
}

// DecryptSectors is the inverse of EncryptSectors, with the same contract.
func (c *Cipher) DecryptSectors(buf []byte, sectorSize int, first uint64) {
	checkSectors(len(buf), sectorSize)
	if len(buf) == 0 {
		return
	}
	c.crypt(buf, buf, sectorSize, first, true)
}

// Encrypt encrypts one data unit src, numbered unit, into dst. dst and src
// may alias exactly but must not otherwise overlap. As with
// golang.org/x/crypto/xts it panics if len(src) is not a multiple of 16 or
// len(dst) < len(src).
func (c *Cipher) Encrypt(dst, src []byte, unit uint64) {
	checkUnit(dst, src)
	if len(src) == 0 {
		return
	}
	c.crypt(dst, src, len(src), unit, false)
}

// Decrypt decrypts one data unit src, numbered unit, into dst, with the same
// contract as Encrypt.
func (c *Cipher) Decrypt(dst, src []byte, unit uint64) {
	checkUnit(dst, src)
	if len(src) == 0 {
		return
	}
	c.crypt(dst, src, len(src), unit, true)
}

func checkSectors(n, sectorSize int) {
	if sectorSize < blockSize || sectorSize%blockSize != 0 {
		panic("xts: sector size must be a positive multiple of 16")
	}
	if n%sectorSize != 0 {
		panic("xts: buffer length is not a multiple of the sector size")
	}
}

func checkUnit(dst, src []byte) {
	if len(src)%blockSize != 0 {
		panic("xts: source length is not a multiple of 16")
	}
	if len(dst) < len(src) {
		panic("xts: destination shorter than source")
	}
	if inexactOverlap(dst[:len(src)], src) {
		panic("xts: invalid buffer overlap")
	}
}

// inexactOverlap reports whether x and y share memory at different offsets.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	xp := uintptr(unsafe.Pointer(&x[0]))
	yp := uintptr(unsafe.Pointer(&y[0]))
	return xp < yp+uintptr(len(y)) && yp < xp+uintptr(len(x))
}

// cryptGeneric is the portable data path: one AES block at a time with the
// round keys in c.st. n is a positive multiple of sectorSize.
func (c *Cipher) cryptGeneric(dst, src []byte, sectorSize int, unit uint64, decrypt bool) {
	st := c.st
	rk := st[encOff:decOff]
	if decrypt {
		rk = st[decOff:tweakOff]
	}
	tk := st[tweakOff:]
	var blk [blockSize]byte
	for off := 0; off < len(src); off += sectorSize {
		binary.LittleEndian.PutUint64(blk[:8], unit)
		binary.LittleEndian.PutUint64(blk[8:], 0)
		encryptBlock(tk, c.nr, &blk)
		tlo := binary.LittleEndian.Uint64(blk[:8])
		thi := binary.LittleEndian.Uint64(blk[8:])
		for i := off; i < off+sectorSize; i += blockSize {
			s := src[i : i+blockSize]
			binary.LittleEndian.PutUint64(blk[:8], binary.LittleEndian.Uint64(s[:8])^tlo)
			binary.LittleEndian.PutUint64(blk[8:], binary.LittleEndian.Uint64(s[8:])^thi)
			if decrypt {
				decryptBlock(rk, c.nr, &blk)
			} else {
				encryptBlock(rk, c.nr, &blk)
			}
			d := dst[i : i+blockSize]
			binary.LittleEndian.PutUint64(d[:8], binary.LittleEndian.Uint64(blk[:8])^tlo)
			binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(blk[8:])^thi)
			// Multiply the tweak by α in GF(2^128) (IEEE 1619 §5.2):
			// shift left one bit, reduce by x^128 = x^7 + x^2 + x + 1.
			carry := thi >> 63
			thi = thi<<1 | tlo>>63
			tlo = tlo<<1 ^ 0x87&-carry
		}
		unit++
	}
	clear(blk[:])
}
