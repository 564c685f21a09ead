package luks2

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
)

// hashByName returns a constructor for the hashes LUKS2 metadata may name
// for the AF splitter, PBKDF2 and digests.
func hashByName(name string) (func() hash.Hash, error) {
	switch name {
	case "sha256":
		return sha256.New, nil
	case "sha512":
		return sha512.New, nil
	case "sha1":
		return sha1.New, nil
	}
	return nil, fmt.Errorf("%w: hash %q", ErrUnsupported, name)
}

// diffuse replaces block with its diffusion (LUKS1 On-Disk Format
// Specification, AF splitter): the block is cut into hash-size pieces and
// piece i becomes H(be32(i) || piece_i); a short last piece is hashed the
// same way and the result truncated.
func diffuse(h hash.Hash, block []byte, sum []byte) {
	ds := h.Size()
	var idx [4]byte
	for i, off := 0, 0; off < len(block); i, off = i+1, off+ds {
		end := min(off+ds, len(block))
		h.Reset()
		binary.BigEndian.PutUint32(idx[:], uint32(i))
		h.Write(idx[:])
		h.Write(block[off:end])
		sum = h.Sum(sum[:0])
		copy(block[off:end], sum)
	}
	clear(sum)
}

// afSplit splits key into stripes blocks (len(key)*stripes bytes written to
// dst): blocks 0..n-2 are random, d is the running diffusion of their XOR,
// and the last block is key XOR d.
func afSplit(dst, key []byte, stripes int, newHash func() hash.Hash, rand io.Reader) error {
	n := len(key)
	if len(dst) < n*stripes || stripes < 1 {
		return fmt.Errorf("luks2: AF split buffer %d bytes, need %d", len(dst), n*stripes)
	}
	h := newHash()
	sum := make([]byte, 0, h.Size())
	d := make([]byte, n)
	defer clear(d)
	if _, err := io.ReadFull(rand, dst[:n*(stripes-1)]); err != nil {
		return fmt.Errorf("luks2: random AF stripes: %w", err)
	}
	for i := 0; i < stripes-1; i++ {
		xorInto(d, dst[i*n:(i+1)*n])
		diffuse(h, d, sum)
	}
	last := dst[(stripes-1)*n : stripes*n]
	for i := range last {
		last[i] = d[i] ^ key[i]
	}
	return nil
}

// afMerge is the inverse of afSplit: it writes the key (len(key) bytes)
// recovered from src.
func afMerge(key, src []byte, stripes int, newHash func() hash.Hash) error {
	n := len(key)
	if len(src) < n*stripes || stripes < 1 {
		return fmt.Errorf("luks2: AF merge input %d bytes, need %d", len(src), n*stripes)
	}
	h := newHash()
	sum := make([]byte, 0, h.Size())
	d := make([]byte, n)
	defer clear(d)
	for i := 0; i < stripes-1; i++ {
		xorInto(d, src[i*n:(i+1)*n])
		diffuse(h, d, sum)
	}
	last := src[(stripes-1)*n : stripes*n]
	for i := range key {
		key[i] = d[i] ^ last[i]
	}
	return nil
}

func xorInto(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
