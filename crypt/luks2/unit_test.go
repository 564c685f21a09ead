package luks2

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// seeded returns a deterministic random source for tests.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

func TestAFRoundTrip(t *testing.T) {
	r := seeded(1)
	for _, h := range []func() hash.Hash{sha1.New, sha256.New, sha512.New} {
		for _, keyLen := range []int{16, 32, 33, 64, 100} {
			for _, stripes := range []int{1, 2, 3, 4000} {
				key := make([]byte, keyLen)
				r.Read(key)
				buf := make([]byte, keyLen*stripes)
				if err := afSplit(buf, key, stripes, h, r); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, keyLen)
				if err := afMerge(got, buf, stripes, h); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, key) {
					t.Fatalf("keyLen %d stripes %d: round trip mismatch", keyLen, stripes)
				}
				if stripes > 1 {
					// Every stripe matters: flipping one bit anywhere changes the key.
					buf[rand.New(r).IntN(len(buf))] ^= 1
					_ = afMerge(got, buf, stripes, h)
					if bytes.Equal(got, key) {
						t.Fatalf("keyLen %d stripes %d: damaged stripes still merge", keyLen, stripes)
					}
				}
			}
		}
	}
	if err := afSplit(make([]byte, 10), make([]byte, 8), 2, sha256.New, r); err == nil {
		t.Fatal("short buffer accepted")
	}
}

// TestDiffuseVector pins the diffusion to the LUKS definition: piece i is
// H(be32(i) || piece), the last piece truncated.
func TestDiffuseVector(t *testing.T) {
	block := make([]byte, 40) // 32 + 8
	for i := range block {
		block[i] = byte(i)
	}
	want := make([]byte, 0, 40)
	h0 := sha256.Sum256(append([]byte{0, 0, 0, 0}, block[:32]...))
	h1 := sha256.Sum256(append([]byte{0, 0, 0, 1}, block[32:]...))
	want = append(want, h0[:]...)
	want = append(want, h1[:8]...)
	diffuse(sha256.New(), block, make([]byte, 0, 32))
	if !bytes.Equal(block, want) {
		t.Fatalf("diffuse = %x, want %x", block, want)
	}
}

func TestHeaderChecksum(t *testing.T) {
	area := make([]byte, defaultHdrSize)
	h := binHeader{hdrSize: defaultHdrSize, seqID: 7, label: "lbl", checksumAlg: "sha256", uuid: "u-u-i-d", subsystem: "sub", hdrOffset: 0}
	h.salt[3] = 9
	encodeBinHeader(area, h)
	copy(area[binHeaderSize:], `{"x":1}`)
	if err := setChecksum("sha256", area); err != nil {
		t.Fatal(err)
	}
	// The checksum is sha256 over the area with the checksum field zeroed.
	z := bytes.Clone(area)
	clear(z[offChecksum : offChecksum+lenChecksum])
	sum := sha256.Sum256(z)
	if !bytes.Equal(area[offChecksum:offChecksum+32], sum[:]) {
		t.Fatal("checksum is not sha256 of the zeroed-field area")
	}
	if err := verifyChecksum("sha256", area); err != nil {
		t.Fatal(err)
	}
	got, err := decodeBinHeader(area)
	if err != nil {
		t.Fatal(err)
	}
	if got.seqID != 7 || got.label != "lbl" || got.uuid != "u-u-i-d" || got.subsystem != "sub" || got.salt != h.salt || got.hdrSize != defaultHdrSize {
		t.Fatalf("decoded %+v", got)
	}
	for _, off := range []int{0, 10, offChecksum + 5, 5000, defaultHdrSize - 1} {
		b := bytes.Clone(area)
		b[off] ^= 0x40
		if err := verifyChecksum("sha256", b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d not detected: %v", off, err)
		}
	}
	for _, n := range []uint64{0, 4096, 16384 + 4096, 8 << 20} {
		b := bytes.Clone(area)
		h.hdrSize = n
		encodeBinHeader(b, h)
		if _, err := decodeBinHeader(b); err == nil {
			t.Fatalf("hdr_size %d accepted", n)
		}
	}
}

