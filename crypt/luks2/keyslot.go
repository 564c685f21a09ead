package luks2

import (
	"crypto/aes"
	"crypto/hmac"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/crypto/xts"
)

const (
	// areaSectorSize is the sector size of keyslot area encryption; the
	// plain64 IV is the 512-byte sector number counted from the start of
	// the area (cryptsetup uses the area as a dm-crypt device of its own).
	areaSectorSize = 512
	// afStripes is the AF stripe count every LUKS implementation uses.
	afStripes = 4000
	saltSize  = 32
)

// areaCrypt en- or decrypts buf (a multiple of 512 bytes) in place with
// aes-xts-plain64, sector numbers starting at 0.
func areaCrypt(key, buf []byte, encrypt bool) error {
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		return fmt.Errorf("luks2: keyslot cipher: %w", err)
	}
	for s := 0; s*areaSectorSize < len(buf); s++ {
		sec := buf[s*areaSectorSize : (s+1)*areaSectorSize]
		if encrypt {
			c.Encrypt(sec, sec, uint64(s))
		} else {
			c.Decrypt(sec, sec, uint64(s))
		}
	}
	return nil
}

// afLength is the number of bytes of the area holding the split key,
// rounded up to whole 512-byte sectors.
func afLength(keySize, stripes int) int {
	n := keySize * stripes
	return (n + areaSectorSize - 1) / areaSectorSize * areaSectorSize
}

// openKeyslot derives the keyslot key from passphrase, decrypts the
// keyslot area and merges the AF stripes. It returns the candidate volume
// key, not yet checked against the digest.
func openKeyslot(st Storage, ks *keyslot, passphrase []byte) ([]byte, error) {
	n := afLength(ks.keySize, ks.stripes)
	if int64(n) > ks.areaSize {
		return nil, corruptf("keyslot %d area too small", ks.id)
	}
	buf := make([]byte, n)
	defer clear(buf)
	if _, err := st.ReadAt(buf, ks.areaOffset); err != nil {
		return nil, fmt.Errorf("luks2: read keyslot %d area: %w", ks.id, err)
	}
	dk, err := deriveKey(ks.kdf, passphrase, ks.salt, ks.areaKey)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	if err := areaCrypt(dk, buf, false); err != nil {
		return nil, err
	}
	h, err := hashByName(ks.afHash)
	if err != nil {
		return nil, err
	}
	key := make([]byte, ks.keySize)
	if err := afMerge(key, buf, ks.stripes, h); err != nil {
		clear(key)
		return nil, err
	}
	return key, nil
}

// computeDigest returns the pbkdf2 digest of a volume key.
func computeDigest(d *digest, key []byte) ([]byte, error) {
	return deriveKey(PBKDF{Type: "pbkdf2", Hash: d.hash, Iterations: d.iterations}, key, d.salt, len(d.digest))
}

// verifyDigest reports whether key matches digest d.
func verifyDigest(d *digest, key []byte) (bool, error) {
	got, err := computeDigest(d, key)
	if err != nil {
		return false, err
	}
	return hmac.Equal(got, d.digest), nil
}

// sealedKeyslot is a new keyslot: its JSON and its encrypted area.
type sealedKeyslot struct {
	json jsonKeyslot
	area []byte // encrypted AF material, afLength bytes
}

// sealKeyslot builds a keyslot holding key under passphrase with the
// (resolved) kdf, its area at areaOffset.
func sealKeyslot(key, passphrase []byte, kdf PBKDF, areaOffset, areaSize int64, rand io.Reader) (*sealedKeyslot, error) {
	salt := make([]byte, saltSize)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return nil, fmt.Errorf("luks2: random salt: %w", err)
	}
	areaKey := len(key) // aes-xts keyslot cipher with the volume key's size, as cryptsetup does
	dk, err := deriveKey(kdf, passphrase, salt, areaKey)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	buf := make([]byte, afLength(len(key), afStripes))
	h, _ := hashByName("sha256")
	if err := afSplit(buf, key, afStripes, h, rand); err != nil {
		clear(buf)
		return nil, err
	}
	if err := areaCrypt(dk, buf, true); err != nil {
		clear(buf)
		return nil, err
	}
	j := jsonKeyslot{
		Type:    "luks2",
		KeySize: len(key),
		AF:      jsonAF{Type: "luks1", Stripes: afStripes, Hash: "sha256"},
		Area: jsonArea{Type: "raw", Offset: strconv.FormatInt(areaOffset, 10), Size: strconv.FormatInt(areaSize, 10),
			Encryption: "aes-xts-plain64", KeySize: areaKey},
		KDF: jsonKDF{Type: kdf.Type, Salt: base64.StdEncoding.EncodeToString(salt)},
	}
	if kdf.Type == "pbkdf2" {
		j.KDF.Hash, j.KDF.Iterations = kdf.Hash, int64(kdf.Iterations)
	} else {
		j.KDF.Time, j.KDF.Memory, j.KDF.CPUs = int64(kdf.Time), int64(kdf.MemoryKiB), int64(kdf.Threads)
	}
	return &sealedKeyslot{json: j, area: buf}, nil
}

// areaSizeFor is the keyslot area size for a key of keySize bytes:
// the AF material rounded up to 4096 bytes (258048 for 64 bytes).
func areaSizeFor(keySize int) int64 {
	n := int64(keySize * afStripes)
	return (n + keyslotsAlign - 1) / keyslotsAlign * keyslotsAlign
}
