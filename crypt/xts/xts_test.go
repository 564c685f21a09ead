package xts

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	xxts "golang.org/x/crypto/xts"
)

// allImpls are the implementations expected on amd64 machines like the
// project's; testImpls returns those this CPU runs and logs the others.
var allImpls = []impl{implGeneric, implAESNI, implVAES}

func testImpls(t testing.TB) []impl {
	t.Helper()
	have := supportedImpls()
	for _, im := range allImpls {
		found := false
		for _, h := range have {
			found = found || h == im
		}
		if !found {
			t.Logf("implementation %s not available on this CPU/build; not tested", im)
		}
	}
	return have
}

func newImpl(t testing.TB, key []byte, im impl) *Cipher {
	t.Helper()
	c, err := newCipher(make([]byte, StateSize), key, im, true)
	if err != nil {
		t.Fatalf("newCipher(%d-byte key, %s): %v", len(key), im, err)
	}
	if c.Impl() != im.String() {
		t.Fatalf("Impl() = %q, want %q", c.Impl(), im)
	}
	return c
}

func refCipher(t testing.TB, key []byte) *xxts.Cipher {
	t.Helper()
	c, err := xxts.NewCipher(aes.NewCipher, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type vector struct {
	n        int
	key      []byte
	unit     uint64
	ptx, ctx []byte
}

// readVectors parses testdata/ieee1619-2007.txt (IEEE 1619-2007 Annex B).
func readVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open("testdata/ieee1619-2007.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	var v *vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		hx := func() []byte {
			b, err := hex.DecodeString(val)
			if err != nil {
				t.Fatalf("vector %d %s: %v", v.n, name, err)
			}
			return b
		}
		switch name {
		case "vector":
			n, err := strconv.Atoi(val)
			if err != nil {
				t.Fatal(err)
			}
			vs = append(vs, vector{n: n})
			v = &vs[len(vs)-1]
		case "key1", "key2":
			v.key = append(v.key, hx()...)
		case "unit":
			u, err := strconv.ParseUint(val, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			v.unit = u
		case "ptx":
			v.ptx = hx()
		case "ctx":
			v.ctx = hx()
		default:
			t.Fatalf("unknown field %q", name)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) != 14 {
		t.Fatalf("read %d vectors, want 14", len(vs))
	}
	return vs
}

// TestIEEE1619Vectors checks XTS-AES-128 vectors 1-9 and XTS-AES-256 vectors
// 10-14 of IEEE 1619-2007 Annex B with every implementation, through both
// the single-unit and the sector API, and cross-checks golang.org/x/crypto/xts.
func TestIEEE1619Vectors(t *testing.T) {
	for _, v := range readVectors(t) {
		ref := refCipher(t, v.key)
		got := make([]byte, len(v.ptx))
		ref.Encrypt(got, v.ptx, v.unit)
		if !bytes.Equal(got, v.ctx) {
			t.Fatalf("vector %d: x/crypto/xts disagrees with the vector", v.n)
		}
		for _, im := range testImpls(t) {
			c := newImpl(t, v.key, im)
			got := make([]byte, len(v.ptx))
			c.Encrypt(got, v.ptx, v.unit)
			if !bytes.Equal(got, v.ctx) {
				t.Errorf("vector %d %s: Encrypt\n got %x\nwant %x", v.n, im, got, v.ctx)
			}
			c.Decrypt(got, v.ctx, v.unit)
			if !bytes.Equal(got, v.ptx) {
				t.Errorf("vector %d %s: Decrypt mismatch", v.n, im)
			}
			buf := bytes.Clone(v.ptx)
			c.EncryptSectors(buf, len(buf), v.unit)
			if !bytes.Equal(buf, v.ctx) {
				t.Errorf("vector %d %s: EncryptSectors mismatch", v.n, im)
			}
			c.DecryptSectors(buf, len(buf), v.unit)
			if !bytes.Equal(buf, v.ptx) {
				t.Errorf("vector %d %s: DecryptSectors mismatch", v.n, im)
			}
		}
	}
}

// TestVectorsAsSectors runs vectors 4-9 (consecutive units 0,1,2 and
// 0xfd,0xfe,0xff under one key, each the previous one's output) as single
// three-sector buffers.
func TestVectorsAsSectors(t *testing.T) {
	vs := readVectors(t)
	for _, first := range []int{3, 6} { // indexes of vectors 4 and 7
		a, b, c := vs[first], vs[first+1], vs[first+2]
		ptx := bytes.Join([][]byte{a.ptx, b.ptx, c.ptx}, nil)
		ctx := bytes.Join([][]byte{a.ctx, b.ctx, c.ctx}, nil)
		for _, im := range testImpls(t) {
			ci := newImpl(t, a.key, im)
			buf := bytes.Clone(ptx)
			ci.EncryptSectors(buf, 512, a.unit)
			if !bytes.Equal(buf, ctx) {
				t.Errorf("vectors %d-%d %s: EncryptSectors mismatch", a.n, c.n, im)
			}
			ci.DecryptSectors(buf, 512, a.unit)
			if !bytes.Equal(buf, ptx) {
				t.Errorf("vectors %d-%d %s: DecryptSectors mismatch", a.n, c.n, im)
			}
		}
	}
}

func randKey(r *rand.Rand, n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(r.Uint32())
	}
	return k
}

func randUnit(r *rand.Rand) uint64 {
	switch r.IntN(4) {
	case 0:
		return math.MaxUint64 - uint64(r.IntN(40)) // wraps within the buffer
	case 1:
		return uint64(r.IntN(1000))
	case 2:
		return 1<<63 - uint64(r.IntN(40))
	default:
		return r.Uint64()
	}
}

// refSectors computes the expected result of EncryptSectors/DecryptSectors
// with x/crypto/xts, one unit at a time.
func refSectors(ref *xxts.Cipher, buf []byte, sectorSize int, first uint64, decrypt bool) []byte {
	out := make([]byte, len(buf))
	for i := 0; i < len(buf); i += sectorSize {
		if decrypt {
			ref.Decrypt(out[i:i+sectorSize], buf[i:i+sectorSize], first)
		} else {
			ref.Encrypt(out[i:i+sectorSize], buf[i:i+sectorSize], first)
		}
		first++
	}
	return out
}

// TestAgainstXCrypto compares every implementation with x/crypto/xts over
// sector sizes of 1..40 blocks (every tail length of the 8- and 32-block
// loops), 512 and 4096 bytes, buffers up to 64 KiB, both key sizes, unit
// numbers near 2^64, in place and out of place, and checks round trips.
func TestAgainstXCrypto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var sizes []int
	for b := 1; b <= 40; b++ {
		sizes = append(sizes, 16*b)
	}
	sizes = append(sizes, 512, 4096, 16*67, 16*257)
	for _, keyLen := range []int{32, 64} {
		for _, ss := range sizes {
			key := randKey(r, keyLen)
			ref := refCipher(t, key)
			impls := testImpls(t)
			ciphers := make([]*Cipher, len(impls))
			for i, im := range impls {
				ciphers[i] = newImpl(t, key, im)
			}
			maxSectors := max(1, min(17, 65536/ss))
			for _, nsec := range []int{1, 2, 3, r.IntN(maxSectors) + 1, maxSectors} {
				unit := randUnit(r)
				ptx := randKey(r, ss*nsec)
				ctx := refSectors(ref, ptx, ss, unit, false)
				for i, c := range ciphers {
					name := fmt.Sprintf("aes%d/%s/sector=%d/n=%d/unit=%#x", keyLen*4, impls[i], ss, nsec, unit)
					buf := bytes.Clone(ptx)
					c.EncryptSectors(buf, ss, unit)
					if !bytes.Equal(buf, ctx) {
						t.Fatalf("%s: EncryptSectors mismatch", name)
					}
					c.DecryptSectors(buf, ss, unit)
					if !bytes.Equal(buf, ptx) {
						t.Fatalf("%s: DecryptSectors round trip mismatch", name)
					}
					// Decrypt of random data vs x/crypto (not just round trip).
					want := refSectors(ref, ptx, ss, unit, true)
					c.DecryptSectors(buf, ss, unit)
					if !bytes.Equal(buf, want) {
						t.Fatalf("%s: DecryptSectors mismatch", name)
					}
					// Out of place, single unit.
					dst := make([]byte, ss+16)
					c.Encrypt(dst, ptx[:ss], unit)
					if !bytes.Equal(dst[:ss], ctx[:ss]) || !bytes.Equal(dst[ss:], make([]byte, 16)) {
						t.Fatalf("%s: Encrypt out of place mismatch", name)
					}
					c.Decrypt(dst, dst[:ss], unit)
					if !bytes.Equal(dst[:ss], ptx[:ss]) {
						t.Fatalf("%s: Decrypt in place mismatch", name)
					}
				}
			}
		}
	}
}

