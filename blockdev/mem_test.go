package blockdev

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestMemContract(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		t.Run(sizeName(bs), func(t *testing.T) {
			testDeviceContract(t, NewMem(4<<20, bs), bs)
		})
	}
}

// memHelper wraps a Mem with block-granular helpers for tests.
type memHelper struct {
	t    *testing.T
	m    *Mem
	pool *Pool
}

func (h memHelper) block(v byte) *Buf {
	b := h.pool.Get(h.m.BlockSize())
	for i := range b.B {
		b.B[i] = v
	}
	return b
}

func (h memHelper) write(blk int64, v byte) {
	h.t.Helper()
	b := h.block(v)
	defer h.pool.Put(b)
	if _, err := h.m.WriteAt(b.B, blk*int64(h.m.BlockSize())); err != nil {
		h.t.Fatal(err)
	}
}

func (h memHelper) writeFUA(blk int64, v byte) {
	h.t.Helper()
	b := h.block(v)
	defer h.pool.Put(b)
	if _, err := h.m.WriteAtFUA(b.B, blk*int64(h.m.BlockSize())); err != nil {
		h.t.Fatal(err)
	}
}

// expect checks that block blk holds byte v throughout.
func (h memHelper) expect(blk int64, v byte) {
	h.t.Helper()
	b := h.pool.Get(h.m.BlockSize())
	defer h.pool.Put(b)
	if _, err := h.m.ReadAt(b.B, blk*int64(h.m.BlockSize())); err != nil {
		h.t.Fatal(err)
	}
	for _, got := range b.B {
		if got != v {
			h.t.Fatalf("block %d holds %#x, want %#x", blk, got, v)
		}
	}
}

func TestMemCrash(t *testing.T) {
	h := memHelper{t, NewMem(64*512, 512), NewPool()}
	bs := int64(512)

	h.write(0, 1)
	h.write(1, 1)
	if err := h.m.Flush(); err != nil {
		t.Fatal(err)
	}
	h.write(0, 2)                               // volatile
	h.writeFUA(2, 3)                            // durable at once
	h.write(3, 4)                               // volatile
	h.writeFUA(3, 5)                            // FUA supersedes the volatile version
	if err := h.m.Discard(bs, bs); err != nil { // volatile discard
		t.Fatal(err)
	}
	h.expect(0, 2)
	h.expect(1, 0)
	if got := h.m.Dirty(); !slices.Equal(sorted(got), []int64{0, bs}) {
		t.Errorf("Dirty = %v, want [0 %d]", got, bs)
	}

	h.m.Crash()
	h.expect(0, 1) // the unflushed write is lost
	h.expect(1, 1) // the unflushed discard is lost
	h.expect(2, 3)
	h.expect(3, 5)
	h.expect(4, 0)
	if d := h.m.Dirty(); len(d) != 0 {
		t.Errorf("Dirty after Crash = %v", d)
	}

	// Flushed discards stay discarded.
	if err := h.m.Discard(0, 2*bs); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Flush(); err != nil {
		t.Fatal(err)
	}
	h.m.Crash()
	h.expect(0, 0)
	h.expect(1, 0)
}

func TestMemCrashWith(t *testing.T) {
	h := memHelper{t, NewMem(16*4096, 4096), NewPool()}
	for blk := range int64(8) {
		h.write(blk, byte(blk+1))
	}
	// Only even blocks reached the medium.
	h.m.CrashWith(func(off int64) bool { return off/4096%2 == 0 })
	for blk := range int64(8) {
		want := byte(0)
		if blk%2 == 0 {
			want = byte(blk + 1)
		}
		h.expect(blk, want)
	}
}

func TestMemCloseAndClone(t *testing.T) {
	h := memHelper{t, NewMem(16*512, 512), NewPool()}
	h.write(0, 7)
	c := h.m.Clone() // durable state only
	h.write(1, 8)
	if err := h.m.Close(); err != nil { // Close flushes
		t.Fatal(err)
	}
	b := h.block(0)
	if _, err := h.m.ReadAt(b.B, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close = %v", err)
	}
	if err := h.m.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	h.m.Crash() // reopens; nothing volatile left
	h.expect(0, 7)
	h.expect(1, 8)

	ch := memHelper{t, c, h.pool}
	ch.expect(0, 0)
	ch.expect(1, 0)
	ch.write(0, 9)
	h.expect(0, 7) // the clone is independent
}

func TestNewMemPanics(t *testing.T) {
	for _, tc := range []struct {
		size int64
		bs   int
	}{{0, 512}, {1000, 512}, {4096, 1000}, {4096, 256}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewMem(%d, %d) did not panic", tc.size, tc.bs)
				}
			}()
			NewMem(tc.size, tc.bs)
		}()
	}
}

// TestMemRandomModel drives random writes, FUA writes, discards, flushes
// and crashes and compares every block with a model that tracks, per
// block, the latest value and the last value made durable.
func TestMemRandomModel(t *testing.T) {
	const blocks = 32
	h := memHelper{t, NewMem(blocks*512, 512), NewPool()}
	var latest, durable [blocks]byte
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 5000 {
		blk := r.Int64N(blocks)
		v := byte(step%255 + 1)
		switch k := r.IntN(100); {
		case k < 50:
			h.write(blk, v)
			latest[blk] = v
		case k < 65:
			h.writeFUA(blk, v)
			latest[blk], durable[blk] = v, v
		case k < 75:
			n := 1 + r.Int64N(blocks-blk)
			if err := h.m.Discard(blk*512, n*512); err != nil {
				t.Fatal(err)
			}
			for i := blk; i < blk+n; i++ {
				latest[i] = 0
			}
		case k < 90:
			if err := h.m.Flush(); err != nil {
				t.Fatal(err)
			}
			durable = latest
		default:
			h.m.Crash()
			latest = durable
		}
		for i := range int64(blocks) {
			h.expect(i, latest[i])
		}
	}
}

func sorted(s []int64) []int64 {
	slices.Sort(s)
	return s
}

func TestMemReadsAreCopies(t *testing.T) {
	h := memHelper{t, NewMem(8*512, 512), NewPool()}
	w := h.block(1)
	if _, err := h.m.WriteAt(w.B, 0); err != nil {
		t.Fatal(err)
	}
	w.B[0] = 2 // changing the caller's buffer must not change the device
	r := h.block(0)
	if _, err := h.m.ReadAt(r.B, 0); err != nil {
		t.Fatal(err)
	}
	if r.B[0] != 1 {
		t.Error("Mem kept a reference to the caller's buffer")
	}
	r.B[1] = 3
	h.expect(0, 1)
	if !bytes.Equal(r.B[2:], w.B[2:]) {
		t.Error("unexpected contents")
	}
}
