package luks2

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
)

// Binary header layout (LUKS2 On-Disk Format Specification §2.1, struct
// luks2_hdr_disk). All integers are big-endian.
const (
	binHeaderSize = 4096

	offMagic       = 0   // [6]byte
	offVersion     = 6   // uint16
	offHdrSize     = 8   // uint64, binary header + JSON area
	offSeqID       = 16  // uint64
	offLabel       = 24  // [48]byte
	offChecksumAlg = 72  // [32]byte
	offSalt        = 104 // [64]byte
	offUUID        = 168 // [40]byte
	offSubsystem   = 208 // [48]byte
	offHdrOffset   = 256 // uint64
	offChecksum    = 448 // [64]byte

	lenLabel       = 48
	lenChecksumAlg = 32
	lenSalt        = 64
	lenUUID        = 40
	lenSubsystem   = 48
	lenChecksum    = 64

	// defaultHdrSize is what cryptsetup writes: 16 KiB metadata (4 KiB
	// binary header + 12 KiB JSON) per copy.
	defaultHdrSize = 16 << 10
	minHdrSize     = 16 << 10
	maxHdrSize     = 4 << 20
)

var (
	magicPrimary   = []byte("LUKS\xba\xbe")
	magicSecondary = []byte("SKUL\xba\xbe")
)

// validHdrSize reports whether n is one of the metadata sizes the
// specification allows: 16 KiB, 32 KiB, ... 4 MiB (powers of two).
func validHdrSize(n uint64) bool {
	return n >= minHdrSize && n <= maxHdrSize && n&(n-1) == 0
}

// hdrSizes lists all allowed metadata sizes, smallest first; the secondary
// header is searched at these offsets when the primary is unreadable.
func hdrSizes() []int64 {
	var s []int64
	for n := int64(minHdrSize); n <= maxHdrSize; n <<= 1 {
		s = append(s, n)
	}
	return s
}

// binHeader is the decoded binary header of one copy.
type binHeader struct {
	secondary   bool
	hdrSize     uint64
	seqID       uint64
	label       string
	checksumAlg string
	salt        [lenSalt]byte
	uuid        string
	subsystem   string
	hdrOffset   uint64
}

// cstring returns b up to its first NUL byte.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// hasMagic reports which magic (if any) b starts with.
func hasMagic(b []byte) (primary, secondary bool) {
	return bytes.HasPrefix(b, magicPrimary), bytes.HasPrefix(b, magicSecondary)
}

// decodeBinHeader decodes the first 4096 bytes of a header copy. It checks
// the magic and version only; the checksum is checked by verifyChecksum.
func decodeBinHeader(b []byte) (binHeader, error) {
	var h binHeader
	if len(b) < binHeaderSize {
		return h, fmt.Errorf("%w: binary header is %d bytes, need %d", ErrTruncated, len(b), binHeaderSize)
	}
	p, s := hasMagic(b)
	if !p && !s {
		return h, fmt.Errorf("%w: no LUKS magic", ErrNotLUKS2)
	}
	h.secondary = s
	if v := binary.BigEndian.Uint16(b[offVersion:]); v != 2 {
		return h, fmt.Errorf("%w: header version %d (only LUKS2 is supported)", ErrNotLUKS2, v)
	}
	h.hdrSize = binary.BigEndian.Uint64(b[offHdrSize:])
	h.seqID = binary.BigEndian.Uint64(b[offSeqID:])
	h.label = cstring(b[offLabel : offLabel+lenLabel])
	h.checksumAlg = cstring(b[offChecksumAlg : offChecksumAlg+lenChecksumAlg])
	copy(h.salt[:], b[offSalt:offSalt+lenSalt])
	h.uuid = cstring(b[offUUID : offUUID+lenUUID])
	h.subsystem = cstring(b[offSubsystem : offSubsystem+lenSubsystem])
	h.hdrOffset = binary.BigEndian.Uint64(b[offHdrOffset:])
	if !validHdrSize(h.hdrSize) {
		return h, fmt.Errorf("%w: header size %d is not a power of two between 16 KiB and 4 MiB", ErrCorrupt, h.hdrSize)
	}
	return h, nil
}

// encodeBinHeader writes h into the first 4096 bytes of area, zeroing all
// padding and the checksum field.
func encodeBinHeader(area []byte, h binHeader) {
	b := area[:binHeaderSize]
	clear(b)
	if h.secondary {
		copy(b[offMagic:], magicSecondary)
	} else {
		copy(b[offMagic:], magicPrimary)
	}
	binary.BigEndian.PutUint16(b[offVersion:], 2)
	binary.BigEndian.PutUint64(b[offHdrSize:], h.hdrSize)
	binary.BigEndian.PutUint64(b[offSeqID:], h.seqID)
	copy(b[offLabel:offLabel+lenLabel-1], h.label)
	copy(b[offChecksumAlg:offChecksumAlg+lenChecksumAlg-1], h.checksumAlg)
	copy(b[offSalt:offSalt+lenSalt], h.salt[:])
	copy(b[offUUID:offUUID+lenUUID-1], h.uuid)
	copy(b[offSubsystem:offSubsystem+lenSubsystem-1], h.subsystem)
	binary.BigEndian.PutUint64(b[offHdrOffset:], h.hdrOffset)
}

// checksumHash returns the hash named by a binary header's checksum_alg.
func checksumHash(alg string) (hash.Hash, error) {
	switch alg {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	case "sha1":
		return sha1.New(), nil
	}
	return nil, fmt.Errorf("%w: header checksum algorithm %q", ErrUnsupported, alg)
}

// computeChecksum hashes the whole header area (binary header + JSON area)
// with the checksum field treated as zero, as the specification requires.
func computeChecksum(alg string, area []byte) ([]byte, error) {
	h, err := checksumHash(alg)
	if err != nil {
		return nil, err
	}
	var zero [lenChecksum]byte
	h.Write(area[:offChecksum])
	h.Write(zero[:])
	h.Write(area[offChecksum+lenChecksum:])
	return h.Sum(nil), nil
}

// setChecksum fills the checksum field of a fully encoded header area.
func setChecksum(alg string, area []byte) error {
	sum, err := computeChecksum(alg, area)
	if err != nil {
		return err
	}
	clear(area[offChecksum : offChecksum+lenChecksum])
	copy(area[offChecksum:], sum)
	return nil
}

// verifyChecksum checks the checksum field of a header area.
func verifyChecksum(alg string, area []byte) error {
	sum, err := computeChecksum(alg, area)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	stored := area[offChecksum : offChecksum+len(sum)]
	if subtle.ConstantTimeCompare(sum, stored) != 1 {
		return fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	return nil
}