// cryptsetup 2.6.1 luksFormat output, with a token, a priority and config flags added.
const sampleJSON = `{"keyslots":{"0":{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4000,"hash":"sha256"},"area":{"type":"raw","offset":"32768","size":"258048","encryption":"aes-xts-plain64","key_size":64},"kdf":{"type":"argon2id","time":4,"memory":32768,"cpus":2,"salt":"8pAUqIfxFheIIElFW2rLpHgZvCj+ZqVIpPlNiYBgXSc="},"priority":2}},"tokens":{"0":{"type":"systemd-tpm2","keyslots":["0"],"tpm2-blob":"AAAA","future":{"a":[1,2.5,"z"]}}},"segments":{"0":{"type":"crypt","offset":"16777216","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":4096}},"digests":{"0":{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":"VQu0jiJjPsWy6mmbbOJYwLvs/i0g0k5htn/vq8oafHA=","digest":"cREqCljOQZ9wGbBPzUB2gRYZUD7ijoTkQmiIJabwi/E="}},"config":{"json_size":"12288","keyslots_size":"16744448","flags":["allow-discards"]},"x-unknown":true}`

func TestJSONRoundTrip(t *testing.T) {
	md, err := parseMetadata([]byte(sampleJSON), defaultHdrSize)
	if err != nil {
		t.Fatal(err)
	}
	if md.unsupported != nil {
		t.Fatal(md.unsupported)
	}
	out, err := md.encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != sampleJSON {
		t.Fatalf("round trip changed the JSON:\n%s\n%s", out, sampleJSON)
	}
	ks := md.slots[0]
	if ks.priority != PriorityHigh || ks.kdf != (PBKDF{Type: "argon2id", Time: 4, MemoryKiB: 32768, Threads: 2}) || ks.areaOffset != 32768 || ks.digest != "0" {
		t.Fatalf("keyslot %+v", ks)
	}
	if md.segOffset != 16<<20 || md.segSize != -1 || md.sectorSize != 4096 || md.keyBytes() != 64 {
		t.Fatalf("segment %+v", md)
	}
	// Dropping the keyslot unassigns it from the digest and the token, and
	// keeps everything else.
	n := md.cloneObjects()
	if err := n.dropKeyslot(0); err != nil {
		t.Fatal(err)
	}
	out, _ = n.encode()
	for _, want := range []string{`"keyslots":{}`, `"tokens":{"0":{"type":"systemd-tpm2","keyslots":[],"tpm2-blob":"AAAA","future":{"a":[1,2.5,"z"]}}}`, `"digests":{"0":{"type":"pbkdf2","keyslots":[],"segments":["0"]`, `"x-unknown":true`} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("%s lacks %s", out, want)
		}
	}
	if _, err := parseMetadata(out, defaultHdrSize); err != nil {
		t.Fatal(err)
	}
}

