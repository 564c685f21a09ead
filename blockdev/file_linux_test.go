//go:build linux

package blockdev

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFileContract(t *testing.T) {
	for _, mode := range ioModes {
		for _, bs := range []int{512, 4096} {
			t.Run(fmt.Sprintf("io=%v/bs=%d", mode, bs), func(t *testing.T) {
				path := filepath.Join(directDir(t), "lun")
				f := openMode(t, path, Options{Size: 8 << 20, Create: true, BlockSize: bs}, mode)
				if f.BlockSize() != bs || f.Size() != 8<<20 || f.IsBlockDevice() || f.ReadOnly() || f.Path() != path {
					t.Fatalf("BlockSize %d Size %d IsBlockDevice %v ReadOnly %v Path %q", f.BlockSize(), f.Size(), f.IsBlockDevice(), f.ReadOnly(), f.Path())
				}
				testDeviceContract(t, f, bs)
				if f.noPwritev2.Load() {
					t.Error("pwritev2(RWF_DSYNC) unexpectedly unsupported; FUA used the fallback")
				}
				if f.noAIODSync.Load() {
					t.Error("RWF_DSYNC in an iocb unexpectedly refused; FUA used pwritev2")
				}
			})
		}
	}
}

func TestOpenCreatesSparseFile(t *testing.T) {
	path := filepath.Join(directDir(t), "lun")
	const size = 64 << 20
	f := mustOpen(t, path, Options{Size: size, Create: true, BlockSize: 4096})
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size {
		t.Errorf("file size %d, want %d", st.Size, size)
	}
	if st.Blocks*512 >= size/2 {
		t.Errorf("file uses %d bytes on disk, want a sparse file", st.Blocks*512)
	}
	if perm := st.Mode & 0o777; perm != 0o600 {
		t.Errorf("mode %#o, want 0600", perm)
	}
	p := NewPool()
	b := p.Get(1 << 20)
	defer p.Put(b)
	fillPattern(b.B, 9)
	if _, err := f.ReadAt(b.B, size-1<<20); err != nil {
		t.Fatal(err)
	}
	if !allZero(b.B) {
		t.Error("new file does not read as zeros")
	}

	// Reopening with Create keeps the data.
	fillPattern(b.B, 10)
	if _, err := f.WriteAt(b.B, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g := mustOpen(t, path, Options{Size: size, Create: true, BlockSize: 4096})
	r := p.Get(1 << 20)
	defer p.Put(r)
	if _, err := g.ReadAt(r.B, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.B, b.B) {
		t.Error("data lost when reopening with Create")
	}
}

func TestOpenSizeRules(t *testing.T) {
	dir := directDir(t)
	mk := func(name string, size int64) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name     string
		fileSize int64
		opts     Options
		want     error // nil: opens with Size() == wantSize
		wantSize int64
		msg      string
	}{
		{"existing size used", 1 << 20, Options{BlockSize: 512}, nil, 1 << 20, ""},
		{"matching size", 1 << 20, Options{Size: 1 << 20, BlockSize: 4096}, nil, 1 << 20, ""},
		{"block size defaults to 512", 1536, Options{}, nil, 1536, ""},
		{"smaller than configured", 1 << 20, Options{Size: 2 << 20, BlockSize: 512}, ErrSizeMismatch, 0, "smaller than configured"},
		{"smaller than configured with Create", 1 << 20, Options{Size: 2 << 20, Create: true, BlockSize: 512}, ErrSizeMismatch, 0, "truncate -s"},
		{"larger than configured", 2 << 20, Options{Size: 1 << 20, BlockSize: 512}, ErrSizeMismatch, 0, "larger than configured"},
		{"not a multiple", 1<<20 + 512, Options{BlockSize: 4096}, ErrBadSize, 0, "not a multiple of BlockSize 4096"},
		{"empty", 0, Options{BlockSize: 512}, ErrBadSize, 0, "too small"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := mk(strings.Repeat("f", i+1), tc.fileSize)
			f, err := Open(path, tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if f.Size() != tc.wantSize {
					t.Errorf("Size %d, want %d", f.Size(), tc.wantSize)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q should name %s and say %q", err, path, tc.msg)
			}
			if st, _ := os.Stat(path); st.Size() != tc.fileSize {
				t.Errorf("refused Open changed file size to %d", st.Size())
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := directDir(t)
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		path string
		opts Options
		want []error
		msg  []string
	}{
		{"not found", missing, Options{}, []error{fs.ErrNotExist}, []string{"set Create and Size"}},
		{"create without size", missing, Options{Create: true}, []error{fs.ErrNotExist}, []string{"non-zero Size"}},
		{"parent missing", filepath.Join(dir, "no", "such"), Options{Size: 4096, Create: true}, []error{fs.ErrNotExist}, []string{"parent directory"}},
		{"directory", dir, Options{}, []error{ErrNotFileOrDevice}, []string{"directory"}},
		{"character device", "/dev/null", Options{}, []error{ErrNotFileOrDevice}, []string{"character device"}},
		{"bad options", missing, Options{Size: -1, BlockSize: 1000, Create: true, ReadOnly: true},
			[]error{ErrInvalidOptions}, []string{"BlockSize 1000", "Size -1", "Create and ReadOnly"}},
		{"size not multiple", missing, Options{Size: 4097, BlockSize: 4096, Create: true},
			[]error{ErrInvalidOptions}, []string{"Size 4097: not a multiple of BlockSize 4096"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(tc.path, tc.opts)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q is not %v", err, w)
				}
			}
			for _, m := range append(tc.msg, tc.path) {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed Open left %s behind: %v", missing, err)
	}
}

// TestOpenRefusesTmpfs checks that O_DIRECT is never silently dropped:
// tmpfs either refuses O_DIRECT (before Linux 6.6) or accepts it while
// buffering anyway; Open must fail with ErrNoDirectIO in both cases and
// remove the file it created.
func TestOpenRefusesTmpfs(t *testing.T) {
	var dir string
	for _, cand := range []string{"/dev/shm", os.TempDir(), "/run"} {
		var sfs unix.Statfs_t
		if unix.Statfs(cand, &sfs) == nil && uint32(sfs.Type) == unix.TMPFS_MAGIC {
			d, err := os.MkdirTemp(cand, "blockdev-test-")
			if err != nil {
				continue
			}
			t.Cleanup(func() { os.RemoveAll(d) })
			dir = d
			break
		}
	}
	if dir == "" {
		t.Skip("no writable tmpfs mounted")
	}
	path := filepath.Join(dir, "lun")
	f, err := Open(path, Options{Size: 1 << 20, Create: true, BlockSize: 4096})
	if err == nil {
		f.Close()
		t.Fatal("Open on tmpfs succeeded")
	}
	if !errors.Is(err, ErrNoDirectIO) || !strings.Contains(err.Error(), "ext4") {
		t.Fatalf("Open = %v, want ErrNoDirectIO with advice", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file created by failed Open was not removed: %v", err)
	}
}

func TestOpenLocks(t *testing.T) {
	path := filepath.Join(directDir(t), "lun")
	opts := Options{Size: 1 << 20, Create: true, BlockSize: 512}
	f, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second read-write Open = %v, want ErrInUse", err)
	}
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrInUse) {
		t.Fatalf("read-only Open beside read-write = %v, want ErrInUse", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r1 := mustOpen(t, path, Options{ReadOnly: true})
	r2 := mustOpen(t, path, Options{ReadOnly: true})
	if _, err := Open(path, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("read-write Open beside read-only = %v, want ErrInUse", err)
	}
	r1.Close()
	r2.Close()
	mustOpen(t, path, Options{})
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(directDir(t), "lun")
	w := mustOpen(t, path, Options{Size: 1 << 20, Create: true, BlockSize: 4096})
	p := NewPool()
	b := p.Get(4096)
	fillPattern(b.B, 4)
	if _, err := w.WriteAt(b.B, 4096); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}

	f := mustOpen(t, path, Options{ReadOnly: true, BlockSize: 4096})
	if !f.ReadOnly() {
		t.Error("ReadOnly() = false")
	}
	r := p.Get(4096)
	if _, err := f.ReadAt(r.B, 4096); err != nil || !bytes.Equal(r.B, b.B) {
		t.Fatalf("ReadAt: %v (equal %v)", err, bytes.Equal(r.B, b.B))
	}
	if n, err := f.WriteAt(b.B, 0); n != 0 || !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAt = %d, %v; want ErrReadOnly", n, err)
	}
	if n, err := f.WriteAtFUA(b.B, 0); n != 0 || !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAtFUA = %d, %v; want ErrReadOnly", n, err)
	}
	if err := f.Discard(0, 4096); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Discard = %v; want ErrReadOnly", err)
	}
	if err := f.Flush(); err != nil {
		t.Errorf("Flush on read-only: %v", err)
	}
}

func TestClose(t *testing.T) {
	for _, mode := range ioModes {
		t.Run("io="+mode.String(), func(t *testing.T) { testClose(t, mode) })
	}
}

func testClose(t *testing.T, mode IOMode) {
	path := filepath.Join(directDir(t), "lun")
	f, err := Open(path, Options{Size: 1 << 20, Create: true, BlockSize: 4096, IO: mode})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool()
	b := p.Get(4096)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(b.B, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close = %v", err)
	}
	if _, err := f.WriteAt(b.B, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close = %v", err)
	}
	if _, err := f.WriteAtFUA(b.B, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAtFUA after Close = %v", err)
	}
	if err := f.Discard(0, 4096); !errors.Is(err, ErrClosed) {
		t.Errorf("Discard after Close = %v", err)
	}
	if err := f.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v", err)
	}
	if err := f.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	mustOpen(t, path, Options{}) // lock released
}

