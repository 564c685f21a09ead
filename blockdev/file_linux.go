//go:build linux

package blockdev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// File is a Device backed by a regular file or a block device, opened with
// O_DIRECT. It implements Device, FUAWriter and Discarder. ReadAt, WriteAt
// and WriteAtFUA transfer with Linux native AIO or pread/pwrite as
// Options.IO says (see IOMode). Concurrent calls run in parallel (the only
// shared state is a reader lock that keeps the descriptor open while calls
// are in flight, a count of transfers in flight, and the AIO request
// slots).
type File struct {
	path     string
	fd       int
	size     int64
	bmask    int64 // block size - 1
	readOnly bool
	blockDev bool
	aio      *aioCtx // nil: synchronous I/O; set by Open, never changed
	// alwaysAIO is set by Open for IOAsync: do not transfer synchronously
	// when nothing else is in flight (IOAuto).
	alwaysAIO bool
	active    atomic.Int32 // transfers in flight, counted when aio != nil

	// closeMu is held shared by every call that uses fd and exclusively by
	// Close, so fd is never used after it is closed (the number could be
	// reused by an unrelated file). It never serializes I/O.
	closeMu sync.RWMutex
	closed  bool // guarded by closeMu

	noPwritev2 atomic.Bool // kernel lacks pwritev2 RWF_DSYNC: use pwrite+fdatasync
	noAIODSync atomic.Bool // kernel refuses RWF_DSYNC in an iocb: use pwritev2
	// flushErr is the first flush failure; once set, Flush and WriteAtFUA
	// fail forever (after a failed fdatasync Linux may forget the error, so
	// a retry could falsely succeed).
	flushErr atomic.Pointer[error]

	zeroOnce sync.Once
	zeroBuf  []byte // aligned zeros for the last-resort Discard fallback
}

var (
	_ Device      = (*File)(nil)
	_ FUAWriter   = (*File)(nil)
	_ AsyncWriter = (*File)(nil)
	_ Discarder   = (*File)(nil)
	_ Mapper      = (*File)(nil)
)

// Open opens the regular file or block device at path for O_DIRECT I/O in
// blocks of opts.BlockSize, after validating opts (see Options for the size
// rules). It takes a non-blocking flock on the backing store (exclusive, or
// shared when read-only) and, for a read-write block device, opens it with
// O_EXCL so that a mounted device is refused; a conflict fails with
// ErrInUse. (udev briefly holds a shared lock while it probes a block
// device after a change, so a caller may retry ErrInUse for a moment.) A
// file it creates is removed again if Open then fails.
//
// Unless opts.IO is IOSync it also sets up a native AIO context of
// opts.QueueDepth requests and starts the File's reaper goroutine; if the
// kernel refuses the context, the File uses pread/pwrite (see IOMode).
// Close stops the goroutine.
//
// Errors name path and wrap a sentinel of this package or the errno, so
// errors.Is(err, fs.ErrNotExist) and errors.Is(err, fs.ErrPermission) work.
func Open(path string, opts Options) (*File, error) {
	return openWith(path, opts, newAIOContext)
}

// openWith is Open with the function that sets up the AIO context, which
// tests replace to simulate a kernel that refuses one.
func openWith(path string, opts Options, newAIO func(depth int) (*aioCtx, error)) (*File, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("blockdev: open %s: %w", path, err)
	}
	f, err := open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("blockdev: open %s: %w", path, err)
	}
	if opts.IO != IOSync {
		// On failure (fs.aio-max-nr reached, no CONFIG_AIO, no iocb
		// layout for this architecture) stay synchronous, as documented.
		if a, err := newAIO(opts.QueueDepth); err == nil {
			f.aio = a
			f.alwaysAIO = opts.IO == IOAsync
		}
	}
	return f, nil
}

