package ackcheck

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

var errCrashed = errors.New("memdev: crashed")

// memDevice is an in-memory device that crashes at its crashAt-th write.
// Some writes are parked (in flight) until more writes arrive; at the crash
// each parked write lands or not at random and fails. A lossy device also
// rolls lose acknowledged blocks back to their previous content at the
// crash, as a target that acknowledged writes it had not made durable would.
type memDevice struct {
	mu        sync.Mutex
	bs        int
	rng       *rand.Rand
	blocks    map[ByteOffset][]byte
	prev      map[ByteOffset][]byte // content before the last landed write
	ackedLast map[ByteOffset]bool   // the last landed write was acknowledged
	parked    []*parked
	maxParked int
	calls     int
	crashAt   int
	crashed   bool
	lose      int
	rolled    []Block
}

type parked struct {
	off  ByteOffset
	data []byte
	done chan error
}

func newMemDevice(bs int, seed uint64, crashAt, lose int) *memDevice {
	return &memDevice{bs: bs, rng: rand.New(rand.NewPCG(seed, 7)), blocks: map[ByteOffset][]byte{},
		prev: map[ByteOffset][]byte{}, ackedLast: map[ByteOffset]bool{}, maxParked: 4, crashAt: crashAt, lose: lose}
}

func (d *memDevice) landLocked(off ByteOffset, data []byte, acked bool) {
	d.prev[off] = d.blocks[off]
	d.blocks[off] = data
	d.ackedLast[off] = acked
}

func (d *memDevice) WriteAt(ctx context.Context, p []byte, off ByteOffset, fua bool) error {
	data := append([]byte(nil), p...)
	d.mu.Lock()
	if d.crashed {
		d.mu.Unlock()
		return errCrashed
	}
	d.calls++
	if d.calls == d.crashAt {
		d.crashLocked()
		d.mu.Unlock()
		return errCrashed
	}
	if d.rng.IntN(3) > 0 {
		d.landLocked(off, data, true)
		d.mu.Unlock()
		return nil
	}
	pw := &parked{off: off, data: data, done: make(chan error, 1)}
	d.parked = append(d.parked, pw)
	if len(d.parked) > d.maxParked {
		first := d.parked[0]
		d.parked = d.parked[1:]
		d.landLocked(first.off, first.data, true)
		first.done <- nil
	}
	d.mu.Unlock()
	return <-pw.done
}

func (d *memDevice) crashLocked() {
	d.crashed = true
	for _, pw := range d.parked {
		if d.rng.IntN(2) == 0 {
			d.landLocked(pw.off, pw.data, false)
		}
		pw.done <- errCrashed
	}
	d.parked = nil
	var offs []ByteOffset
	for off, acked := range d.ackedLast {
		if acked {
			offs = append(offs, off)
		}
	}
	slices.Sort(offs)
	for i := 0; i < d.lose && len(offs) > 0; i++ {
		k := d.rng.IntN(len(offs))
		off := offs[k]
		offs = slices.Delete(offs, k, k+1)
		d.blocks[off] = d.prev[off]
		d.rolled = append(d.rolled, Block(int64(off)/int64(d.bs)))
	}
}

func (d *memDevice) ReadAt(ctx context.Context, p []byte, off ByteOffset) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; i < len(p); i += d.bs {
		if b := d.blocks[off+ByteOffset(i)]; b != nil {
			copy(p[i:i+d.bs], b)
		} else {
			clear(p[i : i+d.bs])
		}
	}
	return nil
}

func TestRunVerifyCrash(t *testing.T) {
	for seed := range uint64(20) {
		for _, lose := range []int{0, 3} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			m, err := NewModel(Layout{BlockSize: 512, First: 10, Count: 200})
			if err != nil {
				t.Fatal(err)
			}
			var journal bytes.Buffer
			m.SetJournal(&journal, true)
			dev := newMemDevice(512, seed, 1500, lose)
			st, err := Run(ctx, dev, m, RunOptions{QueueDepth: 8, Seed: seed})
			if !errors.Is(err, errCrashed) {
				t.Fatalf("seed %d: Run ended with %v, want the crash", seed, err)
			}
			if st.Acked == 0 || st.Unknown == 0 || st.Issued != st.Acked+st.Unknown {
				t.Fatalf("seed %d: stats %+v", seed, st)
			}
			// Verify with the live model and with one rebuilt from the
			// journal, as a test whose writer process died would.
			replayed, err := LoadJournal(&journal)
			if err != nil {
				t.Fatal(err)
			}
			for _, mm := range []*Model{m, replayed} {
				rep, err := Verify(ctx, dev, mm, VerifyOptions{All: true, QueueDepth: 4, MaxBlocksPerRead: 7})
				if err != nil {
					t.Fatal(err)
				}
				if rep.Checked != 200 {
					t.Fatalf("checked %d blocks", rep.Checked)
				}
				var got []Block
				for _, v := range rep.Violations {
					got = append(got, v.Block)
				}
				want := slices.Sorted(slices.Values(dev.rolled))
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d lose %d: violations at %v, want %v\n%s", seed, lose, got, want, rep)
				}
				if lose == 0 && rep.Acked == 0 {
					t.Fatalf("no block read as acknowledged: %s", rep)
				}
			}
			cancel()
		}
	}
}

func TestRunStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, _ := NewModel(Layout{BlockSize: 4096, Count: 64})
	dev := newMemDevice(4096, 1, -1, 0)
	dev.maxParked = 0
	st, err := Run(ctx, dev, m, RunOptions{QueueDepth: 4, Writes: 100})
	if err != nil || st.Issued != 100 || st.Acked != 100 {
		t.Fatalf("Writes limit: %+v %v", st, err)
	}
	st, err = Run(ctx, dev, m, RunOptions{QueueDepth: 4, Duration: 50 * time.Millisecond})
	if err != nil || st.Acked == 0 {
		t.Fatalf("Duration limit: %+v %v", st, err)
	}
	rep, err := Verify(ctx, dev, m, VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", rep, err)
	}
	if _, err := Run(ctx, dev, m, RunOptions{QueueDepth: 40}); err == nil {
		t.Fatal("queue depth larger than half the range accepted")
	}
}