// TestCloseDuringIO closes while I/O runs: every call either completes or
// fails with ErrClosed, and none uses the descriptor after it is closed
// (the race detector and the fd check below would notice).
func TestCloseDuringIO(t *testing.T) {
	for _, mode := range ioModes {
		t.Run("io="+mode.String(), func(t *testing.T) { testCloseDuringIO(t, mode) })
	}
}

func testCloseDuringIO(t *testing.T, mode IOMode) {
	path := filepath.Join(directDir(t), "lun")
	f, err := Open(path, Options{Size: 4 << 20, Create: true, BlockSize: 4096, IO: mode})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			b := p.Get(4096)
			defer p.Put(b)
			<-start
			for i := 0; ; i++ {
				off := int64((w*256 + i%256) * 4096)
				var err error
				if i%2 == 0 {
					_, err = f.WriteAt(b.B, off)
				} else {
					_, err = f.ReadAt(b.B, off)
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("I/O during Close: %v", err)
					return
				}
			}
		})
	}
	close(start)
	if err := f.Close(); err != nil {
		t.Error(err)
	}
	wg.Wait()
}

// TestFlushFailureIsSticky makes fdatasync fail (on a pipe it returns
// EINVAL) and checks that later flushes keep failing even when fdatasync
// would succeed again: a retried fsync after a failure proves nothing.
func TestFlushFailureIsSticky(t *testing.T) {
	path := filepath.Join(directDir(t), "lun")
	f := mustOpen(t, path, Options{Size: 1 << 20, Create: true, BlockSize: 4096})
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	realFD := f.fd
	f.fd = pipe[0]
	err := f.Flush()
	f.fd = realFD
	if !errors.Is(err, ErrFlushFailed) || !errors.Is(err, unix.EINVAL) {
		t.Fatalf("Flush on pipe = %v, want ErrFlushFailed wrapping EINVAL", err)
	}
	if err := f.Flush(); !errors.Is(err, ErrFlushFailed) {
		t.Errorf("Flush after failure = %v, want ErrFlushFailed", err)
	}
	p := NewPool()
	b := p.Get(4096)
	if _, err := f.WriteAtFUA(b.B, 0); !errors.Is(err, ErrFlushFailed) {
		t.Errorf("WriteAtFUA after failure = %v, want ErrFlushFailed", err)
	}
	if _, err := f.WriteAt(b.B, 0); err != nil {
		t.Errorf("WriteAt after flush failure = %v, want success", err)
	}
	if err := f.Close(); !errors.Is(err, ErrFlushFailed) {
		t.Errorf("Close after flush failure = %v, want ErrFlushFailed", err)
	}
}

