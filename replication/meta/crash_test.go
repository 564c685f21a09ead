package meta

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"hastor/blockdev"
)

// harness drives a Store, Bitmap and ActivityLog the way the replication
// layer will, against a model of what must survive a crash:
//
//	must: blocks written while the peer was away since they were last
//	      resynced (their bits must be set after any crash);
//	inflight: writes issued to the disk and not completed (their blocks
//	      must be set after a crash too: the peer may lack them).
//
// Metadata I/O fails at a chosen operation (the device "dies" there) and
// the Mem then crashes, keeping a random subset of the unflushed 512-byte
// blocks: torn superblocks, slots and pages included.
type harness struct {
	t         testing.TB
	r         *rand.Rand
	placement Placement
	mem       *blockdev.Mem // the metadata device
	dev       *tearDev

	st *Store
	bm *Bitmap
	al *ActivityLog

	connected bool
	must      *Bitmap // the model, as a plain set of blocks (Bitmap is tested against []bool)
	inflight  []hwrite
	queued    []hwrite // got AfterCommit: issued after the next commit
	hot       []Extent

	sbCommitted Superblock
	sbPending   *Superblock

	noCrash bool // step never crashes on its own

	crashes, txs, waits, torn int
}

type hwrite struct{ first, end Block }

func newHarness(t testing.TB, seed uint64, placement Placement, alExtents int) *harness {
	h := &harness{t: t, r: rand.New(rand.NewPCG(seed, 0x6d657461)), placement: placement}
	const dataDev = 1 << 30
	var l Layout
	var err error
	if placement == Internal {
		h.mem = blockdev.NewMem(dataDev, 512)
		l, err = PlanInternal(dataDev, alExtents)
	} else {
		h.mem = blockdev.NewMem(1<<20, 512)
		l, err = PlanExternal(dataDev, 1<<20, alExtents)
	}
	if err != nil {
		t.Fatal(err)
	}
	st, err := Create(h.mem, l, Superblock{Flags: FlagConsistent}, false)
	if err != nil {
		t.Fatal(err)
	}
	h.sbCommitted = st.Superblock()
	h.must = NewBitmap(l.Blocks())
	for range 12 {
		h.hot = append(h.hot, Extent(h.r.Uint64N(l.Extents())))
	}
	h.reopen()
	return h
}

// reopen opens and loads the metadata after a crash (or creation) through
// a fresh fault injector.
func (h *harness) reopen() {
	h.dev = &tearDev{Mem: h.mem, r: rand.New(rand.NewPCG(h.r.Uint64(), 2))}
	st, err := Open(h.dev, h.placement)
	if err != nil {
		h.t.Fatalf("open after crash: %v", err)
	}
	ld, err := st.Load()
	if err != nil {
		h.t.Fatalf("load after crash: %v", err)
	}
	h.st, h.bm, h.al = st, ld.Bitmap, ld.AL
	h.torn += len(ld.TornPages)
}

// failAfter makes the n-th metadata write or flush from now fail.
func (h *harness) failAfter(n int64) { h.dev.failAt = h.dev.ios + n }

// tearDev is a Mem whose metadata writes and flushes fail from the failAt-th
// on, as if the machine lost power there. The write that fails first lands
// torn at a random byte (not sector) boundary: a prefix of the new data
// over the old, which the crash may then keep or drop. Single goroutine.
type tearDev struct {
	*blockdev.Mem
	r      *rand.Rand
	ios    int64 // writes and flushes so far
	failAt int64 // 0: never
}

func (d *tearDev) fail() bool {
	d.ios++
	return d.failAt > 0 && d.ios >= d.failAt
}