// TestUnaligned runs every implementation on buffers at every offset 0..63
// from a 64-byte boundary, with a guard region that must stay untouched.
func TestUnaligned(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	key := randKey(r, 64)
	ref := refCipher(t, key)
	const ss, nsec = 16 * 37, 3
	ptx := randKey(r, ss*nsec)
	ctx := refSectors(ref, ptx, ss, 7, false)
	for _, im := range testImpls(t) {
		c := newImpl(t, key, im)
		for off := 0; off < 64; off++ {
			mem := make([]byte, 64+len(ptx)+64)
			for i := range mem {
				mem[i] = 0xa5
			}
			buf := mem[off : off+len(ptx)]
			copy(buf, ptx)
			c.EncryptSectors(buf, ss, 7)
			if !bytes.Equal(buf, ctx) {
				t.Fatalf("%s offset %d: mismatch", im, off)
			}
			for i, b := range mem {
				if (i < off || i >= off+len(ptx)) && b != 0xa5 {
					t.Fatalf("%s offset %d: wrote outside the buffer at %d", im, off, i)
				}
			}
			c.DecryptSectors(buf, ss, 7)
			if !bytes.Equal(buf, ptx) {
				t.Fatalf("%s offset %d: round trip mismatch", im, off)
			}
		}
	}
}

