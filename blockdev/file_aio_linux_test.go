//go:build linux

package blockdev

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAIOConcurrentVerify runs many more callers than AIO slots (so they
// queue for slots) doing reads, writes and FUA writes of 1 to 64 blocks on
// their own regions, each checked at once, then reopens the file with
// IOSync and compares every byte with a model of the acknowledged writes.
// With IOAuto, AIO and synchronous transfers mix.
func TestAIOConcurrentVerify(t *testing.T) {
	for _, mode := range []IOMode{IOAuto, IOAsync} {
		t.Run("io="+mode.String(), func(t *testing.T) { testAIOConcurrentVerify(t, mode) })
	}
}

func testAIOConcurrentVerify(t *testing.T, mode IOMode) {
	const (
		workers = 32
		region  = 1 << 20
		iters   = 60
		bs      = 4096
	)
	path := filepath.Join(directDir(t), "lun")
	f := openMode(t, path, Options{Size: workers * region, Create: true, BlockSize: bs, QueueDepth: 4}, mode)
	pool := NewPool()
	model := make([]byte, workers*region) // the file starts as zeros
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 99))
			base := int64(w) * region
			mine := model[base : base+region] // only this worker touches it
			for i := range iters {
				cnt := 1 + r.IntN(64)
				off := r.Int64N(region/bs-int64(cnt)+1) * bs
				wb, rb := pool.Get(cnt*bs), pool.Get(cnt*bs)
				fillPattern(wb.B, uint64(w)<<32|uint64(i))
				var err error
				switch i % 4 {
				case 0:
					_, err = f.WriteAtFUA(wb.B, base+off)
				case 3:
					err = f.Flush()
					fallthrough
				default:
					if err == nil {
						_, err = f.WriteAt(wb.B, base+off)
					}
				}
				if err == nil {
					copy(mine[off:], wb.B)
					_, err = f.ReadAt(rb.B, base+off)
				}
				if err == nil && !bytes.Equal(rb.B, wb.B) {
					err = fmt.Errorf("worker %d iteration %d: read at %d differs from write", w, i, base+off)
				}
				pool.Put(wb)
				pool.Put(rb)
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if idle, total := aioSlots(f); idle != total || total != 4 {
		t.Errorf("%d of %d AIO slots idle after the test, want 4 of 4", idle, total)
	}
	if n := f.active.Load(); n != 0 {
		t.Errorf("%d transfers counted in flight after the test", n)
	}
	t.Logf("%d of %d transfers used AIO", aioTransfers(f), workers*iters*2)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	g := openMode(t, path, Options{BlockSize: bs}, IOSync)
	got := pool.Get(workers * region)
	if _, err := g.ReadAt(got.B, 0); err != nil {
		t.Fatal(err)
	}
	for w := range workers {
		lo, hi := w*region, (w+1)*region
		if !bytes.Equal(got.B[lo:hi], model[lo:hi]) {
			t.Errorf("region of worker %d differs from the acknowledged writes", w)
		}
	}
}

// TestShortRead shrinks the file under an open File: a read across the
// new end returns what the kernel had, and io.ErrUnexpectedEOF for the
// rest, on both paths (the AIO path resubmits after the short completion).
func TestShortRead(t *testing.T) {
	for _, mode := range ioModes {
		t.Run("io="+mode.String(), func(t *testing.T) {
			path := filepath.Join(directDir(t), "lun")
			f := openMode(t, path, Options{Size: 64 << 10, Create: true, BlockSize: 4096}, mode)
			pool := NewPool()
			w, r := pool.Get(16<<10), pool.Get(16<<10)
			fillPattern(w.B, 12)
			if _, err := f.WriteAt(w.B, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 8<<10); err != nil {
				t.Fatal(err)
			}
			n, err := f.ReadAt(r.B, 0)
			if n != 8<<10 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadAt across the shrunk end = %d, %v; want %d, io.ErrUnexpectedEOF", n, err, 8<<10)
			}
			if !bytes.Equal(r.B[:n], w.B[:n]) {
				t.Error("the part before the end reads back wrong")
			}
		})
	}
}

