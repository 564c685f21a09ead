package meta

import (
	"errors"
	"fmt"

	"hastor/blockdev"
)

// flushChunkPages is the number of consecutive bitmap pages a Store writes
// with one WriteAt.
const flushChunkPages = 64

// StoreStats are the Store's I/O counters (DRBD's al-writes and bm-writes
// are ALWrites and BitmapWrites).
type StoreStats struct {
	SuperblockWrites uint64 // superblock copies written
	ALWrites         uint64 // activity-log transactions written
	BitmapWrites     uint64 // bitmap pages written
	Flushes          uint64 // device flushes
}

// Store reads and writes the metadata on a blockdev.Device: the only part
// of this package that does I/O. Every write is followed by a Flush before
// the call returns, and each call orders its writes as its doc says.
//
// A Store is not safe for concurrent use: the resource's driver goroutine
// owns it, with the Bitmap and ActivityLog it persists. After any error
// other than ErrLayoutMismatch the metadata device must be treated as
// failed (blockdev: a failed flush leaves durability unknown); the
// resource detaches it.
type Store struct {
	dev    blockdev.Device
	layout Layout
	pool   *blockdev.Pool

	sb     Superblock // last one written or read
	alNext int        // ring slot of the next transaction
	stats  StoreStats

	blk   *blockdev.Buf // one block
	txBuf *blockdev.Buf // SlotsPerTransaction blocks
	chunk *blockdev.Buf // flushChunkPages blocks
}

func newStore(dev blockdev.Device, l Layout) *Store {
	pool := blockdev.NewPool()
	return &Store{
		dev:    dev,
		layout: l,
		pool:   pool,
		blk:    pool.Get(BlockSize),
		txBuf:  pool.Get(SlotsPerTransaction(l.ALExtents) * BlockSize),
		chunk:  pool.Get(flushChunkPages * BlockSize),
	}
}

// Layout returns the metadata layout.
func (s *Store) Layout() Layout { return s.layout }

// Superblock returns the last superblock written or loaded.
func (s *Store) Superblock() Superblock { return s.sb }

// Stats returns the I/O counters.
func (s *Store) Stats() StoreStats { return s.stats }

func (s *Store) writeAt(p []byte, off int64, what string) error {
	if _, err := s.dev.WriteAt(p, off); err != nil {
		return fmt.Errorf("meta: write %s at %d: %w", what, off, err)
	}
	return nil
}

func (s *Store) flush(what string) error {
	s.stats.Flushes++
	if err := s.dev.Flush(); err != nil {
		return fmt.Errorf("meta: flush after %s: %w", what, err)
	}
	return nil
}

func checkDevice(dev blockdev.Device, l Layout) error {
	if l.MetaOffset+l.MetaSize > dev.Size() {
		return fmt.Errorf("%w: metadata ends at %d, device has %d bytes", ErrLayoutMismatch, l.MetaOffset+l.MetaSize, dev.Size())
	}
	if l.Placement == Internal && l.DataSize > l.MetaOffset {
		return fmt.Errorf("%w: data area overlaps internal metadata", ErrLayoutMismatch)
	}
	return nil
}

