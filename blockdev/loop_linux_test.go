//go:build linux

package blockdev

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Tests on real block devices: loop devices set up with losetup.

func TestLoopDevice(t *testing.T) {
	const size = 32 << 20
	for _, tc := range []struct {
		name         string
		sector, bs   int
		wantErr      error
		wantErrMatch string
		io           IOMode
	}{
		{name: "512e sectors, 512 blocks", sector: 512, bs: 512},
		{name: "512e sectors, 4096 blocks", sector: 512, bs: 4096},
		{name: "4Kn sectors, 4096 blocks", sector: 4096, bs: 4096},
		{name: "4Kn sectors, 4096 blocks, sync", sector: 4096, bs: 4096, io: IOSync},
		{name: "512e sectors, 512 blocks, async", sector: 512, bs: 512, io: IOAsync},
		{name: "4Kn sectors, 512 blocks", sector: 4096, bs: 512, wantErr: ErrBlockSize, wantErrMatch: "configure BlockSize 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := loopDevice(t, size, tc.sector)
			f, err := Open(dev, Options{BlockSize: tc.bs, IO: tc.io})
			if tc.wantErr != nil {
				if err == nil {
					f.Close()
				}
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantErrMatch) || !strings.Contains(err.Error(), dev) {
					t.Fatalf("Open = %v, want %v mentioning %q and %s", err, tc.wantErr, tc.wantErrMatch, dev)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			if !f.IsBlockDevice() || f.Size() != size {
				t.Fatalf("IsBlockDevice %v Size %d, want true %d", f.IsBlockDevice(), f.Size(), size)
			}
			if tc.io != IOSync {
				requireAIO(t, f)
			}
			testDeviceContract(t, f, tc.bs)
		})
	}
}

func TestLoopDeviceOpenRules(t *testing.T) {
	const size = 16 << 20
	dev := loopDevice(t, size, 512)

	if _, err := Open(dev, Options{Size: size / 2, BlockSize: 512}); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("Open with wrong Size = %v, want ErrSizeMismatch", err)
	}
	f := mustOpen(t, dev, Options{Size: size, BlockSize: 512, Create: true})
	if _, err := Open(dev, Options{}); !errors.Is(err, ErrInUse) {
		t.Errorf("second Open of block device = %v, want ErrInUse", err)
	}
	if _, err := Open(dev, Options{ReadOnly: true}); !errors.Is(err, ErrInUse) {
		t.Errorf("read-only Open beside read-write = %v, want ErrInUse", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ro := mustOpen(t, dev, Options{ReadOnly: true})
	p := NewPool()
	b := p.Get(512)
	if _, err := ro.WriteAt(b.B, 0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAt on read-only block device = %v", err)
	}
	if err := ro.Discard(0, 512); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Discard on read-only block device = %v", err)
	}
}

// TestZeroingFallbacks runs the Discard fallbacks that ext4 files and loop
// devices never reach through Discard itself (both punch holes).
func TestZeroingFallbacks(t *testing.T) {
	check := func(t *testing.T, f *File, zero func(off, n int64) error) {
		t.Helper()
		p := NewPool()
		w, r := p.Get(3<<20), p.Get(3<<20)
		fillPattern(w.B, 8)
		if _, err := f.WriteAt(w.B, 0); err != nil {
			t.Fatal(err)
		}
		f.closeMu.RLock()
		err := zero(4096, 2<<20+4096) // more than one zeroBuf
		f.closeMu.RUnlock()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadAt(r.B, 0); err != nil {
			t.Fatal(err)
		}
		clear(w.B[4096 : 2<<20+8192])
		if !bytes.Equal(w.B, r.B) {
			t.Error("wrong contents after zeroing")
		}
	}
	t.Run("write zeros", func(t *testing.T) {
		f := mustOpen(t, filepath.Join(directDir(t), "lun"), Options{Size: 4 << 20, Create: true, BlockSize: 4096})
		check(t, f, f.writeZerosLocked)
	})
	t.Run("BLKZEROOUT", func(t *testing.T) {
		f := mustOpen(t, loopDevice(t, 4<<20, 512), Options{BlockSize: 512})
		check(t, f, f.blkZeroOutLocked)
	})
}

// TestLoopDeviceEnd reads and writes across and beyond the end of a block
// device, past File's range checks, to reach the kernel: a short transfer
// is continued and the rest ends with the kernel's verdict, the same on
// the AIO and the synchronous path.
func TestLoopDeviceEnd(t *testing.T) {
	const size = 4 << 20
	dev := loopDevice(t, size, 4096)
	for _, mode := range ioModes {
		t.Run("io="+mode.String(), func(t *testing.T) {
			f := openMode(t, dev, Options{BlockSize: 4096}, mode)
			p := NewPool().Get(8192)
			fillPattern(p.B, 11)
			f.closeMu.RLock()
			defer f.closeMu.RUnlock()
			if n, err := f.writeLocked(p.B, size-4096); n != 4096 || !errors.Is(err, unix.ENOSPC) {
				t.Errorf("write across the end = %d, %v; want 4096, ENOSPC", n, err)
			}
			if n, err := f.readLocked(p.B, size-4096); n != 4096 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read across the end = %d, %v; want 4096, io.ErrUnexpectedEOF", n, err)
			}
			if n, err := f.readLocked(p.B, size); n != 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read at the end = %d, %v; want 0, io.ErrUnexpectedEOF", n, err)
			}
			want := NewPool().Get(4096)
			fillPattern(want.B, 11)
			if !bytes.Equal(p.B[:4096], want.B[:4096]) {
				t.Error("last block reads back wrong")
			}
		})
	}
}
