package blockdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// Align is the memory alignment, in bytes, that every buffer passed to
// ReadAt, WriteAt and WriteAtFUA must have: the address of p[0] must be a
// multiple of Align. Buffers from a Pool always satisfy it. It is at least
// the memory alignment O_DIRECT needs on every device Open accepts.
const Align = 4096

// Device reads and writes whole logical blocks of a LUN's backing store.
//
// Every call with data takes a buffer p whose start is aligned to Align (use
// Pool buffers) and an offset off; off and len(p) must be multiples of the
// device's block size, and [off, off+len(p)) must lie inside [0, Size()).
// A call that breaks these rules fails with ErrAlignment or ErrOutOfRange
// and transfers nothing. len(p) == 0 is a successful no-op.
//
// ReadAt and WriteAt transfer all of p or return an error; n is the number
// of bytes transferred before the error.
//
// WriteAt and WriteAtFUA may overwrite p: an encrypting device (package
// crypt) encrypts the caller's buffer in place rather than copy it. After
// the call returns, p's contents are unspecified; a caller that needs the
// data again keeps its own copy.
//
// Durability: when WriteAt returns without error, the data is in the device
// (or file): every later ReadAt sees it, but it may still sit in a volatile
// write cache and be lost on power failure. It is durable once a Flush that
// was called after the WriteAt returned has itself returned without error.
// Writes that run concurrently with a Flush may or may not be covered by it.
//
// All methods are safe for concurrent use. Concurrent calls on disjoint
// ranges do not affect each other; the result of concurrent writes to
// overlapping ranges, or of a read concurrent with a write of the same
// range, is unspecified (it may mix old and new data, even inside a block).
type Device interface {
	// ReadAt reads len(p) bytes at byte offset off.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes p at byte offset off. The data is visible to reads
	// when WriteAt returns, and durable after the next successful Flush.
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes durable every write (and discard) that returned before
	// Flush was called (fdatasync on a File). An error means durability of
	// those writes is unknown; callers must treat the device as failed.
	Flush() error
	// Size returns the device's capacity in bytes, a multiple of its block
	// size. It does not change while the device is open.
	Size() int64
	// Close waits for calls in flight, makes completed writes durable as
	// Flush does, and releases the device. It returns the flush error, if
	// any. Later calls fail with ErrClosed.
	Close() error
}

// FUAWriter is implemented by devices that can write with Force Unit Access.
type FUAWriter interface {
	// WriteAtFUA is WriteAt whose data is durable when it returns without
	// error (SBC-3 FUA). It makes no promise about other writes.
	WriteAtFUA(p []byte, off int64) (int, error)
}

// AsyncWriter is implemented by devices that can start a write and report
// its completion later, with no goroutine waiting for it: a caller that
// has many writes to start (a replication secondary) saves a hand-off per
// write.
type AsyncWriter interface {
	// WriteAtAsync starts writing p at off and returns true; done is then
	// called exactly once, on another goroutine, with what WriteAt would
	// have returned as its error, and p must stay unchanged until then.
	// done must not block: it runs on the goroutine that collects the
	// device's completions. WriteAtAsync returns false, having started
	// nothing and without calling done, when it cannot start the write
	// without waiting (or at all); the caller then uses WriteAt.
	WriteAtAsync(p []byte, off int64, done func(error)) bool
}

// Discarder is implemented by devices that can deallocate ranges.
type Discarder interface {
	// Discard deallocates [off, off+n) (SBC-3 UNMAP / WRITE SAME with
	// UNMAP). off and n must be multiples of the block size. When Discard
	// returns without error the range reads as zeros; like a write, the
	// change is durable after the next successful Flush.
	Discard(off, n int64) error
}

// Mapper is implemented by devices that know which ranges hold allocated
// storage (SBC-3 "GET LBA STATUS").
type Mapper interface {
	// Mapped reports whether the byte at off is backed by allocated
	// storage, and how many bytes from off, at most n, share that state.
	// A device that cannot tell reports every range as mapped. off must
	// lie inside the device and n be positive.
	Mapped(off, n int64) (mapped bool, run int64, err error)
}

