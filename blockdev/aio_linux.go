//go:build linux && (amd64 || arm64)

package blockdev

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux native AIO (io_setup(2), io_submit(2), io_getevents(2),
// io_destroy(2)) for File.
//
// A caller of File.ReadAt/WriteAt/WriteAtFUA takes a free request slot,
// fills its iocb, calls io_submit and parks on the slot's completion
// channel. Every iocb carries IOCB_FLAG_RESFD, so the kernel adds 1 to an
// eventfd when it completes. The eventfd is non-blocking and registered
// with Go's network poller; one reaper goroutine per File waits for it in
// the poller (holding no OS thread), resets it, then collects every
// completion with io_getevents(min_nr=0) and hands each result to its
// slot. Slots, channels and the event buffer are allocated once, at Open,
// so the data path does not allocate.

// The kernel ABI, from include/uapi/linux/aio_abi.h.
const (
	iocbCmdPread  = 0      // IOCB_CMD_PREAD
	iocbCmdPwrite = 1      // IOCB_CMD_PWRITE
	iocbFlagResfd = 1 << 0 // IOCB_FLAG_RESFD: signal aio_resfd on completion
)

// iocb is struct iocb for little-endian machines (where aio_key comes
// before aio_rw_flags); the layout is the same on every 64-bit
// architecture: 64 bytes, no implicit padding.
type iocb struct {
	data      uint64 // aio_data: returned in ioEvent.data; we put the slot index
	key       uint32 // aio_key: set by the kernel
	rwFlags   int32  // aio_rw_flags: RWF_* (Linux 4.13+; must be 0 before)
	opcode    uint16 // aio_lio_opcode: iocbCmd*
	reqprio   int16  // aio_reqprio
	fildes    uint32 // aio_fildes
	buf       uint64 // aio_buf: buffer address
	nbytes    uint64 // aio_nbytes
	offset    int64  // aio_offset
	reserved2 uint64 // aio_reserved2: must be 0
	flags     uint32 // aio_flags: iocbFlag*
	resfd     uint32 // aio_resfd: eventfd signalled with IOCB_FLAG_RESFD
}

// ioEvent is struct io_event.
type ioEvent struct {
	data uint64 // aio_data of the completed iocb
	obj  uint64 // address of the iocb
	res  int64  // bytes transferred, or a negative errno
	res2 int64
}

// Compile-time checks of the ABI sizes.
var (
	_ [unsafe.Sizeof(iocb{}) - 64]struct{}
	_ [64 - unsafe.Sizeof(iocb{})]struct{}
	_ [unsafe.Sizeof(ioEvent{}) - 32]struct{}
	_ [32 - unsafe.Sizeof(ioEvent{})]struct{}
)

// haveAIOLayout reports whether this architecture uses native AIO.
const haveAIOLayout = true

// maxReap is the number of completions one io_getevents call collects.
const maxReap = 128

// aioCtx is one AIO context with its eventfd, request slots and reaper.
// All fields are set by newAIOContext and never change, except those the
// comments give to the reaper or to a slot's current owner.
type aioCtx struct {
	id     uintptr  // aio_context_t
	efd    *os.File // non-blocking eventfd in the network poller
	efdRC  syscall.RawConn
	resfd  uint32        // efd's descriptor, for iocb.resfd
	slots  []aioSlot     // indexed by iocb.data
	free   chan *aioSlot // idle slots; holding one admits one iocb to the context
	exited chan struct{} // closed when the reaper returns

	// Owned by the reaper goroutine.
	events []ioEvent
	evbuf  [8]byte // the eventfd counter
	zero   unix.Timespec
	reapFn func(fd uintptr) bool // a.reapReady, bound once
}

// aioSlot carries one request at a time, owned by the goroutine that took
// it from aioCtx.free. The reaper only sends on done, which is fixed.
type aioSlot struct {
	cb   iocb
	cbp  *iocb      // &cb: io_submit takes an array of iocb pointers, this is it
	buf  []byte     // the buffer the kernel holds the address of; keeps it alive and on the heap
	done chan int64 // io_event.res of each completion; capacity 1
	// async, when set, takes the completion instead of done (see start).
	// Atomic: the race detector cannot see that io_submit orders the
	// submitter's store before the reaper's load.
	async atomic.Pointer[func(res int64)]
	idx   uint64
	uses  uint64 // rw calls that used the slot, for tests
}

// newAIOContext sets up a context for depth requests in flight and starts
// its reaper. The caller must call close.
func newAIOContext(depth int) (*aioCtx, error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	var id uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, uintptr(depth), uintptr(unsafe.Pointer(&id)), 0); e != 0 {
		unix.Close(efd)
		return nil, fmt.Errorf("io_setup(%d): %w", depth, e)
	}
	a := &aioCtx{
		id:     id,
		efd:    os.NewFile(uintptr(efd), "aio-eventfd"), // non-blocking: goes to the poller
		resfd:  uint32(efd),
		slots:  make([]aioSlot, depth),
		free:   make(chan *aioSlot, depth),
		exited: make(chan struct{}),
		events: make([]ioEvent, min(depth, maxReap)),
	}
	if a.efdRC, err = a.efd.SyscallConn(); err != nil {
		a.efd.Close()
		unix.Syscall(unix.SYS_IO_DESTROY, id, 0, 0)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	a.reapFn = a.reapReady
	for i := range a.slots {
		s := &a.slots[i]
		s.cbp = &s.cb
		s.done = make(chan int64, 1)
		s.idx = uint64(i)
		a.free <- s
	}
	go a.reap()
	return a, nil
}

// rw transfers p at off with one iocb of opcode op (iocbCmdPread or
// iocbCmdPwrite) and aio_rw_flags rwFlags, and waits for it; after a short
// transfer it submits the rest. n counts the bytes transferred. err is
//   - nil;
//   - errAIOAgain: io_submit failed with EAGAIN, the kernel is out of AIO
//     resources; the caller should transfer p[n:] synchronously;
//   - errAIOFlags: io_submit refused the first iocb with EINVAL or
//     EOPNOTSUPP while rwFlags != 0, so the kernel lacks aio_rw_flags
//     (before 4.13) or this flag;
//   - an errno from io_submit or from the completion (io_event.res);
//   - io.ErrUnexpectedEOF (read) or io.ErrShortWrite (write) when the
//     kernel transferred nothing, as at the end of a file.
//
// It does not allocate.
func (a *aioCtx) rw(fd int, op uint16, rwFlags int32, p []byte, off int64) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	s := <-a.free
	s.uses++
	// p escapes through s.buf, so a caller's buffer can never be on a
	// goroutine stack, which the runtime may move while we wait.
	s.buf = p
	for n < len(p) {
		s.cb = a.iocbFor(s, fd, op, rwFlags, p[n:], off+int64(n))
		if err = a.submit(s); err != nil {
			if rwFlags != 0 && n == 0 && (err == unix.EINVAL || err == unix.EOPNOTSUPP) {
				err = errAIOFlags
			}
			break
		}
		// The result comes over the channel rather than in a field of s:
		// the race detector cannot see that io_submit orders our use of
		// s before the reaper's.
		res := <-s.done
		if res == -int64(unix.EINTR) {
			continue
		}
		if res < 0 {
			err = unix.Errno(-res)
			break
		}
		if res == 0 {
			err = io.ErrShortWrite
			if op == iocbCmdPread {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		n += int(res)
	}
	s.buf = nil
	a.free <- s
	return n, err
}

// start submits one iocb for p at off without waiting: it returns false
// when no request slot is free or io_submit fails, and otherwise calls
// done with the io_event.res on the reaper goroutine. done must not block
// (its slot is free again before it runs, so it may call start). p must
// stay unchanged until done.
func (a *aioCtx) start(fd int, op uint16, p []byte, off int64, done func(res int64)) bool {
	if len(p) == 0 {
		return false
	}
	var s *aioSlot
	select {
	case s = <-a.free:
	default:
		return false
	}
	s.uses++
	s.buf = p
	s.cb = a.iocbFor(s, fd, op, 0, p, off)
	s.async.Store(&done)
	if err := a.submit(s); err != nil {
		s.async.Store(nil)
		s.buf = nil
		a.free <- s
		return false
	}
	return true
}

// iocbFor returns slot s's iocb transferring q at off, its completion
// signalled on the context's eventfd.
func (a *aioCtx) iocbFor(s *aioSlot, fd int, op uint16, rwFlags int32, q []byte, off int64) iocb {
	return iocb{
		data:    s.idx,
		rwFlags: rwFlags,
		opcode:  op,
		fildes:  uint32(fd),
		buf:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(q)))),
		nbytes:  uint64(len(q)),
		offset:  off,
		flags:   iocbFlagResfd,
		resfd:   a.resfd,
	}
}

