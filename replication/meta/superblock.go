package meta

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Flags are the state bits a superblock records.
type Flags uint64

// The flags. Their meaning follows DRBD's metadata flags; the replication
// layer decides when to set and clear them and persists them with
// Store.WriteSuperblock before acting on them.
const (
	// FlagConsistent: the local data is a consistent image of some
	// generation (not a sync target in the middle of a resync).
	FlagConsistent Flags = 1 << iota
	// FlagWasUpToDate: the data was UpToDate when last written.
	FlagWasUpToDate
	// FlagPrimary: the node is primary. Set before the first write as
	// primary, cleared on a clean demotion; found set on Load, it means the
	// node crashed as primary.
	FlagPrimary
	// FlagCrashedPrimary: the node went down as primary without a clean
	// demotion; cleared once a resync with the peer has finished.
	FlagCrashedPrimary
	// FlagPeerOutdated: the peer's disk is known to be Outdated (fenced).
	FlagPeerOutdated
	// FlagFullSync: a full sync is needed (every bit is to be set).
	FlagFullSync
	// FlagResyncInProgress: a resync was running; it resumes from
	// Superblock.ResyncPos.
	FlagResyncInProgress
	// FlagTiebreak: this node breaks generation-identifier ties.
	FlagTiebreak

	knownFlags = FlagTiebreak<<1 - 1
)

var flagNames = []string{"consistent", "was-up-to-date", "primary", "crashed-primary", "peer-outdated", "full-sync", "resync-in-progress", "tiebreak"}