// Sentinel errors. Errors returned by this package wrap one of these (or an
// errno such as unix.EIO, which matches fs.ErrNotExist or fs.ErrPermission
// where relevant); test them with errors.Is.
var (
	// ErrInvalidOptions: Options failed validation.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrNoDirectIO: the filesystem does not do real O_DIRECT I/O.
	ErrNoDirectIO = errors.New("filesystem does not support O_DIRECT")
	// ErrNotFileOrDevice: the path is neither a regular file nor a block device.
	ErrNotFileOrDevice = errors.New("not a regular file or block device")
	// ErrBadSize: the backing store's size is zero or not a whole number of blocks.
	ErrBadSize = errors.New("unusable size")
	// ErrSizeMismatch: the backing store's size differs from Options.Size.
	ErrSizeMismatch = errors.New("size differs from configured size")
	// ErrBlockSize: the device cannot do O_DIRECT I/O in units of Options.BlockSize.
	ErrBlockSize = errors.New("block size not supported by device")
	// ErrInUse: another process (or another Open in this one) holds the backing store.
	ErrInUse = errors.New("backing store in use")
	// ErrReadOnly: a write or discard on a device opened read-only.
	ErrReadOnly = errors.New("device is read-only")
	// ErrClosed: a call on a closed device.
	ErrClosed = errors.New("device is closed")
	// ErrAlignment: a buffer, offset or length breaks the alignment rules.
	ErrAlignment = errors.New("misaligned I/O")
	// ErrOutOfRange: an I/O reaches outside [0, Size()).
	ErrOutOfRange = errors.New("I/O out of range")
	// ErrFlushFailed: a flush failed, now or earlier. Once a flush has
	// failed the device never again reports writes as durable.
	ErrFlushFailed = errors.New("flush failed")
	// ErrInjected is the default error a Faulty injects.
	ErrInjected = errors.New("injected fault")
)

// aligned reports whether p starts at a multiple of Align.
func aligned(p []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))&(Align-1) == 0
}

// CheckIO validates a transfer of p at off against the rules of Device for
// a device of size bytes and blockSize-byte blocks (a power of two), and
// returns the error (wrapping ErrOutOfRange or ErrAlignment) a Device
// returns for it, or nil. Devices that wrap others use it to check against
// their own bounds. It allocates only when it fails.
func CheckIO(p []byte, off, size int64, blockSize int) error {
	return checkIO(p, off, size, int64(blockSize-1))
}

// checkIO validates one data transfer against a device of the given size
// and block-size mask (block size - 1). It allocates only when it fails.
func checkIO(p []byte, off, size int64, bmask int64) error {
	n := int64(len(p))
	if off < 0 || off > size-n {
		return fmt.Errorf("%w: offset %d length %d, device size %d", ErrOutOfRange, off, n, size)
	}
	if off&bmask != 0 || n&bmask != 0 {
		return fmt.Errorf("%w: offset %d length %d not multiples of block size %d", ErrAlignment, off, n, bmask+1)
	}
	if n != 0 && !aligned(p) {
		return fmt.Errorf("%w: buffer address %p not a multiple of %d (use a Pool buffer)", ErrAlignment, unsafe.SliceData(p), Align)
	}
	return nil
}

// CheckRange validates a discard of [off, off+n) like CheckIO does a
// transfer.
func CheckRange(off, n, size int64, blockSize int) error {
	return checkRange(off, n, size, int64(blockSize-1))
}

// checkRange validates a discard range.
func checkRange(off, n, size int64, bmask int64) error {
	if off < 0 || n < 0 || off > size-n {
		return fmt.Errorf("%w: offset %d length %d, device size %d", ErrOutOfRange, off, n, size)
	}
	if off&bmask != 0 || n&bmask != 0 {
		return fmt.Errorf("%w: offset %d length %d not multiples of block size %d", ErrAlignment, off, n, bmask+1)
	}
	return nil
}

// Options configures Open. The zero value opens an existing file or block
// device read-write, at its current size, with 512-byte blocks.
type Options struct {
	// Size is the capacity in bytes, a multiple of BlockSize. 0 means "use
	// the backing store's size". When Create is set and the path does not
	// exist, a sparse file of Size bytes is created (Size is required then).
	// An existing file or block device whose size differs from a non-zero
	// Size is refused with ErrSizeMismatch: Open never grows, truncates or
	// shrinks existing data (grow a file yourself, e.g. truncate -s).
	Size int64
	// Create creates a missing regular file (mode 0600, sparse, Size bytes)
	// and has no effect when path exists. It cannot be combined with
	// ReadOnly.
	Create bool
	// ReadOnly opens without write access: writes and discards fail with
	// ErrReadOnly and the lock taken is shared, so several read-only
	// openers may coexist but never with a read-write one.
	ReadOnly bool
	// BlockSize is the logical block size callers use, 512 or 4096; 0 means
	// 512. Open fails with ErrBlockSize if the device's O_DIRECT offset
	// alignment (the logical sector size for block devices) is larger.
	BlockSize int
	// IO selects how a File issues reads and writes (see IOMode): IOAuto,
	// the zero value, mixes Linux native AIO and pread/pwrite for the best
	// latency at every queue depth; IOAsync always uses AIO; IOSync never.
	// Without a kernel AIO context IOAuto and IOAsync act as IOSync;
	// File.AsyncIO reports whether an open File has one.
	IO IOMode
	// QueueDepth is the number of native AIO requests a File keeps in
	// flight at most, 1 to MaxQueueDepth; 0 means DefaultQueueDepth.
	// Callers beyond it wait in Go for a free slot, so it bounds kernel
	// queueing, not concurrency. Each File charges QueueDepth against the
	// host-wide fs.aio-max-nr limit (65536 by default) and holds about
	// 200 bytes per slot; when the limit is reached, Open falls back to
	// pread/pwrite. Ignored with IOSync.
	QueueDepth int
}

