package blockdev

import (
	"fmt"
	"maps"
	"sync"
)

// Mem is an in-memory Device for data-safety tests. It implements Device,
// FUAWriter and Discarder with the same argument rules as File (aligned
// buffers, whole blocks, in range), so it also catches callers that break
// them.
//
// Model: each block has a durable version (on the medium) and possibly a
// newer volatile version (in a write cache). Reads see the volatile version
// if there is one, else the durable one; never-written blocks read as
// zeros.
//   - WriteAt and Discard set the volatile version of each block.
//   - WriteAtFUA sets the durable version and drops any volatile one.
//   - Flush (and Close) make every volatile version durable.
//   - Crash drops every volatile version, like a power loss with a write
//     cache that destaged nothing; CrashWith chooses block by block which
//     volatile versions reached the medium first.
//
// Blocks are atomic: a crash never tears a block. Storage is sparse, so
// large sizes are cheap until written. Mem is safe for concurrent use (one
// mutex: it is a test device, not a fast one).
type Mem struct {
	size  int64
	bs    int64
	bmask int64

	mu struct {
		sync.Mutex
		closed   bool
		durable  map[int64][]byte // block index -> data; absent means zeros
		volatile map[int64][]byte // block index -> data; nil data means zeros
	}
}

var (
	_ Device    = (*Mem)(nil)
	_ FUAWriter = (*Mem)(nil)
	_ Discarder = (*Mem)(nil)
)

// NewMem returns a zero-filled Mem of size bytes in blocks of blockSize
// bytes. blockSize must be a power of two from 512 to 65536 and size a
// positive multiple of it; NewMem panics otherwise (it is a test helper).
func NewMem(size int64, blockSize int) *Mem {
	if blockSize < 512 || blockSize > 65536 || blockSize&(blockSize-1) != 0 {
		panic(fmt.Sprintf("blockdev: NewMem: block size %d is not a power of two in [512, 65536]", blockSize))
	}
	if size <= 0 || size%int64(blockSize) != 0 {
		panic(fmt.Sprintf("blockdev: NewMem: size %d is not a positive multiple of block size %d", size, blockSize))
	}
	m := &Mem{size: size, bs: int64(blockSize), bmask: int64(blockSize - 1)}
	m.mu.durable = make(map[int64][]byte)
	m.mu.volatile = make(map[int64][]byte)
	return m
}

// Size implements Device.
func (m *Mem) Size() int64 { return m.size }

// BlockSize returns the block size given to NewMem.
func (m *Mem) BlockSize() int { return int(m.bs) }

// ReadAt implements Device.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	if err := checkIO(p, off, m.size, m.bmask); err != nil {
		return 0, m.wrap("read", off, int64(len(p)), err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return 0, m.wrap("read", off, int64(len(p)), ErrClosed)
	}
	for i := int64(0); i < int64(len(p)); i += m.bs {
		blk := (off + i) / m.bs
		dst := p[i : i+m.bs]
		data, ok := m.mu.volatile[blk]
		if !ok {
			data = m.mu.durable[blk]
		}
		if data == nil {
			clear(dst)
		} else {
			copy(dst, data)
		}
	}
	return len(p), nil
}

// WriteAt implements Device: the data becomes the blocks' volatile version.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	return m.write(p, off, false)
}

// WriteAtFUA implements FUAWriter: the data becomes the blocks' durable
// version at once.
func (m *Mem) WriteAtFUA(p []byte, off int64) (int, error) {
	return m.write(p, off, true)
}

func (m *Mem) write(p []byte, off int64, fua bool) (int, error) {
	op := "write"
	if fua {
		op = "write-fua"
	}
	if err := checkIO(p, off, m.size, m.bmask); err != nil {
		return 0, m.wrap(op, off, int64(len(p)), err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return 0, m.wrap(op, off, int64(len(p)), ErrClosed)
	}
	for i := int64(0); i < int64(len(p)); i += m.bs {
		blk := (off + i) / m.bs
		if fua {
			delete(m.mu.volatile, blk)
			m.mu.durable[blk] = m.copyBlock(m.mu.durable[blk], p[i:i+m.bs])
		} else {
			m.mu.volatile[blk] = m.copyBlock(m.mu.volatile[blk], p[i:i+m.bs])
		}
	}
	return len(p), nil
}

// copyBlock copies src into dst, allocating dst if it is nil.
func (m *Mem) copyBlock(dst, src []byte) []byte {
	if dst == nil {
		dst = make([]byte, m.bs)
	}
	copy(dst, src)
	return dst
}

// Discard implements Discarder: the blocks' volatile version becomes
// zeros; after a Crash without Flush they read as before the Discard.
func (m *Mem) Discard(off, n int64) error {
	if err := checkRange(off, n, m.size, m.bmask); err != nil {
		return m.wrap("discard", off, n, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return m.wrap("discard", off, n, ErrClosed)
	}
	for blk := off / m.bs; blk < (off+n)/m.bs; blk++ {
		m.mu.volatile[blk] = nil
	}
	return nil
}

// Flush implements Device: every volatile version becomes durable.
func (m *Mem) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return fmt.Errorf("blockdev: flush mem: %w", ErrClosed)
	}
	m.persistLocked(func(int64) bool { return true })
	return nil
}

// persistLocked makes the volatile versions of the blocks keep selects
// durable and drops all other volatile versions.
func (m *Mem) persistLocked(keep func(off int64) bool) {
	for blk, data := range m.mu.volatile {
		if !keep(blk * m.bs) {
			continue
		}
		if data == nil {
			delete(m.mu.durable, blk)
		} else {
			m.mu.durable[blk] = data
		}
	}
	clear(m.mu.volatile)
}

// Close implements Device: it flushes, then later calls fail with
// ErrClosed. Crash and CrashWith still work on a closed Mem and reopen it.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return fmt.Errorf("blockdev: close mem: %w", ErrClosed)
	}
	m.persistLocked(func(int64) bool { return true })
	m.mu.closed = true
	return nil
}

// Crash simulates a power loss and restart: every write and discard not
// yet made durable by Flush or WriteAtFUA is lost. The Mem stays (or
// becomes again) open, holding only durable data. Calls racing with Crash
// land entirely before or after it.
func (m *Mem) Crash() {
	m.CrashWith(func(int64) bool { return false })
}

// CrashWith is Crash where a volatile block version survives when
// keep(byte offset of the block) returns true, modelling a write cache
// that destaged some blocks, in any order, before the power went out.
// keep is called with Mem's lock held and must not call Mem.
func (m *Mem) CrashWith(keep func(off int64) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.persistLocked(keep)
	m.mu.closed = false
}

// Clone returns an independent copy of m holding m's durable data only, as
// a restarted machine would see it after a crash; m is unchanged. Tests
// can hand the clone to a new stack while goroutines of the old one still
// write to m.
func (m *Mem) Clone() *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMem(m.size, int(m.bs))
	for blk, data := range m.mu.durable {
		c.mu.durable[blk] = append([]byte(nil), data...)
	}
	return c
}

// Dirty returns the byte offsets of blocks whose latest version is not
// yet durable, in no particular order.
func (m *Mem) Dirty() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	offs := make([]int64, 0, len(m.mu.volatile))
	for blk := range maps.Keys(m.mu.volatile) {
		offs = append(offs, blk*m.bs)
	}
	return offs
}

func (m *Mem) wrap(op string, off, n int64, err error) error {
	return fmt.Errorf("blockdev: %s mem at %d+%d: %w", op, off, n, err)
}
