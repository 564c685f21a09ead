package meta

import (
	"encoding/binary"
	"iter"
	"math/bits"
)

// Bitmap is the dirty (quick-sync) bitmap: one bit per 4 KiB block of the
// data area, set when the block may differ from the peer's copy. It is a
// flat []uint64, 32 KiB per GiB of data, with page-level dirty tracking
// for persistence. Set, Clear and Test do not allocate.
//
// A Bitmap is not safe for concurrent use: the resource's driver
// goroutine owns it (and the Store that persists it).
//
// Persistence: a page is "dirty" when it differs from what was last
// persisted, and "needs flush" when it has set bits that are not on disk.
// Only the second matters for crash safety (a bit cleared in memory but
// still set on disk costs a needless resync, nothing more); the activity
// log uses it to decide which pages to flush before an extent leaves the
// log.
type Bitmap struct {
	words    []uint64 // BitmapPages × wordsPerPage words; bits ≥ blocks stay 0
	blocks   uint64
	count    uint64
	pages    int
	dirty    []uint64 // one bit per page: differs from disk
	setDirty []uint64 // one bit per page: has set bits not on disk
}

// NewBitmap returns an all-clear bitmap for blocks 4 KiB blocks, with every
// page clean.
func NewBitmap(blocks uint64) *Bitmap {
	pages := int((blocks + BlocksPerPage - 1) / BlocksPerPage)
	return &Bitmap{
		words:    make([]uint64, pages*wordsPerPage),
		blocks:   blocks,
		pages:    pages,
		dirty:    make([]uint64, (pages+63)/64),
		setDirty: make([]uint64, (pages+63)/64),
	}
}

// Blocks returns the number of bits.
func (b *Bitmap) Blocks() uint64 { return b.blocks }

// Count returns the number of set bits (out-of-sync blocks).
func (b *Bitmap) Count() uint64 { return b.count }

// OutOfSyncBytes returns Count × BlockSize.
func (b *Bitmap) OutOfSyncBytes() uint64 { return b.count * BlockSize }

// Pages returns the number of 4 KiB pages the bitmap is persisted in.
func (b *Bitmap) Pages() int { return b.pages }

// PageOf returns the page holding block x's bit.
func PageOf(x Block) int { return int(x / BlocksPerPage) }

// Test reports whether block x's bit is set; false beyond the end.
func (b *Bitmap) Test(x Block) bool {
	if uint64(x) >= b.blocks {
		return false
	}
	return b.words[x/64]&(1<<(x%64)) != 0
}

// Set sets block x's bit; nothing happens beyond the end.
func (b *Bitmap) Set(x Block) {
	if uint64(x) >= b.blocks {
		return
	}
	w, m := x/64, uint64(1)<<(x%64)
	if b.words[w]&m == 0 {
		b.words[w] |= m
		b.count++
		b.markSet(int(w / wordsPerPage))
	}
}

// Clear clears block x's bit; nothing happens beyond the end.
func (b *Bitmap) Clear(x Block) {
	if uint64(x) >= b.blocks {
		return
	}
	w, m := x/64, uint64(1)<<(x%64)
	if b.words[w]&m != 0 {
		b.words[w] &^= m
		b.count--
		b.markDirty(int(w / wordsPerPage))
	}
}

func (b *Bitmap) markDirty(p int) { b.dirty[p/64] |= 1 << (p % 64) }

func (b *Bitmap) markSet(p int) {
	b.dirty[p/64] |= 1 << (p % 64)
	b.setDirty[p/64] |= 1 << (p % 64)
}

// clip bounds [first, end) to the bitmap.
func (b *Bitmap) clip(first, end Block) (Block, Block) {
	end = min(end, Block(b.blocks))
	return first, end
}