func TestMetadataValidation(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		want           error
	}{
		{"number offset", `"offset":"32768"`, `"offset":32768`, ErrCorrupt},
		{"area outside", `"offset":"32768"`, `"offset":"16777216"`, ErrCorrupt},
		{"json_size", `"json_size":"12288"`, `"json_size":"4096"`, ErrCorrupt},
		{"dangling digest", `"keyslots":["0"],"segments"`, `"keyslots":["0","4"],"segments"`, ErrCorrupt},
		{"dangling token", `"keyslots":["0"],"tpm2-blob"`, `"keyslots":["9"],"tpm2-blob"`, ErrCorrupt},
		{"duplicate key", `"x-unknown":true`, `"x-unknown":true,"x-unknown":false`, ErrCorrupt},
		{"requirements", `"flags":["allow-discards"]`, `"requirements":{"mandatory":["online-reencrypt-v2"]}`, ErrUnsupported},
		{"unknown requirement", `"flags":["allow-discards"]`, `"requirements":{"mandatory":["quantum"]}`, ErrUnsupported},
		{"cipher", `"encryption":"aes-xts-plain64","sector_size"`, `"encryption":"serpent-xts-plain64","sector_size"`, ErrUnsupported},
		{"integrity", `"sector_size":4096}`, `"sector_size":4096,"integrity":{"type":"hmac(sha256)"}}`, ErrUnsupported},
		{"sector 1024", `"sector_size":4096`, `"sector_size":1024`, ErrUnsupported},
		{"two segments", `"segments":{"0":`, `"segments":{"1":{"type":"linear","offset":"0","size":"0"},"0":`, ErrUnsupported},
		{"reencrypt keyslot", `"type":"luks2","key_size"`, `"type":"reencrypt","key_size"`, ErrUnsupported},
		{"kdf", `"type":"argon2id"`, `"type":"scrypt"`, ErrUnsupported},
		{"huge memory", `"memory":32768`, `"memory":99999999`, ErrCorrupt},
		{"bad salt", `"salt":"8pAU`, `"salt":"!!!!`, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(sampleJSON, tc.old) {
				t.Fatalf("sample lacks %s", tc.old)
			}
			text := strings.Replace(sampleJSON, tc.old, tc.new, 1)
			md, err := parseMetadata([]byte(text), defaultHdrSize)
			if err == nil && md.unsupported != nil {
				err = md.unsupported
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFormatOptionsValidation(t *testing.T) {
	dev := newMemDev(20 << 20)
	_, _, err := Format(dev, []byte("x"), FormatOptions{KeyBits: 128, SectorSize: 1024, Label: strings.Repeat("l", 48), UUID: "nope", PBKDF: fastPBKDF2, DigestIterations: 1000})
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatal(err)
	}
	for _, field := range []string{"KeyBits", "SectorSize", "Label", "UUID"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	if dev.writes != 0 {
		t.Fatal("invalid Format wrote")
	}
	for _, p := range []PBKDF{{Type: "scrypt"}, {Type: "pbkdf2", Iterations: 10}, {Type: "argon2id", Time: 1, MemoryKiB: 1024, Threads: 1}, {Type: "argon2id", Time: 4, MemoryKiB: 8, Threads: 1}, {Type: "pbkdf2", Hash: "md5", Iterations: 5000}} {
		if _, _, err := Format(dev, []byte("x"), FormatOptions{PBKDF: p, DigestIterations: 1000}); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: %v", p, err)
		}
	}
	// Sector size default follows the data area alignment.
	odd := newMemDev(20<<20 + 512)
	v, _, err := Format(odd, []byte("x"), FormatOptions{PBKDF: fastPBKDF2, DigestIterations: 1000, UUID: "01234567-89ab-cdef-0123-456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if v.SectorSize() != 512 || v.UUID() != "01234567-89ab-cdef-0123-456789abcdef" {
		t.Fatalf("sector %d uuid %s", v.SectorSize(), v.UUID())
	}
	if _, _, err := Format(odd, []byte("x"), FormatOptions{PBKDF: fastPBKDF2, DigestIterations: 1000, SectorSize: 4096}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatal(err)
	}
}

func TestMemoryVolumeLifecycle(t *testing.T) {
	dev := newMemDev(17 << 20)
	opts := fastOpts()
	opts.Rand = seeded(3)
	opts.Label = "mem"
	v, key, err := Format(dev, []byte("a"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyBits() != 512 || v.SectorSize() != 4096 || v.Label() != "mem" {
		t.Fatalf("bits %d sector %d", v.KeyBits(), v.SectorSize())
	}
	if n, err := v.DataSize(); err != nil || n != 1<<20 {
		t.Fatalf("DataSize %d %v", n, err)
	}
	// Fill all 32 keyslots; the 33rd fails.
	for i := 1; i < maxKeyslots; i++ {
		if s, err := v.AddKey(key, []byte(fmt.Sprint("k", i)), -1, fastPBKDF2); err != nil || s != i {
			t.Fatalf("AddKey %d = %d, %v", i, s, err)
		}
	}
	if _, err := v.AddKey(key, []byte("z"), -1, fastPBKDF2); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("33rd keyslot: %v", err)
	}
	if _, err := v.AddKey(key, []byte("z"), 32, fastPBKDF2); !errors.Is(err, ErrNoSuchSlot) {
		t.Fatalf("slot 32: %v", err)
	}
	if k, s, err := v.Unlock([]byte("k31")); err != nil || s != 31 || !bytes.Equal(k, key) {
		t.Fatalf("Unlock k31 = %d %v", s, err)
	}
	// Area reuse: remove 3 and add again; the new area fits the hole.
	if err := v.RemoveKey(3); err != nil {
		t.Fatal(err)
	}
	if s, err := v.AddKey(key, []byte("k3b"), -1, fastPBKDF2); err != nil || s != 3 {
		t.Fatalf("re-add = %d, %v", s, err)
	}
	if _, err := v.ChangeKey([]byte("k3b"), []byte("k3c"), fastPBKDF2); err != nil {
		t.Fatal(err)
	}
	if _, err := v.UnlockSlot([]byte("k3c"), 3); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := v.Dump(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  31: luks2") || !strings.Contains(b.String(), "Label:         \tmem") {
		t.Fatalf("dump:\n%s", b.String())
	}
	// A re-formatted device under an open Volume is detected.
	if _, _, err := Format(dev, []byte("a"), fastOpts()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddKey(key, []byte("q"), -1, fastPBKDF2); !errors.Is(err, ErrChanged) {
		t.Fatalf("AddKey on reformatted device: %v", err)
	}
}

func TestPriority(t *testing.T) {
	dev := newMemDev(17 << 20)
	v, key, err := Format(dev, []byte("same"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddKey(key, []byte("same"), 4, fastPBKDF2); err != nil {
		t.Fatal(err)
	}
	// Mark slot 4 high priority and slot 0 ignore by editing metadata.
	v.mu.Lock()
	hs := v.mu.hs
	n := hs.md.cloneObjects()
	for id, p := range map[string]int{"0": PriorityIgnore, "4": PriorityHigh} {
		o, _ := parseObject(mustGet(t, n.keyslots, id))
		o.set("priority", mustRaw(p))
		raw, _ := o.MarshalJSON()
		n.keyslots.set(id, raw)
	}
	err = v.commitLocked(hs, n)
	v.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, s, err := v.Unlock([]byte("same")); err != nil || s != 4 {
		t.Fatalf("Unlock = slot %d, %v; want high-priority slot 4", s, err)
	}
	if err := v.RemoveKey(4); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Unlock([]byte("same")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("ignored slot used by Unlock: %v", err)
	}
	if _, err := v.UnlockSlot([]byte("same"), 0); err != nil {
		t.Fatal(err)
	}
	// ChangeKey keeps the priority (cryptsetup does too) only for tried slots;
	// ignored slots cannot be changed by passphrase search.
	if _, err := v.ChangeKey([]byte("same"), []byte("x"), fastPBKDF2); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, o *object, k string) []byte {
	t.Helper()
	v, ok := o.get(k)
	if !ok {
		t.Fatalf("no %s", k)
	}
	return v
}

func TestBenchmark(t *testing.T) {
	p, err := Benchmark(PBKDF{Type: "argon2id", MemoryKiB: 8 << 10, Threads: 1}, 20*time.Millisecond)
	if err != nil || p.Time < minArgonTime || p.MemoryKiB != 8<<10 {
		t.Fatalf("%v %v", p, err)
	}
	p, err = Benchmark(PBKDF{Type: "pbkdf2"}, 10*time.Millisecond)
	if err != nil || p.Iterations < minPBKDF2Iterations || p.Hash != "sha256" {
		t.Fatalf("%v %v", p, err)
	}
	p = PBKDF{Type: "argon2id", Time: 4}.withArgonDefaults()
	if p.MemoryKiB <= 0 || p.MemoryKiB > defaultArgonMemoryKiB || p.Threads < 1 || p.Threads > 4 {
		t.Fatalf("%v", p)
	}
}
