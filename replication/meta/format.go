package meta

import (
	"encoding/binary"
	"hash/crc32"
)

// Fixed geometry of format version 1.
const (
	// BlockSize is the number of data bytes one bitmap bit stands for
	// (DRBD's quick-sync bitmap granularity), and the unit of every
	// metadata I/O: each on-disk structure is one or more 4 KiB blocks at
	// 4 KiB-aligned offsets.
	BlockSize = 4096
	// ExtentSize is the size in bytes of an activity-log extent.
	ExtentSize = 4 << 20
	// BlocksPerExtent is the number of bitmap bits per extent.
	BlocksPerExtent = ExtentSize / BlockSize

	// ExtentsPerPage is the number of whole extents whose bits one bitmap
	// page holds. A page is 4 KiB: a 128-byte header and 31 × 128 bytes of
	// bits, so an extent's bits never straddle two pages.
	ExtentsPerPage = 31
	// BlocksPerPage is the number of bitmap bits (4 KiB data blocks) one
	// bitmap page holds: 31744, i.e. 124 MiB of data per page.
	BlocksPerPage = ExtentsPerPage * BlocksPerExtent

	// MinALExtents and MaxALExtents bound the activity-log size (DRBD's
	// al-extents limits); DefaultALExtents is DRBD 8.4's default.
	MinALExtents     = 7
	MaxALExtents     = 65534
	DefaultALExtents = 1237

	// ExtentsPerSlot is the number of extent numbers one 4 KiB activity
	// log slot holds.
	ExtentsPerSlot = (BlockSize - alHeaderSize) / 4

	formatVersion = 1

	pageHeaderSize = 128
	wordsPerPage   = BlocksPerPage / 64
	alHeaderSize   = 64
	minRingSlots   = 8
)

// Magic numbers, the first four bytes of each block kind.
const (
	magicSuper  = 0x484d5342 // "BSMH" little-endian: hastor metadata superblock
	magicAL     = 0x484d414c // activity-log slot
	magicBitmap = 0x484d4250 // bitmap page
)

// Block is the index of a 4 KiB block of the data area, which is also the
// index of its bit in the dirty bitmap. Byte offset = Block × BlockSize.
type Block uint64

// Extent is the index of a 4 MiB activity-log extent of the data area.
type Extent uint32

// BlockRange returns the blocks [first, end) that the byte range
// [off, off+n) touches, rounding outwards: a partial 4 KiB block counts as
// touched. n == 0 gives an empty range.
func BlockRange(off, n int64) (first, end Block) {
	if n <= 0 {
		return Block(off / BlockSize), Block(off / BlockSize)
	}
	return Block(off / BlockSize), Block((off + n + BlockSize - 1) / BlockSize)
}

// ExtentOf returns the extent holding block b.
func ExtentOf(b Block) Extent { return Extent(b / BlocksPerExtent) }

// FirstBlock returns the first block of extent e.
func (e Extent) FirstBlock() Block { return Block(e) * BlocksPerExtent }

// PageOfExtent returns the bitmap page holding extent e's bits.
func PageOfExtent(e Extent) int { return int(e / ExtentsPerPage) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockCRC returns the CRC32C of a metadata block with its checksum field
// (bytes 4 to 8) taken as zero.
func blockCRC(b []byte) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:4])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, b[8:])
}

// sealBlock stores the magic and checksum of a 4 KiB block.
func sealBlock(b []byte, magic uint32) {
	binary.LittleEndian.PutUint32(b[0:], magic)
	binary.LittleEndian.PutUint32(b[4:], blockCRC(b))
}

// checkBlock reports whether b is a BlockSize block with the given magic
// and a correct checksum.
func checkBlock(b []byte, magic uint32) bool {
	return len(b) == BlockSize &&
		binary.LittleEndian.Uint32(b[0:]) == magic &&
		binary.LittleEndian.Uint32(b[4:]) == blockCRC(b)
}