// submit passes s.cb to io_submit.
func (a *aioCtx) submit(s *aioSlot) error {
	for {
		r, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.id, 1, uintptr(unsafe.Pointer(&s.cbp)))
		switch {
		case e == 0 && r == 1:
			return nil
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN, e == 0:
			return errAIOAgain
		}
		return e
	}
}

// reap is the reaper goroutine. RawConn.Read calls reapReady, and after
// each call waits in the network poller until the eventfd is signalled
// again; it returns when close closes the eventfd.
func (a *aioCtx) reap() {
	defer close(a.exited)
	_ = a.efdRC.Read(a.reapFn)
}

// reapReady resets the eventfd counter and, unless it was zero, collects
// the completions. It returns false: wait for the next signal.
//
// Every completion adds to the counter after its event is in the ring.
// So when the read finds the counter zero, the completions it counted
// were collected by an earlier drain, which started after the read that
// reset it; and a completion that adds to the counter after the read is
// either collected by the drain below or reported again by the poller.
func (a *aioCtx) reapReady(fd uintptr) bool {
	// Non-blocking and never slow, so no need to hand off the P.
	_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&a.evbuf[0])), uintptr(len(a.evbuf)))
	if e == 0 {
		a.drain()
	}
	return false
}

// drain collects every completion in the ring without blocking and hands
// each result to its slot.
func (a *aioCtx) drain() {
	for {
		// With min_nr 0 and a zero timeout io_getevents never sleeps, so
		// it needs no handoff of the P.
		r, _, e := unix.RawSyscall6(unix.SYS_IO_GETEVENTS, a.id, 0, uintptr(len(a.events)),
			uintptr(unsafe.Pointer(&a.events[0])), uintptr(unsafe.Pointer(&a.zero)), 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			// EFAULT or EINVAL: impossible with a live context and our
			// own buffers. The events stay in the ring for the next try.
			return
		}
		for i := range int(r) {
			ev := &a.events[i]
			s := &a.slots[ev.data]
			if done := s.async.Swap(nil); done != nil {
				// The slot is free again before done runs, so that done
				// may start another transfer.
				s.buf = nil
				a.free <- s // never blocks: the slot was taken from free
				(*done)(ev.res)
				continue
			}
			s.done <- ev.res // never blocks: one completion per submission
		}
		if int(r) < len(a.events) {
			return
		}
	}
}

// close stops the reaper and destroys the context. No request may be in
// flight or start later.
func (a *aioCtx) close() error {
	err := a.efd.Close() // wakes the reaper with an error
	<-a.exited
	if _, _, e := unix.Syscall(unix.SYS_IO_DESTROY, a.id, 0, 0); e != 0 && err == nil {
		err = fmt.Errorf("io_destroy: %w", e)
	}
	return err
}
