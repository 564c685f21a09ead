package blockdev

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// fillPattern fills p with bytes derived from seed, different per block
// position, so misplaced blocks are detected.
func fillPattern(p []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for i := 0; i < len(p); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// testDeviceContract checks the Device rules every implementation must
// follow. d must be writable, zero-filled or not, with at least 16 blocks.
func testDeviceContract(t *testing.T, d Device, bs int) {
	t.Helper()
	pool := NewPool()
	size := d.Size()
	if size%int64(bs) != 0 || size < 16*int64(bs) {
		t.Fatalf("Size %d: want a multiple of %d, >= 16 blocks", size, bs)
	}

	t.Run("roundtrip", func(t *testing.T) {
		w, r := pool.Get(3*bs), pool.Get(3*bs)
		defer pool.Put(w)
		defer pool.Put(r)
		fillPattern(w.B, 1)
		for _, off := range []int64{0, int64(bs), size - 3*int64(bs)} {
			if n, err := d.WriteAt(w.B, off); n != len(w.B) || err != nil {
				t.Fatalf("WriteAt(%d) = %d, %v", off, n, err)
			}
			if n, err := d.ReadAt(r.B, off); n != len(r.B) || err != nil {
				t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
			}
			if !bytes.Equal(w.B, r.B) {
				t.Fatalf("read at %d differs from what was written", off)
			}
		}
		if err := d.Flush(); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if n, err := d.ReadAt(r.B[:0], 0); n != 0 || err != nil {
			t.Fatalf("empty ReadAt = %d, %v", n, err)
		}
		if n, err := d.WriteAt(w.B[:0], size); n != 0 || err != nil {
			t.Fatalf("empty WriteAt at end = %d, %v", n, err)
		}
	})

	t.Run("argument errors", func(t *testing.T) {
		b := pool.Get(4 * bs)
		defer pool.Put(b)
		cases := []struct {
			name string
			p    []byte
			off  int64
			want error
		}{
			{"misaligned buffer", b.B[512 : 512+bs], 0, ErrAlignment},
			{"misaligned buffer by 1", b.B[1 : 1+bs], 0, ErrAlignment},
			{"misaligned offset", b.B[:bs], int64(bs / 2), ErrAlignment},
			{"partial block", b.B[:bs+bs/2], 0, ErrAlignment},
			{"negative offset", b.B[:bs], -int64(bs), ErrOutOfRange},
			{"at end", b.B[:bs], size, ErrOutOfRange},
			{"across end", b.B[:2*bs], size - int64(bs), ErrOutOfRange},
			{"far beyond end", b.B[:bs], 1 << 62, ErrOutOfRange},
		}
		for _, c := range cases {
			if n, err := d.ReadAt(c.p, c.off); n != 0 || !errors.Is(err, c.want) {
				t.Errorf("%s: ReadAt = %d, %v; want 0, %v", c.name, n, err, c.want)
			}
			if n, err := d.WriteAt(c.p, c.off); n != 0 || !errors.Is(err, c.want) {
				t.Errorf("%s: WriteAt = %d, %v; want 0, %v", c.name, n, err, c.want)
			}
			if w, ok := d.(FUAWriter); ok {
				if n, err := w.WriteAtFUA(c.p, c.off); n != 0 || !errors.Is(err, c.want) {
					t.Errorf("%s: WriteAtFUA = %d, %v; want 0, %v", c.name, n, err, c.want)
				}
			}
		}
	})

	t.Run("fua", func(t *testing.T) {
		w, ok := d.(FUAWriter)
		if !ok {
			t.Skip("no FUAWriter")
		}
		b, r := pool.Get(2*bs), pool.Get(2*bs)
		defer pool.Put(b)
		defer pool.Put(r)
		fillPattern(b.B, 2)
		off := 4 * int64(bs)
		if n, err := w.WriteAtFUA(b.B, off); n != len(b.B) || err != nil {
			t.Fatalf("WriteAtFUA = %d, %v", n, err)
		}
		if _, err := d.ReadAt(r.B, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.B, r.B) {
			t.Fatal("FUA data not read back")
		}
	})

	t.Run("discard", func(t *testing.T) {
		dd, ok := d.(Discarder)
		if !ok {
			t.Skip("no Discarder")
		}
		b, r := pool.Get(4*bs), pool.Get(4*bs)
		defer pool.Put(b)
		defer pool.Put(r)
		fillPattern(b.B, 3)
		off := 8 * int64(bs)
		if _, err := d.WriteAt(b.B, off); err != nil {
			t.Fatal(err)
		}
		if err := dd.Discard(off+int64(bs), 2*int64(bs)); err != nil {
			t.Fatalf("Discard: %v", err)
		}
		if _, err := d.ReadAt(r.B, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.B[:bs], b.B[:bs]) || !bytes.Equal(r.B[3*bs:], b.B[3*bs:]) {
			t.Error("Discard changed neighbouring blocks")
		}
		if !allZero(r.B[bs : 3*bs]) {
			t.Error("discarded range does not read as zeros")
		}
		if err := dd.Discard(0, 0); err != nil {
			t.Errorf("empty Discard: %v", err)
		}
		for _, c := range []struct {
			off, n int64
			want   error
		}{
			{int64(bs / 2), int64(bs), ErrAlignment},
			{0, int64(bs) + 1, ErrAlignment},
			{size, int64(bs), ErrOutOfRange},
			{0, size + int64(bs), ErrOutOfRange},
			{-int64(bs), int64(bs), ErrOutOfRange},
		} {
			if err := dd.Discard(c.off, c.n); !errors.Is(err, c.want) {
				t.Errorf("Discard(%d, %d) = %v, want %v", c.off, c.n, err, c.want)
			}
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		testConcurrent(t, d, bs, pool)
	})
}

// testConcurrent runs writers, readers, flushes and FUA writes at once on
// disjoint ranges and checks every read; run it under -race.
func testConcurrent(t *testing.T, d Device, bs int, pool *Pool) {
	const workers, iters = 8, 50
	region := d.Size() / workers / int64(bs) * int64(bs)
	if region < 2*int64(bs) {
		t.Fatalf("device too small for %d workers", workers)
	}
	fua, _ := d.(FUAWriter)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			base := int64(w) * region
			nblocks := region / int64(bs)
			for i := range iters {
				cnt := 1 + r.Int64N(min(nblocks, 8))
				off := base + r.Int64N(nblocks-cnt+1)*int64(bs)
				wb, rb := pool.Get(int(cnt)*bs), pool.Get(int(cnt)*bs)
				fillPattern(wb.B, uint64(w)<<32|uint64(i))
				var err error
				if fua != nil && i%5 == 0 {
					_, err = fua.WriteAtFUA(wb.B, off)
				} else {
					_, err = d.WriteAt(wb.B, off)
				}
				if err == nil {
					_, err = d.ReadAt(rb.B, off)
				}
				if err == nil && !bytes.Equal(wb.B, rb.B) {
					err = fmt.Errorf("worker %d: read at %d differs from write", w, off)
				}
				if err == nil && i%10 == 0 {
					err = d.Flush()
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
		t.Error(err)
	}
}