func open(path string, opts Options) (f *File, err error) {
	fd, created, err := openFD(path, opts)
	if err != nil {
		return nil, err
	}
	locked := false
	defer func() {
		if err == nil {
			return
		}
		// Remove a file we created, but only while we hold its lock: if
		// another process won the lock, the file is now theirs.
		if created && locked {
			_ = unix.Unlink(path)
		}
		_ = unix.Close(fd)
	}()

	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return nil, err
	}
	kind := st.Mode & unix.S_IFMT
	if kind != unix.S_IFREG && kind != unix.S_IFBLK {
		return nil, fmt.Errorf("%w (it is a %s)", ErrNotFileOrDevice, fileType(kind))
	}
	blockDev := kind == unix.S_IFBLK

	how := unix.LOCK_EX
	if opts.ReadOnly {
		how = unix.LOCK_SH
	}
	if err := retryEINTR(func() error { return unix.Flock(fd, how|unix.LOCK_NB) }); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another process (another hastord?) or another Open in this one holds a lock on it", ErrInUse)
		}
		return nil, fmt.Errorf("flock: %w", err)
	}
	locked = true

	if created {
		if err := initCreated(fd, path, opts.Size); err != nil {
			return nil, err
		}
		st.Size = opts.Size
	}

	if err := setDirect(fd); err != nil {
		return nil, err
	}
	memAlign, offAlign, err := dioAlign(fd, &st, blockDev)
	if err != nil {
		return nil, err
	}
	if memAlign > Align {
		return nil, fmt.Errorf("%w: O_DIRECT needs %d-byte aligned memory, more than the %d this package provides", ErrBlockSize, memAlign, Align)
	}
	if offAlign > opts.BlockSize {
		return nil, fmt.Errorf("%w: O_DIRECT on it needs %d-byte units (logical sector size), larger than BlockSize %d; configure BlockSize %d", ErrBlockSize, offAlign, opts.BlockSize, offAlign)
	}

	size := st.Size
	if blockDev {
		if size, err = blkSize(fd); err != nil {
			return nil, err
		}
	}
	if err := checkSize(size, opts, blockDev); err != nil {
		return nil, err
	}

	return &File{
		path:     path,
		fd:       fd,
		size:     size,
		bmask:    int64(opts.BlockSize - 1),
		readOnly: opts.ReadOnly,
		blockDev: blockDev,
	}, nil
}