func (d *tearDev) WriteAt(p []byte, off int64) (int, error) {
	if !d.fail() {
		return d.Mem.WriteAt(p, off)
	}
	if d.ios == d.failAt && len(p) > 0 {
		buf := blockdev.NewPool().Get(len(p))
		if _, err := d.Mem.ReadAt(buf.B, off); err != nil {
			return 0, err
		}
		// Metadata blocks carry their fields near the start: cut there
		// half the time.
		cut := d.r.IntN(len(p))
		if d.r.IntN(2) == 0 {
			cut = d.r.IntN(min(len(p), 128))
		}
		copy(buf.B, p[:cut])
		if _, err := d.Mem.WriteAt(buf.B, off); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("tear at %d: %w", off, blockdev.ErrInjected)
}

func (d *tearDev) Flush() error {
	if d.fail() {
		return fmt.Errorf("flush: %w", blockdev.ErrInjected)
	}
	return d.Mem.Flush()
}

// crash simulates a power loss at this point, reloads, and checks the
// invariants.
func (h *harness) crash(how string) {
	h.t.Helper()
	h.crashes++
	switch how {
	case "none":
		h.mem.Crash()
	case "all":
		h.mem.CrashWith(func(int64) bool { return true })
	default:
		r := rand.New(rand.NewPCG(h.r.Uint64(), 1)) // keep is called under Mem's lock
		h.mem.CrashWith(func(int64) bool { return r.IntN(2) == 0 })
	}
	h.reopen()
	sb := h.st.Superblock()
	if sb != h.sbCommitted && (h.sbPending == nil || sb != *h.sbPending) {
		h.t.Fatalf("superblock after crash: %+v; committed %+v, pending %+v", sb, h.sbCommitted, h.sbPending)
	}
	if h.sbPending != nil && sb == *h.sbPending {
		h.sbCommitted = sb
	}
	h.sbPending = nil
	for first, end := range h.must.Ranges(0) {
		if n := h.bm.CountRange(first, end); n != uint64(end-first) {
			h.t.Fatalf("crash %d (%s): %d blocks of [%d, %d), written while disconnected, are in sync after recovery", h.crashes, how, uint64(end-first)-n, first, end)
		}
	}
	for _, w := range h.inflight {
		if n := h.bm.CountRange(w.first, w.end); n != uint64(w.end-w.first) {
			h.t.Fatalf("crash %d (%s): %d blocks of [%d, %d), a write in flight, are in sync after recovery", h.crashes, how, uint64(w.end-w.first)-n, w.first, w.end)
		}
		h.must.SetRange(w.first, w.end)
	}
	h.inflight, h.queued = nil, nil
	h.connected = false
}

// step performs one random operation; a metadata I/O error returns it.
func (h *harness) step() error {
	switch op := h.r.IntN(100); {
	case op < 40:
		return h.write()
	case op < 65:
		h.complete()
	case op < 72:
		return h.commit()
	case op < 76:
		h.toggle()
	case op < 84:
		h.resync()
	case op < 88:
		return h.st.FlushBitmap(h.bm)
	case op < 93:
		return h.superblock()
	case op < 95:
		h.al.EvictIdle()
		return h.commit()
	default:
		if !h.noCrash {
			h.crash([]string{"none", "all", "random"}[h.r.IntN(3)])
		}
	}
	return nil
}

func (h *harness) write() error {
	var e Extent
	if h.r.IntN(4) == 0 {
		e = Extent(h.r.Uint64N(h.st.Layout().Extents()))
	} else {
		e = h.hot[h.r.IntN(len(h.hot))]
	}
	first := e.FirstBlock() + Block(h.r.IntN(BlocksPerExtent))
	end := min(first+1+Block(h.r.IntN(h.r.IntN(3000)+1)), Block(h.st.Layout().Blocks()))
	st, err := h.al.Begin(first, end)
	if err != nil {
		h.t.Fatal(err)
	}
	w := hwrite{first, end}
	switch st {
	case Wait:
		h.waits++
	case Go:
		h.issue(w)
	case AfterCommit:
		h.queued = append(h.queued, w)
		if h.r.IntN(3) != 0 {
			return h.commit()
		}
	}
	return nil
}

// issue sends a write to the local disk (and to the peer if connected).
func (h *harness) issue(w hwrite) {
	if !h.connected {
		h.bm.SetRange(w.first, w.end)
		h.must.SetRange(w.first, w.end)
	}
	h.inflight = append(h.inflight, w)
}

func (h *harness) commit() error {
	tx, ok := h.al.Seal()
	if !ok {
		return nil
	}
	if err := h.st.CommitAL(tx, h.bm); err != nil {
		return err
	}
	if err := h.al.Committed(tx); err != nil {
		h.t.Fatal(err)
	}
	h.txs++
	for _, w := range h.queued {
		h.issue(w)
	}
	h.queued = h.queued[:0]
	return nil
}

func (h *harness) complete() {
	if len(h.inflight) == 0 {
		return
	}
	i := h.r.IntN(len(h.inflight))
	w := h.inflight[i]
	if err := h.al.Complete(w.first, w.end); err != nil {
		h.t.Fatal(err)
	}
	h.inflight = slices.Delete(h.inflight, i, i+1)
}

func (h *harness) toggle() {
	h.connected = !h.connected
	if !h.connected {
		// Writes in flight may not reach the peer.
		for _, w := range h.inflight {
			h.bm.SetRange(w.first, w.end)
			h.must.SetRange(w.first, w.end)
		}
	}
}

// resync copies a run of out-of-sync blocks to the peer and clears their
// bits, avoiding blocks with writes in flight.
func (h *harness) resync() {
	if !h.connected {
		return
	}
	from := Block(h.r.Uint64N(h.bm.Blocks()))
	first, end, ok := h.bm.NextRange(from, 4096)
	if !ok {
		return
	}
	for _, w := range slices.Concat(h.inflight, h.queued) {
		if w.first < end && first < w.end {
			return
		}
	}
	h.bm.ClearRange(first, end)
	h.must.ClearRange(first, end)
}

func (h *harness) superblock() error {
	sb := h.sbCommitted
	sb.Flags = Flags(h.r.Uint64N(uint64(knownFlags) + 1))
	sb.CurrentUUID = h.r.Uint64()
	sb.ResyncPos = Block(h.r.Uint64N(h.st.Layout().Blocks()))
	sb.Seq = h.sbCommitted.Seq + 1
	h.sbPending = &sb
	if err := h.st.WriteSuperblock(sb); err != nil {
		return err
	}
	h.sbCommitted, h.sbPending = h.st.Superblock(), nil
	if h.sbCommitted != sb {
		h.t.Fatalf("written %+v, store has %+v", sb, h.sbCommitted)
	}
	return nil
}

// run performs n steps; when a metadata I/O fails the node crashes there.
func (h *harness) run(n int, faultEvery int) {
	for range n {
		if faultEvery > 0 && h.dev.failAt == 0 && h.r.IntN(faultEvery) == 0 {
			h.failAfter(1 + h.r.Int64N(6))
		}
		if err := h.step(); err != nil {
			if !errors.Is(err, blockdev.ErrInjected) {
				h.t.Fatalf("unexpected error: %v", err)
			}
			h.crash([]string{"none", "all", "random"}[h.r.IntN(3)])
		}
	}
}

// TestCrashEveryStep replays one fixed sequence of operations and crashes
// it at every metadata write and flush in turn (that I/O and all later
// ones fail), with the unflushed blocks all lost, all kept, or a random
// half kept (tearing 4 KiB writes), then checks the recovered state.
func TestCrashEveryStep(t *testing.T) {
	const steps = 400
	for _, p := range []Placement{Internal, External} {
		dry := newHarness(t, 1, p, MinALExtents)
		dry.noCrash = true
		dry.run(steps, 0)
		total := dry.dev.ios
		if total < 100 || dry.txs < 20 {
			t.Fatalf("%v: dry run too weak: %d I/Os, %d transactions", p, total, dry.txs)
		}
		for k := int64(1); k <= total; k++ {
			for _, how := range []string{"none", "all", "random"} {
				h := newHarness(t, 1, p, MinALExtents)
				h.noCrash = true
				h.failAfter(k)
				crashed := false
				for range steps {
					if err := h.step(); err != nil {
						h.crash(how)
						crashed = true
						break
					}
				}
				if !crashed {
					t.Fatalf("%v: I/O %d never failed", p, k)
				}
			}
		}
		t.Logf("%v: crashed at each of %d metadata I/Os (%d transactions)", p, total, dry.txs)
	}
}

// TestCrashModel is the randomized model test: random writes across hot
// and cold extents, connects and disconnects, resync, bitmap flushes,
// superblock updates, clean evictions and crashes, with metadata I/O
// failing at random points. After every crash, every block written since
// its last resync while the peer was away, or in flight at the crash, must
// be marked out of sync.
func TestCrashModel(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for seed := range uint64(seeds) {
		for _, p := range []Placement{Internal, External} {
			al := []int{MinALExtents, 13, 61}[seed%3]
			t.Run(fmt.Sprintf("seed%d-%v-al%d", seed, p, al), func(t *testing.T) {
				h := newHarness(t, seed, p, al)
				h.run(1500, 40)
				h.crash("random")
				if h.crashes < 5 || h.txs < 20 {
					t.Errorf("weak run: %d crashes, %d transactions", h.crashes, h.txs)
				}
				t.Logf("%d crashes, %d transactions, %d waits, %d torn pages, %d blocks marked", h.crashes, h.txs, h.waits, h.torn, h.must.Count())
			})
		}
	}
}

// TestCrashMultiSlotTransaction crashes a transaction that spans three
// ring slots at each of its I/Os: recovery finds the previous active set
// or the new one, never a mix, and marks every extent of it.
func TestCrashMultiSlotTransaction(t *testing.T) {
	const size, al = 10 << 30, 2500
	// I/Os: bitmap pages of the evicted extents, flush, the 3 slots (one
	// WriteAt), flush.
	for k := int64(1); k <= 4; k++ {
		for i := range 24 {
			how := []string{"none", "all", "random"}[i%3]
			mem := blockdev.NewMem(size, 512)
			l, err := PlanInternal(size, al)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Create(mem, l, Superblock{}, false); err != nil {
				t.Fatal(err)
			}
			dev := &tearDev{Mem: mem, r: rand.New(rand.NewPCG(uint64(k), uint64(i)))}
			st, err := Open(dev, Internal)
			if err != nil {
				t.Fatal(err)
			}
			ld, err := st.Load()
			if err != nil {
				t.Fatal(err)
			}
			alog := ld.AL
			old := map[Extent]bool{}
			for e := range Extent(2100) {
				mustBegin(t, alog, e, e, AfterCommit)
				old[e] = true
			}
			tx, _ := alog.Seal()
			if SlotsPerTransaction(len(tx.Active)) != 3 {
				t.Fatalf("%d slots", SlotsPerTransaction(len(tx.Active)))
			}
			if err := st.CommitAL(tx, ld.Bitmap); err != nil {
				t.Fatal(err)
			}
			_ = alog.Committed(tx)
			// The next transaction replaces 100 idle extents by new ones.
			// They were written while the peer was away.
			for e := range Extent(100) {
				ld.Bitmap.Set(e.FirstBlock() + 5)
				mustComplete(t, alog, e, e)
			}
			newSet := map[Extent]bool{}
			for e := range Extent(2100) {
				newSet[e+100] = true
			}
			if n := alog.EvictIdle(); n != 100 {
				t.Fatalf("evicted %d", n)
			}
			mustBegin(t, alog, 2100, 2199, AfterCommit)
			tx, _ = alog.Seal()
			dev.failAt = dev.ios + k
			if err := st.CommitAL(tx, ld.Bitmap); err == nil {
				t.Fatalf("k=%d: no failure", k)
			}
			switch how {
			case "none":
				mem.Crash()
			case "all":
				mem.CrashWith(func(int64) bool { return true })
			default:
				r := rand.New(rand.NewPCG(uint64(k), uint64(i)))
				mem.CrashWith(func(int64) bool { return r.IntN(2) == 0 })
			}
			st2, err := Open(mem, Internal)
			if err != nil {
				t.Fatal(err)
			}
			ld2, err := st2.Load()
			if err != nil {
				t.Fatal(err)
			}
			got := map[Extent]bool{}
			for _, e := range ld2.Recovered {
				got[e] = true
				if !ld2.Bitmap.Test(e.FirstBlock()) || !ld2.Bitmap.Test(e.FirstBlock()+BlocksPerExtent-1) {
					t.Fatalf("recovered extent %d not marked", e)
				}
			}
			if !maps.Equal(got, old) && !maps.Equal(got, newSet) {
				t.Fatalf("k=%d %s: recovered %d extents, neither the old nor the new set", k, how, len(got))
			}
			for e := range Extent(100) {
				if !ld2.Bitmap.Test(e.FirstBlock() + 5) {
					t.Fatalf("k=%d %s: bit of evicted extent %d lost", k, how, e)
				}
			}
		}
	}
}
