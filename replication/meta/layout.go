package meta

import "fmt"

// Placement says where the metadata lives.
type Placement uint8

// Placements.
const (
	// Internal: at the end of the backing device, after the data area,
	// which is shorter than the device by the metadata size.
	Internal Placement = 1
	// External: on a separate device or file, from its offset 0; the whole
	// data device is data.
	External Placement = 2
)

func (p Placement) String() string {
	switch p {
	case Internal:
		return "internal"
	case External:
		return "external"
	}
	return fmt.Sprintf("Placement(%d)", uint8(p))
}

// Layout places the metadata structures on the metadata device. Every
// offset and size is a multiple of BlockSize. Build one with PlanInternal
// or PlanExternal; a Layout is a value and never changes.
//
// Internal, from low to high offsets at the end of the device:
// bitmap pages, activity-log ring, superblock copy 0, superblock copy 1
// (the superblocks are in the last 8 KiB so Open finds them without
// knowing the rest). External, from offset 0 of the metadata device:
// superblock copy 0, copy 1, activity-log ring, bitmap pages.
type Layout struct {
	Placement Placement
	// DataSize is the size in bytes of the data area [0, DataSize) of the
	// data device, a multiple of BlockSize. For Internal it is what is
	// left of the device after the metadata.
	DataSize int64
	// MetaOffset and MetaSize delimit the metadata area on the metadata
	// device (the data device itself for Internal).
	MetaOffset, MetaSize int64
	// SuperblockOffsets are the byte offsets of the two superblock copies.
	SuperblockOffsets [2]int64
	// ALOffset is the byte offset of the activity-log ring of ALSlots
	// 4 KiB slots; ALExtents is the number of extents the log holds.
	ALOffset  int64
	ALSlots   int
	ALExtents int
	// BitmapOffset is the byte offset of BitmapPages 4 KiB bitmap pages.
	BitmapOffset int64
	BitmapPages  int
}

// Blocks returns the number of 4 KiB blocks (bitmap bits) of the data area.
func (l Layout) Blocks() uint64 { return uint64(l.DataSize / BlockSize) }

// Extents returns the number of activity-log extents covering the data
// area (the last one may be partial).
func (l Layout) Extents() uint64 {
	return (l.Blocks() + BlocksPerExtent - 1) / BlocksPerExtent
}

// SlotsPerTransaction returns the number of 4 KiB ring slots one
// activity-log transaction of a log of alExtents extents may need.
func SlotsPerTransaction(alExtents int) int {
	return max(1, (alExtents+ExtentsPerSlot-1)/ExtentsPerSlot)
}

// ringSlots returns the size of the activity-log ring: room for two whole
// transactions at least, so that writing one never overwrites the one
// before it.
func ringSlots(alExtents int) int {
	return max(minRingSlots, 2*SlotsPerTransaction(alExtents))
}

// pagesFor returns the number of bitmap pages for dataSize bytes of data.
func pagesFor(dataSize int64) int {
	blocks := dataSize / BlockSize
	return int((blocks + BlocksPerPage - 1) / BlocksPerPage)
}

// MetaSizeFor returns the size in bytes of the metadata for dataSize bytes
// of data and an activity log of alExtents extents (for sizing an external
// metadata device).
func MetaSizeFor(dataSize int64, alExtents int) int64 {
	return int64(2+ringSlots(alExtents)+pagesFor(dataSize)) * BlockSize
}

func checkALExtents(alExtents int) error {
	if alExtents < MinALExtents || alExtents > MaxALExtents {
		return fmt.Errorf("%w: activity-log extents %d not in [%d, %d]", ErrInvalidLayout, alExtents, MinALExtents, MaxALExtents)
	}
	return nil
}