func (f Flags) String() string {
	var parts []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if rest := f &^ knownFlags; rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint64(rest)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Superblock is the fixed part of the metadata. The generation UUIDs are
// opaque here (package genid gives them meaning).
type Superblock struct {
	// Seq orders superblock writes; Store.WriteSuperblock assigns it.
	Seq uint64
	// Placement, DataSize and ALExtents describe the layout; they are set
	// by Create and never change afterwards.
	Placement Placement
	DataSize  int64
	ALExtents int
	// Flags are the state bits.
	Flags Flags
	// CurrentUUID, BitmapUUID and HistoryUUIDs are the generation
	// identifiers: current, bitmap, history[0], history[1].
	CurrentUUID  uint64
	BitmapUUID   uint64
	HistoryUUIDs [2]uint64
	// ResyncPos is the block a resync resumes from when
	// FlagResyncInProgress is set (resync runs in block order).
	ResyncPos Block
}

// Superblock on-disk layout (little-endian, one 4 KiB block); bytes not
// listed are zero.
const (
	sbMagic       = 0   // u32 magicSuper
	sbCRC         = 4   // u32 CRC32C of the block with this field zero
	sbVersion     = 8   // u32 formatVersion
	sbPlacement   = 12  // u32 1 internal, 2 external
	sbSeq         = 16  // u64
	sbDataSize    = 24  // u64 bytes
	sbBlockSize   = 32  // u32 BlockSize
	sbExtentSize  = 36  // u32 ExtentSize
	sbALExtents   = 40  // u32
	sbALSlots     = 44  // u32 (derived; checked)
	sbBitmapPages = 48  // u64 (derived; checked)
	sbFlags       = 56  // u64
	sbUUIDs       = 64  // 4 × u64: current, bitmap, history0, history1
	sbResyncPos   = 96  // u64 block
	sbEnd         = 104 // first reserved byte
)

// EncodeSuperblock writes sb into dst, which must be BlockSize bytes.
func EncodeSuperblock(sb *Superblock, dst []byte) {
	_ = dst[BlockSize-1]
	clear(dst[:BlockSize])
	le := binary.LittleEndian
	le.PutUint32(dst[sbVersion:], formatVersion)
	le.PutUint32(dst[sbPlacement:], uint32(sb.Placement))
	le.PutUint64(dst[sbSeq:], sb.Seq)
	le.PutUint64(dst[sbDataSize:], uint64(sb.DataSize))
	le.PutUint32(dst[sbBlockSize:], BlockSize)
	le.PutUint32(dst[sbExtentSize:], ExtentSize)
	le.PutUint32(dst[sbALExtents:], uint32(sb.ALExtents))
	le.PutUint32(dst[sbALSlots:], uint32(ringSlots(sb.ALExtents)))
	le.PutUint64(dst[sbBitmapPages:], uint64(pagesFor(sb.DataSize)))
	le.PutUint64(dst[sbFlags:], uint64(sb.Flags))
	le.PutUint64(dst[sbUUIDs:], sb.CurrentUUID)
	le.PutUint64(dst[sbUUIDs+8:], sb.BitmapUUID)
	le.PutUint64(dst[sbUUIDs+16:], sb.HistoryUUIDs[0])
	le.PutUint64(dst[sbUUIDs+24:], sb.HistoryUUIDs[1])
	le.PutUint64(dst[sbResyncPos:], uint64(sb.ResyncPos))
	sealBlock(dst[:BlockSize], magicSuper)
}

// DecodeSuperblock parses and validates one superblock copy. It fails with
// ErrCorrupt (bad length, magic, checksum or field) or ErrVersion.
func DecodeSuperblock(src []byte) (Superblock, error) {
	if len(src) != BlockSize {
		return Superblock{}, fmt.Errorf("%w: superblock is %d bytes, want %d", ErrCorrupt, len(src), BlockSize)
	}
	le := binary.LittleEndian
	if m := le.Uint32(src[sbMagic:]); m != magicSuper {
		return Superblock{}, fmt.Errorf("%w: superblock magic %#x", ErrCorrupt, m)
	}
	if c := le.Uint32(src[sbCRC:]); c != blockCRC(src) {
		return Superblock{}, fmt.Errorf("%w: superblock checksum %#x, computed %#x", ErrCorrupt, c, blockCRC(src))
	}
	if v := le.Uint32(src[sbVersion:]); v != formatVersion {
		return Superblock{}, fmt.Errorf("%w: version %d", ErrVersion, v)
	}
	sb := Superblock{
		Placement:    Placement(le.Uint32(src[sbPlacement:])),
		Seq:          le.Uint64(src[sbSeq:]),
		Flags:        Flags(le.Uint64(src[sbFlags:])),
		CurrentUUID:  le.Uint64(src[sbUUIDs:]),
		BitmapUUID:   le.Uint64(src[sbUUIDs+8:]),
		HistoryUUIDs: [2]uint64{le.Uint64(src[sbUUIDs+16:]), le.Uint64(src[sbUUIDs+24:])},
		ResyncPos:    Block(le.Uint64(src[sbResyncPos:])),
	}
	ds := le.Uint64(src[sbDataSize:])
	al := le.Uint32(src[sbALExtents:])
	switch {
	case sb.Placement != Internal && sb.Placement != External:
		return Superblock{}, fmt.Errorf("%w: placement %d", ErrCorrupt, sb.Placement)
	case le.Uint32(src[sbBlockSize:]) != BlockSize:
		return Superblock{}, fmt.Errorf("%w: bitmap block size %d", ErrCorrupt, le.Uint32(src[sbBlockSize:]))
	case le.Uint32(src[sbExtentSize:]) != ExtentSize:
		return Superblock{}, fmt.Errorf("%w: extent size %d", ErrCorrupt, le.Uint32(src[sbExtentSize:]))
	case ds == 0 || ds%BlockSize != 0 || ds > 1<<62:
		return Superblock{}, fmt.Errorf("%w: data size %d", ErrCorrupt, ds)
	case al < MinALExtents || al > MaxALExtents:
		return Superblock{}, fmt.Errorf("%w: activity-log extents %d", ErrCorrupt, al)
	case sb.Flags&^knownFlags != 0:
		return Superblock{}, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, uint64(sb.Flags&^knownFlags))
	}
	sb.DataSize = int64(ds)
	sb.ALExtents = int(al)
	if s := le.Uint32(src[sbALSlots:]); s != uint32(ringSlots(sb.ALExtents)) {
		return Superblock{}, fmt.Errorf("%w: activity-log ring of %d slots, want %d", ErrCorrupt, s, ringSlots(sb.ALExtents))
	}
	if p := le.Uint64(src[sbBitmapPages:]); p != uint64(pagesFor(sb.DataSize)) {
		return Superblock{}, fmt.Errorf("%w: %d bitmap pages, want %d", ErrCorrupt, p, pagesFor(sb.DataSize))
	}
	if uint64(sb.ResyncPos) > uint64(sb.DataSize/BlockSize) {
		return Superblock{}, fmt.Errorf("%w: resync position %d beyond %d blocks", ErrCorrupt, sb.ResyncPos, sb.DataSize/BlockSize)
	}
	for i := sbEnd; i < BlockSize; i++ {
		if src[i] != 0 {
			return Superblock{}, fmt.Errorf("%w: reserved byte %d is %#x", ErrCorrupt, i, src[i])
		}
	}
	return sb, nil
}