// TestKernelErrors checks that errors from the kernel are the same errnos
// on both paths: EBADF for a write on a read-only descriptor (which
// io_submit reports) and EINVAL for a misaligned O_DIRECT read (which the
// AIO path gets in io_event.res).
func TestKernelErrors(t *testing.T) {
	for _, mode := range ioModes {
		t.Run("io="+mode.String(), func(t *testing.T) {
			path := filepath.Join(directDir(t), "lun")
			w := openMode(t, path, Options{Size: 1 << 20, Create: true, BlockSize: 4096}, mode)
			p := NewPool().Get(8192)
			if _, err := w.WriteAt(p.B, 0); err != nil { // allocate: holes skip alignment checks
				t.Fatal(err)
			}
			w.closeMu.RLock()
			n, err := w.readLocked(p.B[:4096], 1)
			w.closeMu.RUnlock()
			if n != 0 || !errors.Is(err, unix.EINVAL) {
				t.Errorf("misaligned read = %d, %v; want 0, EINVAL", n, err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			ro := openMode(t, path, Options{ReadOnly: true, BlockSize: 4096}, mode)
			ro.closeMu.RLock()
			n, err = ro.writeLocked(p.B[:4096], 0)
			ro.closeMu.RUnlock()
			if n != 0 || !errors.Is(err, unix.EBADF) {
				t.Errorf("write on read-only descriptor = %d, %v; want 0, EBADF", n, err)
			}
			ro.closeMu.RLock()
			n, err = ro.writeFUALocked(p.B[:4096], 0)
			ro.closeMu.RUnlock()
			if n != 0 || !errors.Is(err, unix.EBADF) {
				t.Errorf("FUA write on read-only descriptor = %d, %v; want 0, EBADF", n, err)
			}
			if ro.noAIODSync.Load() || ro.noPwritev2.Load() {
				t.Error("EBADF was taken for a kernel without RWF_DSYNC")
			}
		})
	}
}

// TestAIOFallback checks that a File whose AIO context the kernel refuses
// works synchronously, and that IOSync never sets one up.
func TestAIOFallback(t *testing.T) {
	dir := directDir(t)
	refuse := func(depth int) (*aioCtx, error) {
		return nil, fmt.Errorf("io_setup(%d): %w", depth, unix.EAGAIN)
	}
	f, err := openWith(filepath.Join(dir, "refused"), Options{Size: 8 << 20, Create: true, BlockSize: 4096}, refuse)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if f.AsyncIO() {
		t.Fatal("AsyncIO() with a refused context")
	}
	testDeviceContract(t, f, 4096)

	called := false
	f, err = openWith(filepath.Join(dir, "sync"), Options{Size: 1 << 20, Create: true, IO: IOSync}, func(int) (*aioCtx, error) {
		called = true
		return nil, errors.ErrUnsupported
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if called || f.AsyncIO() {
		t.Errorf("IOSync set up AIO (called %v, AsyncIO %v)", called, f.AsyncIO())
	}
}

// TestOpenIOOptions checks validation of the I/O options.
func TestOpenIOOptions(t *testing.T) {
	path := filepath.Join(directDir(t), "lun")
	for _, opts := range []Options{
		{Size: 1 << 20, Create: true, IO: IOAsync + 1},
		{Size: 1 << 20, Create: true, QueueDepth: -1},
		{Size: 1 << 20, Create: true, QueueDepth: MaxQueueDepth + 1},
	} {
		if f, err := Open(path, opts); !errors.Is(err, ErrInvalidOptions) {
			if err == nil {
				f.Close()
			}
			t.Errorf("Open(%+v) = %v, want ErrInvalidOptions", opts, err)
		}
	}
	f := openMode(t, path, Options{Size: 1 << 20, Create: true, QueueDepth: 1}, IOAuto)
	if _, total := aioSlots(f); total != 1 {
		t.Errorf("QueueDepth 1: %d slots", total)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = openMode(t, path, Options{}, IOAuto)
	if _, total := aioSlots(f); total != DefaultQueueDepth {
		t.Errorf("default QueueDepth: %d slots, want %d", total, DefaultQueueDepth)
	}
}

// TestCloseReleasesAIO opens and closes Files doing I/O and checks that
// Close stops the reaper goroutine and closes the eventfd.
func TestCloseReleasesAIO(t *testing.T) {
	path := filepath.Join(directDir(t), "lun")
	pool := NewPool()
	b := pool.Get(4096)
	if n := settledReapers(0); n != 0 { // other tests' Files are closed
		t.Fatalf("%d reaper goroutines before the test", n)
	}
	fds := openFDs(t)
	for range 5 {
		f := openMode(t, path, Options{Size: 1 << 20, Create: true, BlockSize: 4096}, IOAsync)
		if _, err := f.WriteAt(b.B, 0); err != nil {
			t.Fatal(err)
		}
		if n := reapers(); n != 1 {
			t.Errorf("%d reaper goroutines with one File open, want 1", n)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := settledReapers(0); n != 0 {
		t.Errorf("%d reaper goroutines after Close, want 0", n)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d descriptors open after Close, want %d", got, fds)
	}
}

// reapers counts the goroutines running aioCtx.reap.
func reapers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "blockdev.(*aioCtx).reap(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// settledReapers returns reapers() once it is want, or after a bounded
// number of tries: a reaper has closed aioCtx.exited, which Close waits
// for, a moment before it has finished exiting.
func settledReapers(want int) int {
	n := reapers()
	for i := 0; i < 1000 && n != want; i++ {
		runtime.Gosched()
		n = reapers()
	}
	return n
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestAIONoAllocs checks that the AIO data path does not allocate:
// one caller at a time, then many at once (which also exercises waiting
// for completions that the reaper batches).
func TestAIONoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, mode := range []IOMode{IOAsync, IOAuto} {
		t.Run("io="+mode.String(), func(t *testing.T) { testAIONoAllocs(t, mode) })
	}
}

func testAIONoAllocs(t *testing.T, mode IOMode) {
	path := filepath.Join(directDir(t), "lun")
	f := openMode(t, path, Options{Size: 8 << 20, Create: true, BlockSize: 4096, QueueDepth: 8}, mode)
	pool := NewPool()
	b := pool.Get(64 << 10)
	fillPattern(b.B, 3)
	for name, op := range map[string]func() (int, error){
		"ReadAt":     func() (int, error) { return f.ReadAt(b.B, 1<<20) },
		"WriteAt":    func() (int, error) { return f.WriteAt(b.B, 2<<20) },
		"WriteAtFUA": func() (int, error) { return f.WriteAtFUA(b.B, 3<<20) },
	} {
		var err error
		allocs := testing.AllocsPerRun(100, func() {
			if _, e := op(); e != nil {
				err = e
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, allocs)
		}
	}

	// 32 callers on 8 slots. The runtime may allocate a few sudogs (its
	// records of goroutines parked on channels) when its caches run dry,
	// so check that allocations do not grow with the number of I/Os.
	const workers, iters = 32, 200
	bufs := make([]*Buf, workers)
	for i := range bufs {
		bufs[i] = pool.Get(4096)
	}
	run := func() error {
		var wg sync.WaitGroup
		errs := make([]error, workers)
		start := make(chan struct{})
		for w := range workers {
			wg.Go(func() {
				<-start
				for i := range iters {
					off := int64((w*iters+i)%2048) * 4096
					var err error
					if i%2 == 0 {
						_, err = f.WriteAt(bufs[w].B, off)
					} else {
						_, err = f.ReadAt(bufs[w].B, off)
					}
					if err != nil {
						errs[w] = err
						return
					}
				}
			})
		}
		// Measure only the I/O, not starting the goroutines.
		runtime.Gosched()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		close(start)
		wg.Wait()
		runtime.ReadMemStats(&after)
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if n := after.Mallocs - before.Mallocs; n > workers*iters/100 {
			return fmt.Errorf("%d allocations for %d concurrent I/Os", n, workers*iters)
		}
		return nil
	}
	if err := run(); err != nil { // warm up the runtime's caches
		t.Fatal(err)
	}
	if err := run(); err != nil {
		t.Error(err)
	}
	if mode == IOAsync && aioTransfers(f) < 300+2*workers*iters {
		t.Errorf("only %d transfers used AIO", aioTransfers(f))
	}
}

// TestIOAutoPolicy checks IOAuto's choice: a transfer that starts while no
// other is in flight is synchronous, one that starts while another is in
// flight uses AIO; IOAsync always uses AIO.
func TestIOAutoPolicy(t *testing.T) {
	path := filepath.Join(directDir(t), "lun")
	f := openMode(t, path, Options{Size: 1 << 20, Create: true, BlockSize: 4096}, IOAuto)
	b := NewPool().Get(4096)
	ops := func() {
		t.Helper()
		if _, err := f.WriteAt(b.B, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAtFUA(b.B, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadAt(b.B, 0); err != nil {
			t.Fatal(err)
		}
	}
	ops()
	if n := aioTransfers(f); n != 0 {
		t.Errorf("IOAuto, alone: %d of 3 transfers used AIO, want 0", n)
	}
	f.active.Add(1) // as if another transfer were in flight
	ops()
	f.active.Add(-1)
	if n := aioTransfers(f); n != 3 {
		t.Errorf("IOAuto, another in flight: %d of 3 transfers used AIO, want 3", n)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f = openMode(t, path, Options{BlockSize: 4096}, IOAsync)
	ops()
	if n := aioTransfers(f); n != 3 {
		t.Errorf("IOAsync, alone: %d of 3 transfers used AIO, want 3", n)
	}
}

// TestWriteAtAsync starts more asynchronous writes than the File has AIO
// slots: some start (a few from inside done callbacks), the rest are
// refused and written with WriteAt, and the file then holds every one.
// Invalid writes and writes on a closed File are refused without a
// callback, and Close waits for the writes in flight.
func TestWriteAtAsync(t *testing.T) {
	const (
		bs     = 4096
		blocks = 256
	)
	path := filepath.Join(directDir(t), "lun")
	f := openMode(t, path, Options{Size: blocks * bs, Create: true, BlockSize: bs, QueueDepth: 8}, IOAsync)
	pool := NewPool()
	bufs := make([]*Buf, blocks)
	for i := range bufs {
		bufs[i] = pool.Get(bs)
		fillPattern(bufs[i].B, uint64(i)+1)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var started, refused int
	var startOne func(i int, fromDone bool)
	// Blocks just after a multiple of 64 in the second half are started
	// once the block before has been written: by its callback (which may
	// start a write, its slot being free) or, if it was refused, after its
	// WriteAt.
	chain := func(i int, fromDone bool) {
		if i%64 == 0 && i+1 < blocks && i+1 >= blocks/2 {
			startOne(i+1, fromDone)
		}
	}
	startOne = func(i int, fromDone bool) {
		wg.Add(1)
		ok := f.WriteAtAsync(bufs[i].B, int64(i)*bs, func(err error) {
			defer wg.Done()
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			chain(i, true)
		})
		mu.Lock()
		defer mu.Unlock()
		if ok {
			started++
			return
		}
		refused++
		write := func() {
			defer wg.Done()
			if _, err := f.WriteAt(bufs[i].B, int64(i)*bs); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			chain(i, false)
		}
		if fromDone {
			go write() // done must not block, and WriteAt waits for the reaper
		} else {
			mu.Unlock()
			write()
			mu.Lock()
		}
	}
	for i := range blocks {
		if i < blocks/2 || i%64 != 1 { // the others are chained
			startOne(i, false)
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if started == 0 {
		t.Fatal("no write started asynchronously")
	}
	t.Logf("%d writes started asynchronously, %d refused (8 slots)", started, refused)

	// Refused: a misaligned buffer, an offset past the end, no data.
	never := func(error) { t.Error("done called for a refused write") }
	for _, c := range []struct {
		p   []byte
		off int64
	}{{bufs[0].B[:100], 0}, {bufs[0].B, blocks * bs}, {nil, 0}} {
		if f.WriteAtAsync(c.p, c.off, never) {
			t.Errorf("write of %d bytes at %d started", len(c.p), c.off)
		}
	}

	// Close waits for a write in flight.
	done := make(chan error, 1)
	if !f.WriteAtAsync(bufs[0].B, 0, func(err error) { done <- err }) {
		t.Fatal("write refused on an idle File")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("Close returned before the write in flight completed")
	}
	if f.WriteAtAsync(bufs[0].B, 0, never) {
		t.Error("write started on a closed File")
	}

	g := mustOpen(t, path, Options{BlockSize: bs, IO: IOSync})
	got := pool.Get(bs)
	for i := range blocks {
		if _, err := g.ReadAt(got.B, int64(i)*bs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.B, bufs[i].B) {
			t.Fatalf("block %d does not hold its write", i)
		}
	}
}