// SetRange sets the bits of blocks [first, end), clipped to the bitmap,
// and returns how many were clear before.
func (b *Bitmap) SetRange(first, end Block) uint64 {
	first, end = b.clip(first, end)
	var n uint64
	for first < end {
		w := first / 64
		lo := first % 64
		hi := min(uint64(end-Block(w*64)), 64)
		m := maskRange(uint64(lo), hi)
		if d := m &^ b.words[w]; d != 0 {
			b.words[w] |= d
			c := uint64(bits.OnesCount64(d))
			n += c
			b.markSet(int(w / wordsPerPage))
		}
		first = Block((w + 1) * 64)
	}
	b.count += n
	return n
}

// ClearRange clears the bits of blocks [first, end), clipped to the
// bitmap, and returns how many were set before.
func (b *Bitmap) ClearRange(first, end Block) uint64 {
	first, end = b.clip(first, end)
	var n uint64
	for first < end {
		w := first / 64
		lo := first % 64
		hi := min(uint64(end-Block(w*64)), 64)
		m := maskRange(uint64(lo), hi)
		if d := m & b.words[w]; d != 0 {
			b.words[w] &^= d
			n += uint64(bits.OnesCount64(d))
			b.markDirty(int(w / wordsPerPage))
		}
		first = Block((w + 1) * 64)
	}
	b.count -= n
	return n
}

// CountRange returns the number of set bits in [first, end).
func (b *Bitmap) CountRange(first, end Block) uint64 {
	first, end = b.clip(first, end)
	var n uint64
	for first < end {
		w := first / 64
		hi := min(uint64(end-Block(w*64)), 64)
		n += uint64(bits.OnesCount64(b.words[w] & maskRange(uint64(first%64), hi)))
		first = Block((w + 1) * 64)
	}
	return n
}

// maskRange returns a word with bits [lo, hi) set; 0 ≤ lo < hi ≤ 64.
func maskRange(lo, hi uint64) uint64 {
	m := ^uint64(0) << lo
	if hi < 64 {
		m &= (1 << hi) - 1
	}
	return m
}

// NextSet returns the first set block at or after from.
func (b *Bitmap) NextSet(from Block) (Block, bool) {
	if uint64(from) >= b.blocks {
		return 0, false
	}
	w := from / 64
	word := b.words[w] & (^uint64(0) << (from % 64))
	for {
		if word != 0 {
			x := Block(w*64) + Block(bits.TrailingZeros64(word))
			return x, uint64(x) < b.blocks
		}
		w++
		if int(w) >= len(b.words) {
			return 0, false
		}
		word = b.words[w]
	}
}

// nextClear returns the first clear block at or after from (b.blocks if
// none).
func (b *Bitmap) nextClear(from Block) Block {
	if uint64(from) >= b.blocks {
		return Block(b.blocks)
	}
	w := from / 64
	word := ^b.words[w] & (^uint64(0) << (from % 64))
	for {
		if word != 0 {
			return min(Block(w*64)+Block(bits.TrailingZeros64(word)), Block(b.blocks))
		}
		w++
		if int(w) >= len(b.words) {
			return Block(b.blocks)
		}
		word = ^b.words[w]
	}
}

// NextRange returns the first run [first, end) of set bits at or after
// from, at most maxLen blocks long (0: unbounded). A resync walks the
// bitmap in block order with it and resumes from any position.
func (b *Bitmap) NextRange(from Block, maxLen uint64) (first, end Block, ok bool) {
	first, ok = b.NextSet(from)
	if !ok {
		return 0, 0, false
	}
	end = b.nextClear(first)
	if maxLen > 0 && uint64(end-first) > maxLen {
		end = first + Block(maxLen)
	}
	return first, end, true
}

// Ranges yields the runs of set bits at or after from, in block order.
// The bitmap must not change during the iteration.
func (b *Bitmap) Ranges(from Block) iter.Seq2[Block, Block] {
	return func(yield func(Block, Block) bool) {
		for {
			first, end, ok := b.NextRange(from, 0)
			if !ok || !yield(first, end) {
				return
			}
			from = end
		}
	}
}