// openFD opens path without O_DIRECT (setDirect adds it after the lock is
// held), creating a regular file if allowed. created reports whether this
// call created the file.
func openFD(path string, opts Options) (fd int, created bool, err error) {
	for range 2 { // a second pass only if the file appeared while creating it
		var st unix.Stat_t
		err := retryEINTR(func() error { return unix.Stat(path, &st) })
		switch {
		case errors.Is(err, unix.ENOENT):
			if !opts.Create {
				return -1, false, fmt.Errorf("%w (set Create and Size to create a sparse file)", err)
			}
			if opts.Size == 0 {
				return -1, false, fmt.Errorf("%w, and Create needs a non-zero Size", err)
			}
			fd, err := openRetry(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
			if errors.Is(err, unix.EEXIST) {
				continue
			}
			if err != nil {
				return -1, false, describeOpenErr(fmt.Errorf("create: %w", err))
			}
			return fd, true, nil
		case err != nil:
			return -1, false, describeOpenErr(fmt.Errorf("stat: %w", err))
		}
		kind := st.Mode & unix.S_IFMT
		if kind != unix.S_IFREG && kind != unix.S_IFBLK {
			return -1, false, fmt.Errorf("%w (it is a %s)", ErrNotFileOrDevice, fileType(kind))
		}
		flags := unix.O_RDWR | unix.O_CLOEXEC
		if opts.ReadOnly {
			flags = unix.O_RDONLY | unix.O_CLOEXEC
		} else if kind == unix.S_IFBLK {
			flags |= unix.O_EXCL // fails with EBUSY if mounted or claimed
		}
		fd, err := openRetry(path, flags, 0)
		if errors.Is(err, unix.EBUSY) {
			return -1, false, fmt.Errorf("%w: the block device is mounted or held open exclusively (%w)", ErrInUse, err)
		}
		if err != nil {
			return -1, false, describeOpenErr(err)
		}
		return fd, false, nil
	}
	return -1, false, fmt.Errorf("%w: file appeared and disappeared while creating it", unix.ENOENT)
}

func openRetry(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// describeOpenErr adds a hint to common open failures.
func describeOpenErr(err error) error {
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (check owner, mode and security policy, or set ReadOnly)", err)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%w (set ReadOnly to serve it read-only)", err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w (does the parent directory exist?)", err)
	}
	return err
}

// initCreated sizes a freshly created file and makes its existence durable.
func initCreated(fd int, path string, size int64) error {
	if err := retryEINTR(func() error { return unix.Ftruncate(fd, size) }); err != nil {
		return fmt.Errorf("set size of new file to %d: %w", size, err)
	}
	if err := retryEINTR(func() error { return unix.Fsync(fd) }); err != nil {
		return fmt.Errorf("fsync new file: %w", err)
	}
	dir, err := openRetry(filepath.Dir(path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open parent directory: %w", err)
	}
	defer unix.Close(dir)
	if err := retryEINTR(func() error { return unix.Fsync(dir) }); err != nil {
		return fmt.Errorf("fsync parent directory: %w", err)
	}
	return nil
}

// setDirect turns on O_DIRECT. Filesystems without direct I/O refuse it
// with EINVAL; we never fall back to buffered I/O.
func setDirect(fd int) error {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("fcntl F_GETFL: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_DIRECT); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return noDirectErr()
		}
		return fmt.Errorf("fcntl set O_DIRECT: %w", err)
	}
	return nil
}

func noDirectErr() error {
	return fmt.Errorf("%w: put the backing file on a disk filesystem such as ext4 or xfs (not tmpfs/ramfs), or use a block device", ErrNoDirectIO)
}

// dioAlign returns the memory and file-offset alignment O_DIRECT needs.
func dioAlign(fd int, st *unix.Stat_t, blockDev bool) (memAlign, offAlign int, err error) {
	var sx unix.Statx_t
	err = retryEINTR(func() error {
		return unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &sx)
	})
	if err == nil && sx.Mask&unix.STATX_DIOALIGN != 0 {
		if sx.Dio_offset_align == 0 {
			return 0, 0, noDirectErr()
		}
		return int(sx.Dio_mem_align), int(sx.Dio_offset_align), nil
	}
	// Kernels before 6.1 (or filesystems that do not report it).
	if blockDev {
		lbs, err := unix.IoctlGetUint32(fd, unix.BLKSSZGET)
		if err != nil {
			return 0, 0, fmt.Errorf("ioctl BLKSSZGET: %w", err)
		}
		return int(lbs), int(lbs), nil
	}
	var sfs unix.Statfs_t
	if err := retryEINTR(func() error { return unix.Fstatfs(fd, &sfs) }); err != nil {
		return 0, 0, fmt.Errorf("fstatfs: %w", err)
	}
	switch uint32(sfs.Type) {
	case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC:
		// Since Linux 6.6 tmpfs accepts O_DIRECT but buffers anyway.
		return 0, 0, noDirectErr()
	}
	// ext4 and xfs need the logical sector size of the underlying device.
	if lbs := sysfsLogicalBlockSize(st.Dev); lbs > 0 {
		return lbs, lbs, nil
	}
	// Unknown: assume the filesystem block size, within [512, Align].
	a := min(max(int(st.Blksize), 512), Align)
	return a, a, nil
}

// sysfsLogicalBlockSize returns the logical block size of the block device
// dev (or of its parent disk for a partition), or 0 if unknown.
func sysfsLogicalBlockSize(dev uint64) int {
	base := fmt.Sprintf("/sys/dev/block/%d:%d/", unix.Major(dev), unix.Minor(dev))
	for _, p := range []string{base + "queue/logical_block_size", base + "../queue/logical_block_size"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

func blkSize(fd int) (int64, error) {
	var size uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size)))
	if errno != 0 {
		return 0, fmt.Errorf("ioctl BLKGETSIZE64: %w", errno)
	}
	return int64(size), nil
}