// PlanInternal lays out metadata at the end of a device of deviceSize
// bytes with an activity log of alExtents extents. The data area is the
// largest multiple of BlockSize that leaves room for the metadata; a
// trailing partial 4 KiB block of the device is unused.
func PlanInternal(deviceSize int64, alExtents int) (Layout, error) {
	if err := checkALExtents(alExtents); err != nil {
		return Layout{}, err
	}
	end := deviceSize &^ (BlockSize - 1)
	ring := ringSlots(alExtents)
	fixed := int64(2+ring) * BlockSize
	// At least one bitmap page and one data block.
	if end < fixed+2*BlockSize {
		return Layout{}, fmt.Errorf("%w: %d bytes cannot hold %d bytes of metadata and one data block", ErrDeviceTooSmall, deviceSize, fixed+BlockSize)
	}
	avail := end - fixed // for bitmap pages and data
	// k pages cover k×BlocksPerPage blocks and cost k blocks; try the two
	// page counts around the optimum and keep the larger data area.
	per := int64(BlocksPerPage) * BlockSize
	k := (avail + per + BlockSize - 1) / (per + BlockSize)
	var data int64
	for _, kk := range []int64{k - 1, k} {
		if kk < 1 {
			continue
		}
		d := min(kk*per, avail-kk*BlockSize) &^ (BlockSize - 1)
		if d > data && int64(pagesFor(d)) <= kk {
			data = d
		}
	}
	if data <= 0 {
		return Layout{}, fmt.Errorf("%w: %d bytes leave no data area", ErrDeviceTooSmall, deviceSize)
	}
	pages := pagesFor(data)
	l := Layout{
		Placement:   Internal,
		DataSize:    data,
		MetaSize:    fixed + int64(pages)*BlockSize,
		ALSlots:     ring,
		ALExtents:   alExtents,
		BitmapPages: pages,
	}
	l.MetaOffset = end - l.MetaSize
	l.BitmapOffset = l.MetaOffset
	l.ALOffset = l.BitmapOffset + int64(pages)*BlockSize
	l.SuperblockOffsets = [2]int64{end - 2*BlockSize, end - BlockSize}
	return l, nil
}

// PlanExternal lays out metadata from offset 0 of a metadata device of
// metaDevSize bytes, for a data area of dataSize bytes (a positive
// multiple of BlockSize) and an activity log of alExtents extents.
func PlanExternal(dataSize, metaDevSize int64, alExtents int) (Layout, error) {
	if err := checkALExtents(alExtents); err != nil {
		return Layout{}, err
	}
	if dataSize <= 0 || dataSize%BlockSize != 0 {
		return Layout{}, fmt.Errorf("%w: data size %d is not a positive multiple of %d", ErrInvalidLayout, dataSize, BlockSize)
	}
	need := MetaSizeFor(dataSize, alExtents)
	if metaDevSize < need {
		return Layout{}, fmt.Errorf("%w: metadata device has %d bytes, %d bytes of data with %d activity-log extents need %d", ErrDeviceTooSmall, metaDevSize, dataSize, alExtents, need)
	}
	ring := ringSlots(alExtents)
	return Layout{
		Placement:         External,
		DataSize:          dataSize,
		MetaOffset:        0,
		MetaSize:          need,
		SuperblockOffsets: [2]int64{0, BlockSize},
		ALOffset:          2 * BlockSize,
		ALSlots:           ring,
		ALExtents:         alExtents,
		BitmapOffset:      int64(2+ring) * BlockSize,
		BitmapPages:       pagesFor(dataSize),
	}, nil
}

// superblockOffsets returns where Open looks for the two superblock copies
// on a metadata device of devSize bytes.
func superblockOffsets(p Placement, devSize int64) ([2]int64, error) {
	switch p {
	case Internal:
		end := devSize &^ (BlockSize - 1)
		if end < 2*BlockSize {
			return [2]int64{}, fmt.Errorf("%w: %d bytes", ErrDeviceTooSmall, devSize)
		}
		return [2]int64{end - 2*BlockSize, end - BlockSize}, nil
	case External:
		if devSize < 2*BlockSize {
			return [2]int64{}, fmt.Errorf("%w: %d bytes", ErrDeviceTooSmall, devSize)
		}
		return [2]int64{0, BlockSize}, nil
	}
	return [2]int64{}, fmt.Errorf("%w: placement %v", ErrInvalidLayout, p)
}
