//go:build linux && (amd64 || arm64)

package blockdev

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestAIOLayout checks iocb and ioEvent against include/uapi/linux/aio_abi.h
// (little-endian: aio_key before aio_rw_flags).
func TestAIOLayout(t *testing.T) {
	var cb iocb
	for _, c := range []struct {
		field     string
		off, want uintptr
	}{
		{"aio_data", unsafe.Offsetof(cb.data), 0},
		{"aio_key", unsafe.Offsetof(cb.key), 8},
		{"aio_rw_flags", unsafe.Offsetof(cb.rwFlags), 12},
		{"aio_lio_opcode", unsafe.Offsetof(cb.opcode), 16},
		{"aio_reqprio", unsafe.Offsetof(cb.reqprio), 18},
		{"aio_fildes", unsafe.Offsetof(cb.fildes), 20},
		{"aio_buf", unsafe.Offsetof(cb.buf), 24},
		{"aio_nbytes", unsafe.Offsetof(cb.nbytes), 32},
		{"aio_offset", unsafe.Offsetof(cb.offset), 40},
		{"aio_reserved2", unsafe.Offsetof(cb.reserved2), 48},
		{"aio_flags", unsafe.Offsetof(cb.flags), 56},
		{"aio_resfd", unsafe.Offsetof(cb.resfd), 60},
	} {
		if c.off != c.want {
			t.Errorf("iocb.%s at offset %d, want %d", c.field, c.off, c.want)
		}
	}
	var ev ioEvent
	if unsafe.Offsetof(ev.data) != 0 || unsafe.Offsetof(ev.obj) != 8 || unsafe.Offsetof(ev.res) != 16 || unsafe.Offsetof(ev.res2) != 24 {
		t.Error("io_event layout differs from aio_abi.h")
	}
}

// TestAIOSetupFailure makes the kernel refuse a context: io_setup fails
// with EAGAIN when nr_events exceeds fs.aio-max-nr.
func TestAIOSetupFailure(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/fs/aio-max-nr")
	if err != nil {
		t.Skipf("cannot read fs.aio-max-nr: %v", err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAIOContext(max + 1)
	if err == nil {
		a.close()
		t.Fatalf("io_setup(%d) succeeded with fs.aio-max-nr %d", max+1, max)
	}
	if !errors.Is(err, unix.EAGAIN) || !strings.Contains(err.Error(), "io_setup") {
		t.Errorf("newAIOContext = %v, want io_setup EAGAIN", err)
	}
}

// TestAIOErrorPaths drives aioCtx.rw directly with requests that File's
// checks would refuse, to reach the kernel's errors.
func TestAIOErrorPaths(t *testing.T) {
	f := mustOpen(t, filepath.Join(directDir(t), "lun"), Options{Size: 1 << 20, Create: true, BlockSize: 4096})
	requireAIO(t, f)
	p := NewPool().Get(8192)
	fillPattern(p.B, 1)
	if _, err := f.WriteAt(p.B, 0); err != nil { // allocate: holes skip alignment checks
		t.Fatal(err)
	}

	t.Run("error in io_event.res", func(t *testing.T) {
		// A misaligned O_DIRECT read passes io_submit and completes
		// with res = -EINVAL.
		n, err := f.aio.rw(f.fd, iocbCmdPread, 0, p.B[:4096], 1)
		if n != 0 || err != unix.EINVAL {
			t.Errorf("misaligned read = %d, %v; want 0, EINVAL", n, err)
		}
	})
	t.Run("io_submit error", func(t *testing.T) {
		n, err := f.aio.rw(-1, iocbCmdPread, 0, p.B[:4096], 0)
		if n != 0 || err != unix.EBADF {
			t.Errorf("read on fd -1 = %d, %v; want 0, EBADF", n, err)
		}
	})
	t.Run("rw flags refused", func(t *testing.T) {
		const unknownRWF = 1 << 30
		n, err := f.aio.rw(f.fd, iocbCmdPwrite, unknownRWF, p.B[:4096], 0)
		if n != 0 || err != errAIOFlags {
			t.Errorf("write with unknown RWF = %d, %v; want 0, errAIOFlags", n, err)
		}
	})
	if idle, total := aioSlots(f); idle != total {
		t.Errorf("%d of %d slots idle after the errors", idle, total)
	}
}

// aioSlots returns the number of idle and of all AIO request slots of f.
func aioSlots(f *File) (idle, total int) {
	return len(f.aio.free), cap(f.aio.free)
}

// aioTransfers returns the number of transfers f has made with AIO. No
// transfer may be in flight.
func aioTransfers(f *File) uint64 {
	var n uint64
	for i := range f.aio.slots {
		n += f.aio.slots[i].uses
	}
	return n
}