func checkSize(size int64, opts Options, blockDev bool) error {
	what := "file"
	if blockDev {
		what = "block device"
	}
	bs := int64(opts.BlockSize)
	if opts.Size != 0 && size != opts.Size {
		if blockDev {
			return fmt.Errorf("%w: %s is %d bytes, configured Size is %d (set Size to 0 or %d)", ErrSizeMismatch, what, size, opts.Size, size)
		}
		if size < opts.Size {
			return fmt.Errorf("%w: existing %s is %d bytes, smaller than configured Size %d; grow it explicitly (truncate -s %d) if that is intended", ErrSizeMismatch, what, size, opts.Size, opts.Size)
		}
		return fmt.Errorf("%w: existing %s is %d bytes, larger than configured Size %d; refusing to hide data beyond Size (set Size to 0 or %d)", ErrSizeMismatch, what, size, opts.Size, size)
	}
	if size < bs {
		return fmt.Errorf("%w: %s is %d bytes, too small: needs at least one %d-byte block", ErrBadSize, what, size, bs)
	}
	if size%bs != 0 {
		return fmt.Errorf("%w: %s is %d bytes, not a multiple of BlockSize %d", ErrBadSize, what, size, bs)
	}
	return nil
}

func fstat(fd int, st *unix.Stat_t) error {
	if err := retryEINTR(func() error { return unix.Fstat(fd, st) }); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	return nil
}

func fileType(kind uint32) string {
	switch kind {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFLNK:
		return "symbolic link"
	}
	return fmt.Sprintf("file of type %#o", kind)
}

func retryEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// Path returns the path given to Open.
func (f *File) Path() string { return f.path }

// BlockSize returns the block size given to Open.
func (f *File) BlockSize() int { return int(f.bmask + 1) }

// ReadOnly reports whether the device was opened read-only.
func (f *File) ReadOnly() bool { return f.readOnly }

// IsBlockDevice reports whether the backing store is a block device.
func (f *File) IsBlockDevice() bool { return f.blockDev }

// Size returns the capacity in bytes, fixed at Open.
func (f *File) Size() int64 { return f.size }

// AsyncIO reports whether the File has a Linux native AIO context (false:
// it always uses pread/pwrite from the caller's goroutine). See IOMode.
func (f *File) AsyncIO() bool { return f.aio != nil }

// ReadAt implements Device.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if err := checkIO(p, off, f.size, f.bmask); err != nil {
		return 0, f.wrap("read", off, int64(len(p)), err)
	}
	f.closeMu.RLock()
	defer f.closeMu.RUnlock()
	if f.closed {
		return 0, f.wrap("read", off, int64(len(p)), ErrClosed)
	}
	n, err := f.readLocked(p, off)
	if err != nil {
		return n, f.wrap("read", off, int64(len(p)), err)
	}
	return n, nil
}

// Sentinels of the AIO path, never returned by File's methods.
var (
	// errAIOAgain: io_submit failed with EAGAIN (the kernel is out of
	// AIO resources); the rest of the transfer goes synchronously.
	errAIOAgain = errors.New("io_submit: resources temporarily unavailable")
	// errAIOFlags: the kernel refused aio_rw_flags (before Linux 4.13).
	errAIOFlags = errors.New("io_submit: aio_rw_flags refused")
)

// beginTransfer counts a transfer in flight and reports whether it goes
// through f.aio (see IOMode). Every call must be followed by endTransfer.
func (f *File) beginTransfer() (async bool) {
	if f.aio == nil {
		return false
	}
	return f.active.Add(1) > 1 || f.alwaysAIO
}

func (f *File) endTransfer() {
	if f.aio != nil {
		f.active.Add(-1)
	}
}

// readLocked reads all of p at off, with AIO or pread as beginTransfer
// decides (and with pread what remains after errAIOAgain). The error is
// not wrapped. closeMu must be held shared.
func (f *File) readLocked(p []byte, off int64) (int, error) {
	n := 0
	async := f.beginTransfer()
	defer f.endTransfer()
	if async {
		m, err := f.aio.rw(f.fd, iocbCmdPread, 0, p, off)
		if err != errAIOAgain {
			return m, err
		}
		n = m
	}
	for n < len(p) {
		m, err := unix.Pread(f.fd, p[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 { // the file shrank under us
			return n, io.ErrUnexpectedEOF
		}
		n += m
	}
	return n, nil
}

// WriteAt implements Device.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if err := f.checkWrite(p, off); err != nil {
		return 0, err
	}
	f.closeMu.RLock()
	defer f.closeMu.RUnlock()
	if f.closed {
		return 0, f.wrap("write", off, int64(len(p)), ErrClosed)
	}
	n, err := f.writeLocked(p, off)
	if err != nil {
		return n, f.wrap("write", off, int64(len(p)), err)
	}
	return n, nil
}

