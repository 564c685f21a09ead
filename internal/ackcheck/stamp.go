package ackcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Block is the index of a checker block (BlockSize bytes) on the device.
type Block uint64

// Seq is a writer-wide write sequence number. 0 means "never written".
type Seq uint64

// Stamp layout: the header at the start of every written block.
const (
	magic     = "HSTRACK1"
	offBlock  = 8
	offSeq    = 16
	offSize   = 24
	offCRC    = 28
	HeaderLen = 32
	// MinBlockSize is the smallest block Stamp accepts.
	MinBlockSize = 64
)

// ErrBlockSize: a block size that is not a multiple of 8 of at least
// MinBlockSize bytes.
var ErrBlockSize = errors.New("ackcheck: invalid block size")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checkBlockSize(n int) error {
	if n < MinBlockSize || n%8 != 0 || n > 1<<24 {
		return fmt.Errorf("%w: %d", ErrBlockSize, n)
	}
	return nil
}

// splitmix64 step (a bijective mixer): the payload generator.
func splitmix(x *uint64) uint64 {
	*x += 0x9e3779b97f4a7c15
	z := *x
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func payloadSeed(b Block, s Seq) uint64 {
	x := uint64(b) ^ 0x6a09e667f3bcc908
	h := splitmix(&x)
	y := uint64(s) ^ h
	return splitmix(&y)
}

func blockCRC(p []byte) uint32 {
	c := crc32.Update(0, castagnoli, p[:offCRC])
	return crc32.Update(c, castagnoli, p[HeaderLen:])
}

// Stamp fills p (one whole block) as write s of block b. len(p) must be a
// valid block size.
func Stamp(p []byte, b Block, s Seq) {
	copy(p, magic)
	binary.LittleEndian.PutUint64(p[offBlock:], uint64(b))
	binary.LittleEndian.PutUint64(p[offSeq:], uint64(s))
	binary.LittleEndian.PutUint32(p[offSize:], uint32(len(p)))
	x := payloadSeed(b, s)
	for i := HeaderLen; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], splitmix(&x))
	}
	binary.LittleEndian.PutUint32(p[offCRC:], blockCRC(p))
}

// Kind classifies a block read back.
type Kind uint8

// Kinds of content.
const (
	KindZero    Kind = iota // all zeros: the initial content
	KindStamp               // a valid stamp of the expected block
	KindCorrupt             // neither: torn, garbled or misplaced
)

func (k Kind) String() string {
	switch k {
	case KindZero:
		return "zero"
	case KindStamp:
		return "stamp"
	case KindCorrupt:
		return "corrupt"
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// Observation is what Decode found in a block.
type Observation struct {
	Kind Kind
	// Seq is the stamp's sequence number (KindStamp, and KindCorrupt when
	// the header was readable).
	Seq Seq
	// Detail says why a block is corrupt.
	Detail string
}

// Decode classifies p, read from block b. It does not allocate.
func Decode(p []byte, b Block) Observation {
	if len(p) < MinBlockSize || len(p)%8 != 0 {
		return Observation{Kind: KindCorrupt, Detail: fmt.Sprintf("block of %d bytes", len(p))}
	}
	zero := true
	for i := 0; i < len(p); i += 8 {
		if binary.LittleEndian.Uint64(p[i:]) != 0 {
			zero = false
			break
		}
	}
	if zero {
		return Observation{Kind: KindZero}
	}
	if string(p[:len(magic)]) != magic {
		return Observation{Kind: KindCorrupt, Detail: "no stamp header"}
	}
	gotBlock := Block(binary.LittleEndian.Uint64(p[offBlock:]))
	s := Seq(binary.LittleEndian.Uint64(p[offSeq:]))
	if size := binary.LittleEndian.Uint32(p[offSize:]); int(size) != len(p) {
		return Observation{Kind: KindCorrupt, Seq: s, Detail: fmt.Sprintf("stamp for a %d-byte block", size)}
	}
	if c := blockCRC(p); c != binary.LittleEndian.Uint32(p[offCRC:]) {
		return Observation{Kind: KindCorrupt, Seq: s, Detail: "checksum mismatch (torn or garbled block)"}
	}
	if gotBlock != b {
		return Observation{Kind: KindCorrupt, Seq: s, Detail: fmt.Sprintf("stamp of block %d (misdirected write)", gotBlock)}
	}
	x := payloadSeed(b, s)
	for i := HeaderLen; i+8 <= len(p); i += 8 {
		if binary.LittleEndian.Uint64(p[i:]) != splitmix(&x) {
			return Observation{Kind: KindCorrupt, Seq: s, Detail: fmt.Sprintf("payload differs at byte %d", i)}
		}
	}
	return Observation{Kind: KindStamp, Seq: s}
}