// PageDirty reports whether page p differs from what was last persisted.
func (b *Bitmap) PageDirty(p int) bool { return b.dirty[p/64]&(1<<(p%64)) != 0 }

// PageNeedsFlush reports whether page p has set bits that are not on disk.
func (b *Bitmap) PageNeedsFlush(p int) bool { return b.setDirty[p/64]&(1<<(p%64)) != 0 }

// MarkDirty marks page p dirty and needing a flush (after a failed write
// of a page SnapshotPage had marked clean).
func (b *Bitmap) MarkDirty(p int) { b.markSet(p) }

// DirtyPages yields the dirty pages in ascending order. The consumer may
// snapshot (and so clean) pages during the iteration; a page dirtied during
// it behind the current position is left for the next one.
func (b *Bitmap) DirtyPages() iter.Seq[int] {
	return func(yield func(int) bool) {
		for i := range b.dirty {
			for w := b.dirty[i]; w != 0; w &= w - 1 {
				p := i*64 + bits.TrailingZeros64(w)
				if b.PageDirty(p) && !yield(p) {
					return
				}
			}
		}
	}
}

// EncodePage writes page p's on-disk form into dst (BlockSize bytes); it
// does not change the dirty state.
func (b *Bitmap) EncodePage(p int, dst []byte) {
	_ = dst[BlockSize-1]
	clear(dst[:pageHeaderSize])
	binary.LittleEndian.PutUint64(dst[8:], uint64(p))
	ws := b.words[p*wordsPerPage : (p+1)*wordsPerPage]
	out := dst[pageHeaderSize:BlockSize]
	for i, w := range ws {
		binary.LittleEndian.PutUint64(out[i*8:], w)
	}
	sealBlock(dst[:BlockSize], magicBitmap)
}

// SnapshotPage encodes page p into dst and marks the page clean: the
// caller is about to persist dst. If that fails, it calls MarkDirty(p).
func (b *Bitmap) SnapshotPage(p int, dst []byte) {
	b.EncodePage(p, dst)
	b.dirty[p/64] &^= 1 << (p % 64)
	b.setDirty[p/64] &^= 1 << (p % 64)
}

// decodePageWords checks src as the on-disk form of page p and returns
// its payload; ok is false for a torn, misdirected or unwritten page.
func decodePageWords(p int, src []byte) (payload []byte, ok bool) {
	if !checkBlock(src, magicBitmap) || binary.LittleEndian.Uint64(src[8:]) != uint64(p) {
		return nil, false
	}
	return src[pageHeaderSize:], true
}

// LoadPage replaces page p's bits with those of its on-disk form src. A
// page that fails its checks (torn by a crash, never written) is taken as
// all ones — "resync everything it covers" — and marked as needing a
// flush; LoadPage then returns torn = true.
func (b *Bitmap) LoadPage(p int, src []byte) (torn bool) {
	ws := b.words[p*wordsPerPage : (p+1)*wordsPerPage]
	var old uint64
	for _, w := range ws {
		old += uint64(bits.OnesCount64(w))
	}
	b.count -= old
	payload, ok := decodePageWords(p, src)
	first := uint64(p) * BlocksPerPage
	valid := min(b.blocks-first, BlocksPerPage) // bits of this page inside the bitmap
	for i := range ws {
		var w uint64
		if ok {
			w = binary.LittleEndian.Uint64(payload[i*8:])
		} else {
			w = ^uint64(0)
		}
		if lo := uint64(i) * 64; lo >= valid {
			w = 0
		} else if valid-lo < 64 {
			w &= (1 << (valid - lo)) - 1
		}
		ws[i] = w
		b.count += uint64(bits.OnesCount64(w))
	}
	if !ok {
		b.markSet(p)
	} else {
		b.dirty[p/64] &^= 1 << (p % 64)
		b.setDirty[p/64] &^= 1 << (p % 64)
	}
	return !ok
}