// writeLocked writes all of p at off, with AIO or pwrite as
// beginTransfer decides (and with pwrite what remains after errAIOAgain).
// The error is not wrapped. closeMu must be held shared.
func (f *File) writeLocked(p []byte, off int64) (int, error) {
	n := 0
	async := f.beginTransfer()
	defer f.endTransfer()
	if async {
		m, err := f.aio.rw(f.fd, iocbCmdPwrite, 0, p, off)
		if err != errAIOAgain {
			return m, err
		}
		n = m
	}
	m, err := pwriteAll(f.fd, p[n:], off+int64(n))
	return n + m, err
}

// WriteAtAsync implements AsyncWriter with native AIO. It returns false
// when the file has no AIO context, all its request slots are busy, the
// request is invalid (WriteAt then reports why) or the file is closing.
func (f *File) WriteAtAsync(p []byte, off int64, done func(error)) bool {
	if f.aio == nil || len(p) == 0 || f.checkWrite(p, off) != nil {
		return false
	}
	// Held shared until done: Close waits for the write.
	if !f.closeMu.TryRLock() {
		return false
	}
	if f.closed {
		f.closeMu.RUnlock()
		return false
	}
	f.active.Add(1)
	finish := func(err error) {
		f.endTransfer()
		f.closeMu.RUnlock()
		if err != nil {
			err = f.wrap("write", off, int64(len(p)), err)
		}
		done(err)
	}
	started := f.aio.start(f.fd, iocbCmdPwrite, p, off, func(res int64) {
		switch {
		case res == int64(len(p)):
			finish(nil)
		case res < 0 && res != -int64(unix.EINTR):
			finish(unix.Errno(-res))
		default:
			// Short or interrupted: the rest synchronously, off the
			// reaper, which must not block.
			n := int(max(res, 0))
			go func() {
				_, err := pwriteAll(f.fd, p[n:], off+int64(n))
				finish(err)
			}()
		}
	})
	if !started {
		f.endTransfer()
		f.closeMu.RUnlock()
	}
	return started
}

func (f *File) checkWrite(p []byte, off int64) error {
	if f.readOnly {
		return f.wrap("write", off, int64(len(p)), ErrReadOnly)
	}
	if err := checkIO(p, off, f.size, f.bmask); err != nil {
		return f.wrap("write", off, int64(len(p)), err)
	}
	return nil
}

// pwriteAll writes all of p with pwrite. The error is not wrapped.
func pwriteAll(fd int, p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pwrite(fd, p[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.ErrShortWrite
		}
		n += m
	}
	return n, nil
}

// pwriteLocked writes all of p synchronously; closeMu must be held shared.
func (f *File) pwriteLocked(p []byte, off int64, op string) (int, error) {
	n, err := pwriteAll(f.fd, p, off)
	if err != nil {
		return n, f.wrap(op, off, int64(len(p)), err)
	}
	return n, nil
}

// WriteAtFUA implements FUAWriter with a write flagged RWF_DSYNC, which
// the kernel turns into a FUA write (or a write plus cache flush): an
// IOCB_CMD_PWRITE with aio_rw_flags RWF_DSYNC when it goes through AIO,
// else pwritev2. If the kernel refuses RWF_DSYNC in an iocb (before Linux
// 4.13) it uses pwritev2, and if it lacks pwritev2 or RWF_DSYNC, pwrite
// plus fdatasync. After a failed flush it fails with ErrFlushFailed.
func (f *File) WriteAtFUA(p []byte, off int64) (int, error) {
	if err := f.checkWrite(p, off); err != nil {
		return 0, err
	}
	f.closeMu.RLock()
	defer f.closeMu.RUnlock()
	if f.closed {
		return 0, f.wrap("write-fua", off, int64(len(p)), ErrClosed)
	}
	if e := f.flushErr.Load(); e != nil {
		return 0, f.wrap("write-fua", off, int64(len(p)), *e)
	}
	n, err := f.writeFUALocked(p, off)
	if err != nil {
		return n, f.wrap("write-fua", off, int64(len(p)), err)
	}
	return n, nil
}