func TestStateUnaligned(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	key := randKey(r, 32)
	ref := refCipher(t, key)
	ptx := randKey(r, 4096)
	want := refSectors(ref, ptx, 512, 9, false)
	for _, im := range testImpls(t) {
		for off := 0; off < 16; off += 3 {
			state := make([]byte, StateSize+off)
			c, err := newCipher(state[off:], key, im, false)
			if err != nil {
				t.Fatal(err)
			}
			buf := bytes.Clone(ptx)
			c.EncryptSectors(buf, 512, 9)
			if !bytes.Equal(buf, want) {
				t.Fatalf("%s state offset %d: mismatch", im, off)
			}
		}
	}
}

func TestAllocs(t *testing.T) {
	key := randKey(rand.New(rand.NewPCG(7, 8)), 64)
	buf := make([]byte, 64<<10)
	dst := make([]byte, 4096)
	for _, im := range testImpls(t) {
		c := newImpl(t, key, im)
		n := testing.AllocsPerRun(20, func() {
			c.EncryptSectors(buf, 4096, 1)
			c.DecryptSectors(buf, 512, 1)
			c.Encrypt(dst, buf[:4096], 3)
			c.Decrypt(dst, dst, 3)
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", im, n)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 48, 63, 65, 128} {
		if _, err := New(make([]byte, n)); !errors.Is(err, ErrKeySize) {
			t.Errorf("New(%d-byte key) = %v, want ErrKeySize", n, err)
		}
	}
	for _, n := range []int{32, 64} {
		key := bytes.Repeat([]byte{0x5c}, n)
		if _, err := New(key); !errors.Is(err, ErrEqualKeys) {
			t.Errorf("New(equal halves, %d bytes) = %v, want ErrEqualKeys", n, err)
		}
		if _, err := NewInState(make([]byte, StateSize), key); !errors.Is(err, ErrEqualKeys) {
			t.Errorf("NewInState(equal halves, %d bytes) = %v, want ErrEqualKeys", n, err)
		}
	}
	key := randKey(rand.New(rand.NewPCG(9, 10)), 64)
	if _, err := NewInState(make([]byte, StateSize-1), key); !errors.Is(err, ErrStateSize) {
		t.Errorf("NewInState(short state) = %v, want ErrStateSize", err)
	}
}

// TestNewInState checks that the key schedules live in the caller's state,
// that the key is not retained, and that Wipe zeroes the state.
func TestNewInState(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, keyLen := range []int{32, 64} {
		key := randKey(r, keyLen)
		ref := refCipher(t, key)
		state := make([]byte, StateSize+32)
		for i := range state {
			state[i] = 0xee
		}
		c, err := NewInState(state[:StateSize], key)
		if err != nil {
			t.Fatal(err)
		}
		if c.Impl() != bestImpl().String() {
			t.Errorf("Impl() = %q, want %q", c.Impl(), bestImpl())
		}
		// The schedule starts with key1 and key2 (FIPS 197 §5.2).
		if !bytes.Equal(state[encOff:encOff+keyLen/2], key[:keyLen/2]) ||
			!bytes.Equal(state[tweakOff:tweakOff+keyLen/2], key[keyLen/2:]) {
			t.Error("state does not hold the key schedules")
		}
		if !bytes.Equal(state[StateSize:], bytes.Repeat([]byte{0xee}, 32)) {
			t.Error("NewInState wrote past StateSize")
		}
		for i := range key {
			key[i] = 0 // not retained: clobbering it changes nothing
		}
		ptx := randKey(r, 1024)
		buf := bytes.Clone(ptx)
		c.EncryptSectors(buf, 512, 42)
		if want := refSectors(ref, ptx, 512, 42, false); !bytes.Equal(buf, want) {
			t.Error("cipher depends on the caller's key slice after NewInState")
		}
		c.Wipe()
		if !bytes.Equal(state[:StateSize], make([]byte, StateSize)) {
			t.Error("Wipe left key material in state")
		}
		c.Wipe() // idempotent
		func() {
			defer func() {
				if recover() == nil {
					t.Error("use after Wipe did not panic")
				}
			}()
			c.EncryptSectors(buf, 512, 0)
		}()
	}
}

func TestMisusePanics(t *testing.T) {
	key := randKey(rand.New(rand.NewPCG(13, 14)), 32)
	c, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	cases := map[string]func(){
		"sector 0":          func() { c.EncryptSectors(buf, 0, 0) },
		"sector 8":          func() { c.EncryptSectors(buf[:8], 8, 0) },
		"sector 24":         func() { c.DecryptSectors(buf[:48], 24, 0) },
		"sector negative":   func() { c.DecryptSectors(buf, -16, 0) },
		"len not multiple":  func() { c.EncryptSectors(buf[:1000], 512, 0) },
		"src not multiple":  func() { c.Encrypt(buf, buf[:15], 0) },
		"dst short":         func() { c.Decrypt(buf[:16], buf[:32], 0) },
		"inexact overlap":   func() { c.Encrypt(buf[16:64], buf[:48], 0) },
		"inexact overlap 2": func() { c.Decrypt(buf[:48], buf[16:64], 0) },
	}
	for name, f := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	// Empty buffers are no-ops.
	c.EncryptSectors(nil, 512, 0)
	c.Encrypt(nil, nil, 0)
}

// TestConcurrent shares one Cipher among goroutines (run under -race).
func TestConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	key := randKey(r, 64)
	ref := refCipher(t, key)
	ptx := randKey(r, 8192)
	want := refSectors(ref, ptx, 4096, 100, false)
	c, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, len(ptx))
			for i := 0; i < 50; i++ {
				copy(buf, ptx)
				c.EncryptSectors(buf, 4096, 100)
				if !bytes.Equal(buf, want) {
					errs <- "mismatch"
					return
				}
				c.DecryptSectors(buf, 4096, 100)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestTweakWrap checks unit numbers wrap modulo 2^64 across a buffer, as
// per-unit calls with a uint64 counter do.
func TestTweakWrap(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	key := randKey(r, 32)
	ref := refCipher(t, key)
	ptx := randKey(r, 16*9*7)
	want := refSectors(ref, ptx, 16*9, math.MaxUint64-2, false)
	for _, im := range testImpls(t) {
		buf := bytes.Clone(ptx)
		newImpl(t, key, im).EncryptSectors(buf, 16*9, math.MaxUint64-2)
		if !bytes.Equal(buf, want) {
			t.Errorf("%s: mismatch across the 2^64 wrap", im)
		}
	}
}

// FuzzXTS compares every implementation with x/crypto/xts. The input picks
// the key size, sector size (in blocks), unit number and data.
func FuzzXTS(f *testing.F) {
	f.Add(uint8(0), uint8(1), uint64(0), []byte("0123456789abcdef"))
	f.Add(uint8(1), uint8(32), uint64(math.MaxUint64), bytes.Repeat([]byte{0xab}, 1024))
	f.Add(uint8(1), uint8(9), uint64(1<<63), bytes.Repeat([]byte{1}, 16*9*3))
	keyRand := rand.New(rand.NewPCG(19, 20))
	keys := [][]byte{randKey(keyRand, 32), randKey(keyRand, 64)}
	impls := testImpls(f)
	f.Fuzz(func(t *testing.T, keySel, blocks uint8, unit uint64, data []byte) {
		key := keys[keySel&1]
		if keySel&2 != 0 && len(data) >= len(key) {
			key = data[:len(key)] // fuzz keys too
			if bytes.Equal(key[:len(key)/2], key[len(key)/2:]) {
				return
			}
		}
		ss := 16 * (int(blocks)%64 + 1)
		n := len(data) / ss * ss
		if n == 0 {
			return
		}
		ptx := data[:n]
		ref := refCipher(t, key)
		want := refSectors(ref, ptx, ss, unit, false)
		wantDec := refSectors(ref, ptx, ss, unit, true)
		for _, im := range impls {
			c := newImpl(t, key, im)
			buf := bytes.Clone(ptx)
			c.EncryptSectors(buf, ss, unit)
			if !bytes.Equal(buf, want) {
				t.Fatalf("%s: EncryptSectors mismatch", im)
			}
			c.DecryptSectors(buf, ss, unit)
			if !bytes.Equal(buf, ptx) {
				t.Fatalf("%s: round trip mismatch", im)
			}
			c.DecryptSectors(buf, ss, unit)
			if !bytes.Equal(buf, wantDec) {
				t.Fatalf("%s: DecryptSectors mismatch", im)
			}
		}
	})
}

// TestGenericBlockCipher checks the portable AES against crypto/aes.
func TestGenericBlockCipher(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{16, 32} {
		for i := 0; i < 200; i++ {
			key := randKey(r, n)
			rk := make([]byte, scheduleLen)
			dk := make([]byte, scheduleLen)
			nr := expandKey(rk, key)
			invertSchedule(dk, rk, nr)
			ref, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			var b [16]byte
			binary.LittleEndian.PutUint64(b[:], r.Uint64())
			binary.LittleEndian.PutUint64(b[8:], r.Uint64())
			want := make([]byte, 16)
			ref.Encrypt(want, b[:])
			orig := b
			encryptBlock(rk, nr, &b)
			if !bytes.Equal(b[:], want) {
				t.Fatalf("encryptBlock mismatch (key %d bytes)", n)
			}
			decryptBlock(dk, nr, &b)
			if b != orig {
				t.Fatalf("decryptBlock mismatch (key %d bytes)", n)
			}
		}
	}
}

func TestNewImpl(t *testing.T) {
	key := randKey(rand.New(rand.NewPCG(23, 24)), 32)
	names := Implementations()
	if len(names) == 0 || names[0] != "generic" {
		t.Fatalf("Implementations() = %q, want generic first", names)
	}
	for _, n := range names {
		c, err := NewImpl(key, n)
		if err != nil {
			t.Fatal(err)
		}
		if c.Impl() != n {
			t.Errorf("NewImpl(%q).Impl() = %q", n, c.Impl())
		}
	}
	if _, err := NewImpl(key, "rot13"); !errors.Is(err, ErrImpl) {
		t.Errorf("NewImpl(unknown) = %v, want ErrImpl", err)
	}
}