// Create writes fresh metadata for layout l on dev (the data device for
// Internal, the metadata device for External): the superblock sb (its
// layout fields are taken from l, its Seq is assigned) and a bitmap with
// every bit set if allSet (a new resource that needs a full sync) or clear.
// Order: both superblock copies are zeroed and flushed first (so that a
// crash part-way leaves no valid old metadata to be mistaken for the new),
// then the activity-log ring is zeroed and the bitmap written, flushed,
// and last the two superblock copies are written, each flushed.
func Create(dev blockdev.Device, l Layout, sb Superblock, allSet bool) (*Store, error) {
	if err := checkDevice(dev, l); err != nil {
		return nil, err
	}
	s := newStore(dev, l)
	zero := s.chunk.B
	clear(zero)
	for _, off := range l.SuperblockOffsets {
		if err := s.writeAt(zero[:BlockSize], off, "superblock"); err != nil {
			return nil, err
		}
	}
	if err := s.flush("clearing superblocks"); err != nil {
		return nil, err
	}
	for i := 0; i < l.ALSlots; i += flushChunkPages {
		n := min(flushChunkPages, l.ALSlots-i)
		if err := s.writeAt(zero[:n*BlockSize], l.ALOffset+int64(i)*BlockSize, "activity log"); err != nil {
			return nil, err
		}
	}
	bm := NewBitmap(l.Blocks())
	if allSet {
		bm.SetRange(0, Block(l.Blocks()))
	}
	for p := range bm.Pages() {
		bm.MarkDirty(p)
	}
	if err := s.FlushBitmap(bm); err != nil {
		return nil, err
	}
	sb.Placement, sb.DataSize, sb.ALExtents, sb.Seq = l.Placement, l.DataSize, l.ALExtents, 0
	s.sb = sb
	for range 2 {
		if err := s.WriteSuperblock(sb); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Open finds the metadata on dev (the data device for Internal, the
// metadata device for External): it reads both superblock copies, keeps
// the valid one with the highest Seq, and checks that it describes dev.
// For External the caller checks that Layout().DataSize matches the data
// device. Call Load next.
func Open(dev blockdev.Device, p Placement) (*Store, error) {
	offs, err := superblockOffsets(p, dev.Size())
	if err != nil {
		return nil, err
	}
	pool := blockdev.NewPool()
	buf := pool.Get(BlockSize)
	defer pool.Put(buf)
	var (
		best  Superblock
		found bool
		errs  []error
	)
	for i, off := range offs {
		if _, err := dev.ReadAt(buf.B, off); err != nil {
			return nil, fmt.Errorf("meta: read superblock %d at %d: %w", i, off, err)
		}
		sb, err := DecodeSuperblock(buf.B)
		if err != nil {
			errs = append(errs, fmt.Errorf("copy %d at %d: %w", i, off, err))
			continue
		}
		if !found || sb.Seq > best.Seq {
			best, found = sb, true
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %w", ErrNoMetadata, errors.Join(errs...))
	}
	if best.Placement != p {
		return nil, fmt.Errorf("%w: superblock says %v metadata, opened as %v", ErrLayoutMismatch, best.Placement, p)
	}
	var l Layout
	if p == Internal {
		l, err = PlanInternal(dev.Size(), best.ALExtents)
	} else {
		l, err = PlanExternal(best.DataSize, dev.Size(), best.ALExtents)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLayoutMismatch, err)
	}
	if l.DataSize != best.DataSize {
		return nil, fmt.Errorf("%w: superblock data size %d, device gives %d (resized?)", ErrLayoutMismatch, best.DataSize, l.DataSize)
	}
	s := newStore(dev, l)
	s.sb = best
	return s, nil
}

// Loaded is the metadata state after Load.
type Loaded struct {
	Superblock Superblock
	// Bitmap holds the on-disk bitmap, with every block of Recovered
	// extents and of TornPages set (and persisted).
	Bitmap *Bitmap
	// AL is an empty activity log continuing the on-disk sequence.
	AL *ActivityLog
	// Recovered are the extents the activity log held at the last crash or
	// shutdown (DRBD's "marked additional ... as out-of-sync based on AL").
	Recovered []Extent
	// TornPages are the bitmap pages that failed their checksum and were
	// taken as all ones.
	TornPages []int
}

// Load reads the activity-log ring and the bitmap, then performs the
// crash recovery: it sets the bits of every extent the log recorded
// active (the writes the peer may lack after a primary crash) and treats
// torn bitmap pages as all ones, then writes and flushes the pages it
// changed, so that the returned, empty ActivityLog may forget those
// extents. Superblock flags are returned as read: the caller decides, e.g.,
// that FlagPrimary found set means a crashed primary.
func (s *Store) Load() (*Loaded, error) {
	l := s.layout
	ringBuf := s.pool.Get(l.ALSlots * BlockSize)
	defer s.pool.Put(ringBuf)
	if _, err := s.dev.ReadAt(ringBuf.B, l.ALOffset); err != nil {
		return nil, fmt.Errorf("meta: read activity log at %d: %w", l.ALOffset, err)
	}
	rec, err := Recover(ringBuf.B, l.ALExtents, l.Extents())
	if err != nil {
		return nil, fmt.Errorf("meta: recover activity log: %w", err)
	}
	s.alNext = rec.NextSlot
	ld := &Loaded{Superblock: s.sb, Bitmap: NewBitmap(l.Blocks()), Recovered: rec.Active}
	bm := ld.Bitmap
	for p := 0; p < l.BitmapPages; p += flushChunkPages {
		n := min(flushChunkPages, l.BitmapPages-p)
		off := l.BitmapOffset + int64(p)*BlockSize
		if _, err := s.dev.ReadAt(s.chunk.B[:n*BlockSize], off); err != nil {
			return nil, fmt.Errorf("meta: read bitmap pages %d-%d at %d: %w", p, p+n-1, off, err)
		}
		for i := range n {
			if bm.LoadPage(p+i, s.chunk.B[i*BlockSize:(i+1)*BlockSize]) {
				ld.TornPages = append(ld.TornPages, p+i)
			}
		}
	}
	for _, e := range rec.Active {
		bm.SetRange(e.FirstBlock(), e.FirstBlock()+BlocksPerExtent)
	}
	if err := s.FlushBitmap(bm); err != nil {
		return nil, fmt.Errorf("meta: persist recovered bitmap: %w", err)
	}
	ld.AL = NewActivityLog(l.ALExtents, rec.NextSeq)
	return ld, nil
}

// WriteSuperblock persists sb with the next sequence number and returns
// when it is durable. The copies alternate: sequence n goes to copy n mod
// 2, so the copy being overwritten holds sequence n-2 and the other still
// holds n-1; a crash during the write leaves n-1 or n on disk, never
// neither. The layout fields of sb must be those of the Store (or zero,
// to keep them).
func (s *Store) WriteSuperblock(sb Superblock) error {
	l := s.layout
	if sb.Placement == 0 && sb.DataSize == 0 && sb.ALExtents == 0 {
		sb.Placement, sb.DataSize, sb.ALExtents = l.Placement, l.DataSize, l.ALExtents
	}
	if sb.Placement != l.Placement || sb.DataSize != l.DataSize || sb.ALExtents != l.ALExtents {
		return fmt.Errorf("%w: superblock layout fields %v/%d/%d, store has %v/%d/%d", ErrLayoutMismatch, sb.Placement, sb.DataSize, sb.ALExtents, l.Placement, l.DataSize, l.ALExtents)
	}
	if uint64(sb.ResyncPos) > l.Blocks() {
		return fmt.Errorf("%w: resync position %d beyond %d blocks", ErrLayoutMismatch, sb.ResyncPos, l.Blocks())
	}
	sb.Seq = s.sb.Seq + 1
	EncodeSuperblock(&sb, s.blk.B)
	off := l.SuperblockOffsets[sb.Seq%2]
	if err := s.writeAt(s.blk.B, off, "superblock"); err != nil {
		return err
	}
	s.stats.SuperblockWrites++
	if err := s.flush("superblock"); err != nil {
		return err
	}
	s.sb = sb
	return nil
}

// FlushBitmap writes every dirty page of bm and flushes.
func (s *Store) FlushBitmap(bm *Bitmap) error {
	return s.flushPages(bm, func(yield func(int) bool) {
		for p := range bm.DirtyPages() {
			if !yield(p) {
				return
			}
		}
	})
}

// flushPages writes the pages pages yields (ascending), coalescing runs of
// consecutive pages, then flushes if anything was written.
func (s *Store) flushPages(bm *Bitmap, pages func(func(int) bool)) error {
	start, n := -1, 0
	var err error
	wrote := false
	emit := func() error {
		if n == 0 {
			return nil
		}
		off := s.layout.BitmapOffset + int64(start)*BlockSize
		if e := s.writeAt(s.chunk.B[:n*BlockSize], off, "bitmap"); e != nil {
			for i := range n {
				bm.MarkDirty(start + i)
			}
			return e
		}
		s.stats.BitmapWrites += uint64(n)
		wrote = true
		n = 0
		return nil
	}
	pages(func(p int) bool {
		if n > 0 && (p != start+n || n == flushChunkPages) {
			if err = emit(); err != nil {
				return false
			}
		}
		if n == 0 {
			start = p
		}
		bm.SnapshotPage(p, s.chunk.B[n*BlockSize:(n+1)*BlockSize])
		n++
		return true
	})
	if err != nil {
		return err
	}
	if err := emit(); err != nil {
		return err
	}
	if !wrote {
		return nil
	}
	return s.flush("bitmap")
}

// CommitAL persists the activity-log transaction tx (from
// ActivityLog.Seal) and returns when it is durable; the caller then calls
// ActivityLog.Committed(tx). Order: first the bitmap pages of the extents
// tx evicts that hold set bits not yet on disk are written and flushed,
// then the transaction's slots, then a flush. On error, tx stays in flight
// and CommitAL may be retried with it.
func (s *Store) CommitAL(tx *Transaction, bm *Bitmap) error {
	err := s.flushPages(bm, func(yield func(int) bool) {
		for _, p := range tx.BitmapPages {
			if bm.PageNeedsFlush(p) && !yield(p) {
				return
			}
		}
	})
	if err != nil {
		return fmt.Errorf("meta: activity-log transaction %d: %w", tx.Seq, err)
	}
	l := s.layout
	parts := EncodeTransaction(tx.Seq, tx.Active, s.txBuf.B)
	for k := 0; k < parts; {
		slot := (s.alNext + k) % l.ALSlots
		run := min(parts-k, l.ALSlots-slot) // contiguous until the ring wraps
		off := l.ALOffset + int64(slot)*BlockSize
		if err := s.writeAt(s.txBuf.B[k*BlockSize:(k+run)*BlockSize], off, "activity log"); err != nil {
			return fmt.Errorf("meta: activity-log transaction %d: %w", tx.Seq, err)
		}
		k += run
	}
	if err := s.flush("activity log"); err != nil {
		return fmt.Errorf("meta: activity-log transaction %d: %w", tx.Seq, err)
	}
	s.alNext = (s.alNext + parts) % l.ALSlots
	s.stats.ALWrites++
	return nil
}