// writeFUALocked writes all of p at off durably, with AIO or
// synchronously as beginTransfer decides. The error is not wrapped
// (except fdatasync's, which wraps ErrFlushFailed). closeMu must be held
// shared.
func (f *File) writeFUALocked(p []byte, off int64) (int, error) {
	n := 0
	async := f.beginTransfer()
	defer f.endTransfer()
	if async && !f.noAIODSync.Load() {
		m, err := f.aio.rw(f.fd, iocbCmdPwrite, unix.RWF_DSYNC, p, off)
		switch err {
		case nil:
			return m, nil
		case errAIOFlags: // m == 0
			f.noAIODSync.Store(true)
		case errAIOAgain:
			n = m
		default:
			return m, err
		}
	}
	if !f.noPwritev2.Load() {
		for n < len(p) {
			m, err := pwritev2DSync(f.fd, p[n:], off+int64(n))
			if err == unix.EINTR {
				continue
			}
			if err == unix.ENOSYS || err == unix.EOPNOTSUPP {
				f.noPwritev2.Store(true)
				break
			}
			if err != nil {
				return n, err
			}
			if m == 0 {
				return n, io.ErrShortWrite
			}
			n += m
		}
		if n == len(p) {
			return n, nil
		}
	}
	m, err := pwriteAll(f.fd, p[n:], off+int64(n))
	n += m
	if err != nil {
		return n, err
	}
	if err := f.fdatasyncLocked(); err != nil {
		return n, err
	}
	return n, nil
}