// IOMode selects how a File issues data transfers (ReadAt, WriteAt,
// WriteAtFUA). Either way the calls are synchronous for the caller.
//
// A synchronous transfer (pread/pwrite/pwritev2 from the caller's
// goroutine) blocks an OS thread until the device answers; the Go runtime
// then hands the thread's P to another thread, which with many transfers
// in flight costs more CPU than the I/O itself. An asynchronous one
// (Linux native AIO: io_submit from the caller's goroutine, which then
// parks; one reaper goroutine per File, woken by the network poller
// through an eventfd, collects the completions) holds no thread while it
// waits, but its completion takes three goroutine wake-ups to reach the
// caller, which adds latency (about 20 µs on the VM it was measured on)
// when nothing else is in flight.
//
// If the kernel refuses an AIO context (fs.aio-max-nr reached, CONFIG_AIO
// off, or an architecture this package has no iocb layout for), IOAuto
// and IOAsync act as IOSync, without logging; File.AsyncIO tells.
type IOMode uint8

const (
	// IOAuto, the default, transfers synchronously when no other transfer
	// of the File is in flight, and with AIO otherwise: the latency of
	// IOSync at queue depth 1, the throughput of IOAsync under
	// concurrency, and at most one thread per File blocked in I/O.
	IOAuto IOMode = iota
	// IOSync always transfers synchronously.
	IOSync
	// IOAsync always transfers with AIO.
	IOAsync
)

// String returns "auto", "sync" or "async".
func (m IOMode) String() string {
	switch m {
	case IOAuto:
		return "auto"
	case IOSync:
		return "sync"
	case IOAsync:
		return "async"
	}
	return fmt.Sprintf("IOMode(%d)", uint8(m))
}

// Queue depth bounds for Options.QueueDepth.
const (
	DefaultQueueDepth = 256
	MaxQueueDepth     = 1 << 16
)

// withDefaults returns o with defaults applied and validated; the error
// names every bad field.
func (o Options) withDefaults() (Options, error) {
	if o.BlockSize == 0 {
		o.BlockSize = 512
	}
	var errs []error
	if o.BlockSize != 512 && o.BlockSize != 4096 {
		errs = append(errs, fmt.Errorf("BlockSize %d: must be 512 or 4096", o.BlockSize))
	}
	if o.Size < 0 {
		errs = append(errs, fmt.Errorf("Size %d: must not be negative", o.Size))
	} else if o.BlockSize > 0 && o.Size%int64(o.BlockSize) != 0 {
		errs = append(errs, fmt.Errorf("Size %d: not a multiple of BlockSize %d", o.Size, o.BlockSize))
	}
	if o.IO > IOAsync {
		errs = append(errs, fmt.Errorf("IO %v: must be IOAuto, IOSync or IOAsync", o.IO))
	}
	if o.QueueDepth == 0 {
		o.QueueDepth = DefaultQueueDepth
	}
	if o.QueueDepth < 1 || o.QueueDepth > MaxQueueDepth {
		errs = append(errs, fmt.Errorf("QueueDepth %d: must be 1 to %d (0 means %d)", o.QueueDepth, MaxQueueDepth, DefaultQueueDepth))
	}
	if o.Create && o.ReadOnly {
		errs = append(errs, errors.New("cannot set both Create and ReadOnly"))
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return o, nil
}

// IsZero reports whether p holds only zero bytes, which is what a discarded
// range reads as (Discarder); an empty p is zero.
func IsZero(p []byte) bool {
	for len(p) >= 8 {
		if binary.LittleEndian.Uint64(p) != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