// TestFUAFallback runs the WriteAtFUA fallbacks: pwritev2(RWF_DSYNC) when
// the kernel refuses RWF_DSYNC in an iocb, and pwrite plus fdatasync when
// it lacks that too.
func TestFUAFallback(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		noAIODSync, noPwritev2 bool
	}{
		{"pwritev2", true, false},
		{"pwrite+fdatasync", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(directDir(t), "lun")
			f := mustOpen(t, path, Options{Size: 1 << 20, Create: true, BlockSize: 4096})
			f.noAIODSync.Store(tc.noAIODSync)
			f.noPwritev2.Store(tc.noPwritev2)
			p := NewPool()
			w, r := p.Get(8192), p.Get(8192)
			fillPattern(w.B, 5)
			if n, err := f.WriteAtFUA(w.B, 4096); n != 8192 || err != nil {
				t.Fatalf("WriteAtFUA fallback = %d, %v", n, err)
			}
			if _, err := f.ReadAt(r.B, 4096); err != nil || !bytes.Equal(w.B, r.B) {
				t.Fatalf("read back: %v", err)
			}
		})
	}
}

// TestDiscardFreesSpace checks that Discard on a file punches a hole: the
// blocks are freed, the size stays.
func TestDiscardFreesSpace(t *testing.T) {
	path := filepath.Join(directDir(t), "lun")
	const size = 8 << 20
	f := mustOpen(t, path, Options{Size: size, Create: true, BlockSize: 4096})
	expectMap(t, f, 0, size, false, size) // a new image file is one hole
	p := NewPool()
	b := p.Get(size)
	fillPattern(b.B, 6)
	if _, err := f.WriteAt(b.B, 0); err != nil {
		t.Fatal(err)
	}
	expectMap(t, f, 4096, size, true, size-4096)
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	used := func() int64 {
		var st unix.Stat_t
		if err := unix.Fstat(f.fd, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != size {
			t.Fatalf("file size changed to %d", st.Size)
		}
		return st.Blocks * 512
	}
	before := used()
	if err := f.Discard(1<<20, 4<<20); err != nil {
		t.Fatal(err)
	}
	after := used()
	if before-after < 4<<20 {
		t.Errorf("discard of 4 MiB freed %d bytes (%d -> %d)", before-after, before, after)
	}
	expectMap(t, f, 0, size, true, 1<<20)
	expectMap(t, f, 1<<20, size, false, 4<<20)
	expectMap(t, f, 2<<20, 1<<20, false, 1<<20)
	expectMap(t, f, 5<<20, size, true, 3<<20)
	if _, _, err := f.Mapped(size, 4096); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Mapped past the end: %v, want ErrOutOfRange", err)
	}
	if _, err := f.ReadAt(b.B, 0); err != nil {
		t.Fatal(err)
	}
	want := p.Get(size)
	fillPattern(want.B, 6)
	clear(want.B[1<<20 : 5<<20])
	if !bytes.Equal(b.B, want.B) {
		t.Error("contents after discard are wrong")
	}
}

// expectMap checks f.Mapped(off, n).
func expectMap(t *testing.T, f *File, off, n int64, mapped bool, run int64) {
	t.Helper()
	m, r, err := f.Mapped(off, n)
	if err != nil || m != mapped || r != run {
		t.Errorf("Mapped(%d, %d) = %v, %d, %v; want %v, %d", off, n, m, r, err, mapped, run)
	}
}