// pwritev2DSync is pwritev2(fd, {p}, 1, off, RWF_DSYNC) without the
// allocation unix.Pwritev2 makes for its iovec slice.
func pwritev2DSync(fd int, p []byte, off int64) (int, error) {
	iov := unix.Iovec{Base: unsafe.SliceData(p)}
	iov.SetLen(len(p))
	const longBits = unix.SizeofLong * 8
	lo, hi := uintptr(off), uintptr(uint64(off)>>(longBits-1)>>1) // the kernel's pos_l, pos_h
	r, _, errno := unix.Syscall6(unix.SYS_PWRITEV2, uintptr(fd), uintptr(unsafe.Pointer(&iov)), 1, lo, hi, unix.RWF_DSYNC)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// Flush implements Device with fdatasync. For a block device this flushes
// the device's volatile write cache; for a file it also commits the
// metadata needed to read the data back (block allocation, size). After a
// failure every later Flush fails too, with ErrFlushFailed.
func (f *File) Flush() error {
	f.closeMu.RLock()
	defer f.closeMu.RUnlock()
	if f.closed {
		return fmt.Errorf("blockdev: flush %s: %w", f.path, ErrClosed)
	}
	if err := f.fdatasyncLocked(); err != nil {
		return fmt.Errorf("blockdev: flush %s: %w", f.path, err)
	}
	return nil
}

// fdatasyncLocked runs fdatasync, recording a failure for good.
func (f *File) fdatasyncLocked() error {
	if e := f.flushErr.Load(); e != nil {
		return *e
	}
	if err := retryEINTR(func() error { return unix.Fdatasync(f.fd) }); err != nil {
		e := fmt.Errorf("%w: fdatasync: %w", ErrFlushFailed, err)
		f.flushErr.CompareAndSwap(nil, &e)
		return *f.flushErr.Load()
	}
	return nil
}

// Discard implements Discarder. It tries, in order: fallocate
// PUNCH_HOLE|KEEP_SIZE (a file frees the blocks; a block device gets
// REQ_OP_WRITE_ZEROES with unmap allowed, never a plain BLKDISCARD, whose
// data after the discard is undefined), fallocate ZERO_RANGE|KEEP_SIZE,
// then for a block device ioctl BLKZEROOUT and for a file writing zeros.
// Each of these leaves the range reading as zeros.
func (f *File) Discard(off, n int64) error {
	if f.readOnly {
		return f.wrap("discard", off, n, ErrReadOnly)
	}
	if err := checkRange(off, n, f.size, f.bmask); err != nil {
		return f.wrap("discard", off, n, err)
	}
	if n == 0 {
		return nil
	}
	f.closeMu.RLock()
	defer f.closeMu.RUnlock()
	if f.closed {
		return f.wrap("discard", off, n, ErrClosed)
	}
	for _, mode := range []uint32{
		unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
		unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE,
	} {
		err := retryEINTR(func() error { return unix.Fallocate(f.fd, mode, off, n) })
		if err == nil {
			return nil
		}
		if err != unix.EOPNOTSUPP && err != unix.ENOSYS && err != unix.EINVAL {
			return f.wrap("discard", off, n, err)
		}
	}
	if f.blockDev {
		err := f.blkZeroOutLocked(off, n)
		if err == nil {
			return nil
		}
		if err != unix.EOPNOTSUPP && err != unix.ENOTTY {
			return f.wrap("discard", off, n, fmt.Errorf("ioctl BLKZEROOUT: %w", err))
		}
	}
	return f.writeZerosLocked(off, n)
}

// Mapped implements Mapper. For an image file it asks the file system with
// lseek SEEK_DATA and SEEK_HOLE, so a hole (never written, or punched by
// Discard) is unmapped; the answer is in units of the file system's block.
// A block device cannot tell: its ranges are all mapped.
func (f *File) Mapped(off, n int64) (bool, int64, error) {
	if off < 0 || n <= 0 || off >= f.size {
		return false, 0, f.wrap("map", off, n, ErrOutOfRange)
	}
	n = min(n, f.size-off)
	if f.blockDev {
		return true, n, nil
	}
	f.closeMu.RLock()
	defer f.closeMu.RUnlock()
	if f.closed {
		return false, 0, f.wrap("map", off, n, ErrClosed)
	}
	data, err := unix.Seek(f.fd, off, unix.SEEK_DATA)
	switch {
	case err == unix.ENXIO: // no data at or after off
		return false, n, nil
	case err != nil:
		return false, 0, f.wrap("map", off, n, fmt.Errorf("lseek SEEK_DATA: %w", err))
	case data > off:
		return false, min(n, data-off), nil
	}
	hole, err := unix.Seek(f.fd, off, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, f.wrap("map", off, n, fmt.Errorf("lseek SEEK_HOLE: %w", err))
	}
	return true, min(n, hole-off), nil
}

// blkZeroOutLocked zeroes a range of a block device with BLKZEROOUT, which
// the kernel serves with WRITE ZEROES or, failing that, by writing zeros.
func (f *File) blkZeroOutLocked(off, n int64) error {
	rng := [2]uint64{uint64(off), uint64(n)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(f.fd), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&rng)))
	if errno != 0 {
		return errno
	}
	return nil
}

const zeroBufSize = 1 << 20

func (f *File) writeZerosLocked(off, n int64) error {
	f.zeroOnce.Do(func() { f.zeroBuf = alignedSlice(zeroBufSize) })
	for n > 0 {
		c := min(n, zeroBufSize)
		if _, err := f.pwriteLocked(f.zeroBuf[:c], off, "discard"); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}

// Close implements Device: it waits for calls in flight, runs fdatasync
// (unless read-only), destroys the AIO context, stops the reaper goroutine
// and closes the descriptor, releasing the lock. The descriptor is closed
// even if fdatasync fails.
func (f *File) Close() error {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	if f.closed {
		return fmt.Errorf("blockdev: close %s: %w", f.path, ErrClosed)
	}
	f.closed = true
	var errs []error
	if !f.readOnly {
		if err := f.fdatasyncLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	if f.aio != nil {
		// Every AIO request is complete: its caller held closeMu shared.
		if err := f.aio.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unix.Close(f.fd); err != nil {
		errs = append(errs, fmt.Errorf("close: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("blockdev: close %s: %w", f.path, err)
	}
	return nil
}

// wrap adds the operation, path and range to err. Only error paths call it.
func (f *File) wrap(op string, off, n int64, err error) error {
	return fmt.Errorf("blockdev: %s %s at %d+%d: %w", op, f.path, off, n, err)
}
