package meta

import (
	"encoding/binary"
	"fmt"
)

// Activity-log slot on-disk layout (little-endian, one 4 KiB block); bytes
// not listed are zero. A transaction is written as parts consecutive slots
// of the ring (wrapping), each holding up to ExtentsPerSlot extents.
const (
	alMagic = 0  // u32 magicAL
	alCRC   = 4  // u32 CRC32C of the block with this field zero
	alSeq   = 8  // u64 transaction sequence number
	alPart  = 16 // u16 index of this slot in the transaction
	alParts = 18 // u16 number of slots of the transaction
	alCount = 20 // u16 extents in this slot
	alTotal = 24 // u32 extents in the transaction
	// alHeaderSize (64): extent numbers, u32 each, follow.
)

// EncodeTransaction writes the slots of a transaction with sequence seq
// recording active as the active set into dst, which must hold
// SlotsPerTransaction(len(active)) × BlockSize bytes at least, and returns
// the number of slots written.
func EncodeTransaction(seq uint64, active []Extent, dst []byte) int {
	parts := SlotsPerTransaction(len(active))
	le := binary.LittleEndian
	for p := range parts {
		s := dst[p*BlockSize : (p+1)*BlockSize]
		clear(s)
		chunk := active[min(p*ExtentsPerSlot, len(active)):min((p+1)*ExtentsPerSlot, len(active))]
		le.PutUint64(s[alSeq:], seq)
		le.PutUint16(s[alPart:], uint16(p))
		le.PutUint16(s[alParts:], uint16(parts))
		le.PutUint16(s[alCount:], uint16(len(chunk)))
		le.PutUint32(s[alTotal:], uint32(len(active)))
		for i, e := range chunk {
			le.PutUint32(s[alHeaderSize+4*i:], uint32(e))
		}
		sealBlock(s, magicAL)
	}
	return parts
}

type alSlot struct {
	valid              bool
	seq                uint64
	part, parts, count int
	total              int
}

// decodeSlot checks one ring slot.
func decodeSlot(s []byte, maxParts int, extents uint64) alSlot {
	if !checkBlock(s, magicAL) {
		return alSlot{}
	}
	le := binary.LittleEndian
	h := alSlot{
		seq:   le.Uint64(s[alSeq:]),
		part:  int(le.Uint16(s[alPart:])),
		parts: int(le.Uint16(s[alParts:])),
		count: int(le.Uint16(s[alCount:])),
		total: int(le.Uint32(s[alTotal:])),
	}
	if h.parts < 1 || h.parts > maxParts || h.part >= h.parts || h.count > ExtentsPerSlot || h.total > h.parts*ExtentsPerSlot {
		return alSlot{}
	}
	for i := range h.count {
		if uint64(le.Uint32(s[alHeaderSize+4*i:])) >= extents {
			return alSlot{}
		}
	}
	h.valid = true
	return h
}

// Recovery is what the activity-log ring says after a crash.
type Recovery struct {
	// Found is false for a ring holding no complete transaction (a fresh
	// or cleanly emptied log reads as one with no extents).
	Found bool
	// Seq is the sequence number of the transaction recovered.
	Seq uint64
	// Active are the extents that transaction recorded active: every
	// write that was in flight at the crash lies in one of them. The
	// caller marks them out of sync.
	Active []Extent
	// NextSlot is the ring slot to write the next transaction at, and
	// NextSeq its sequence number (above every sequence number seen, so
	// that slots of a torn transaction are never mistaken for parts of a
	// new one).
	NextSlot int
	NextSeq  uint64
}

// Recover reads the activity-log ring (ring holds whole 4 KiB slots) of a
// log of alExtents extents over a data area of extents extents, and
// returns the newest transaction whose every slot is intact. A torn or
// partly written transaction is ignored: it was never committed (its
// writes never started), and the one before it is still whole because
// the ring holds two transactions at least.
func Recover(ring []byte, alExtents int, extents uint64) (Recovery, error) {
	n := len(ring) / BlockSize
	if n == 0 || len(ring)%BlockSize != 0 {
		return Recovery{}, fmt.Errorf("%w: activity-log ring of %d bytes", ErrCorrupt, len(ring))
	}
	maxParts := SlotsPerTransaction(alExtents)
	slots := make([]alSlot, n)
	var maxSeq uint64
	for i := range slots {
		slots[i] = decodeSlot(ring[i*BlockSize:(i+1)*BlockSize], maxParts, extents)
		if slots[i].valid {
			maxSeq = max(maxSeq, slots[i].seq)
		}
	}
	best := -1
	for i, s := range slots {
		if !s.valid || s.part != 0 || (best >= 0 && s.seq <= slots[best].seq) {
			continue
		}
		if s.parts > n || s.total > alExtents {
			continue
		}
		sum := 0
		whole := true
		for k := range s.parts {
			t := slots[(i+k)%n]
			if !t.valid || t.seq != s.seq || t.part != k || t.parts != s.parts || t.total != s.total {
				whole = false
				break
			}
			sum += t.count
		}
		if whole && sum == s.total {
			best = i
		}
	}
	r := Recovery{NextSeq: maxSeq + 1}
	if best < 0 {
		return r, nil
	}
	s := slots[best]
	r.Found = true
	r.Seq = s.seq
	r.NextSlot = (best + s.parts) % n
	r.Active = make([]Extent, 0, s.total)
	le := binary.LittleEndian
	for k := range s.parts {
		b := ring[((best+k)%n)*BlockSize:]
		for j := range slots[(best+k)%n].count {
			r.Active = append(r.Active, Extent(le.Uint32(b[alHeaderSize+4*j:])))
		}
	}
	return r, nil
}
