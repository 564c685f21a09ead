package meta

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// ext returns the block range of extents [a, b].
func ext(a, b Extent) (Block, Block) { return a.FirstBlock(), b.FirstBlock() + BlocksPerExtent }

func mustBegin(t *testing.T, al *ActivityLog, a, b Extent, want BeginStatus) {
	t.Helper()
	f, e := ext(a, b)
	got, err := al.Begin(f, e)
	if err != nil || got != want {
		t.Fatalf("Begin(%d..%d) = %v, %v; want %v", a, b, got, err, want)
	}
}

func mustComplete(t *testing.T, al *ActivityLog, a, b Extent) {
	t.Helper()
	f, e := ext(a, b)
	if err := al.Complete(f, e); err != nil {
		t.Fatalf("Complete(%d..%d): %v", a, b, err)
	}
}

func commit(t *testing.T, al *ActivityLog) *Transaction {
	t.Helper()
	tx, ok := al.Seal()
	if !ok {
		t.Fatal("Seal: nothing to commit")
	}
	if err := al.Committed(tx); err != nil {
		t.Fatal(err)
	}
	return tx
}

func sorted(es []Extent) []Extent { return slices.Sorted(slices.Values(es)) }

func TestALBasic(t *testing.T) {
	al := NewActivityLog(7, 1)
	mustBegin(t, al, 3, 4, AfterCommit) // spans two extents
	mustBegin(t, al, 4, 4, AfterCommit) // joins the open transaction
	tx, ok := al.Seal()
	if !ok || tx.Seq != 1 || !slices.Equal(sorted(tx.Active), []Extent{3, 4}) || !slices.Equal(tx.Added, []Extent{3, 4}) || len(tx.Evicted) != 0 {
		t.Fatalf("tx %+v", tx)
	}
	// While it is in flight: writes to its extents and to new extents
	// wait, nothing is taken.
	mustBegin(t, al, 4, 4, Wait)
	mustBegin(t, al, 9, 9, Wait)
	if _, ok := al.Seal(); ok {
		t.Fatal("second Seal while in flight")
	}
	if err := al.Committed(tx); err != nil {
		t.Fatal(err)
	}
	if err := al.Committed(tx); !errors.Is(err, ErrTxState) {
		t.Fatalf("double Committed: %v", err)
	}
	mustBegin(t, al, 4, 4, Go)
	mustComplete(t, al, 3, 4)
	mustComplete(t, al, 4, 4)
	mustComplete(t, al, 4, 4)
	f, e := ext(4, 4)
	if err := al.Complete(f, e); !errors.Is(err, ErrNotActive) {
		t.Fatalf("extra Complete: %v", err)
	}
	if s := al.Stats(); s.Active != 2 || s.Idle != 2 || s.Transactions != 1 || s.Waits != 2 {
		t.Fatalf("stats %+v", s)
	}
	if _, ok := al.Seal(); ok {
		t.Fatal("Seal with nothing open")
	}
	if st, err := al.Begin(5, 5); st != Go || err != nil {
		t.Fatal("empty range")
	}
	if _, err := al.Begin(ext(0, 7)); !errors.Is(err, ErrRangeTooLarge) {
		t.Fatalf("8 extents in a log of 7: %v", err)
	}
}

func TestALEvictionLRU(t *testing.T) {
	al := NewActivityLog(7, 1)
	for e := range Extent(7) {
		mustBegin(t, al, e*100, e*100, AfterCommit)
	}
	commit(t, al)
	// Idle in the order 3, 0, 1, 2, 4, 5, 6 except 6 which stays busy.
	for _, e := range []Extent{3, 0, 1, 2, 4, 5} {
		mustComplete(t, al, e*100, e*100)
	}
	mustBegin(t, al, 1000, 1000, AfterCommit)
	mustBegin(t, al, 1001, 1001, AfterCommit)
	tx := commit(t, al)
	if !slices.Equal(tx.Evicted, []Extent{300, 0}) {
		t.Fatalf("evicted %v, want LRU 300, 0", tx.Evicted)
	}
	if !slices.Equal(tx.BitmapPages, []int{PageOfExtent(0), PageOfExtent(300)}) {
		t.Fatalf("pages %v", tx.BitmapPages)
	}
	if al.IsActive(300) || !al.IsActive(1000) || !al.IsActive(600) {
		t.Fatal("active set wrong")
	}
	// Everything busy: 600, 1000, 1001 busy, 100..500 idle (4). A write
	// over 5 new extents must wait and take nothing.
	st, err := al.Begin(ext(2000, 2004))
	if st != Wait || err != nil {
		t.Fatalf("got %v %v", st, err)
	}
	// A write over 4 new extents fits by evicting all idle ones.
	mustBegin(t, al, 2000, 2003, AfterCommit)
	tx = commit(t, al)
	if len(tx.Evicted) != 4 || len(tx.Active) != 7 {
		t.Fatalf("tx %+v", tx)
	}
	// Now every slot is busy: a new extent waits until a Complete.
	mustBegin(t, al, 3000, 3000, Wait)
	mustComplete(t, al, 2000, 2003)
	mustBegin(t, al, 3000, 3000, AfterCommit)
}

func TestALBeginDoesNotEvictItsOwnExtents(t *testing.T) {
	al := NewActivityLog(7, 1)
	for e := range Extent(7) {
		mustBegin(t, al, e, e, AfterCommit)
	}
	commit(t, al)
	for e := range Extent(7) {
		mustComplete(t, al, e, e)
	}
	// Extents 5, 6 are idle and in the range; 7 is new and must evict
	// one of 0..4, not 5 or 6.
	mustBegin(t, al, 5, 7, AfterCommit)
	tx := commit(t, al)
	if len(tx.Evicted) != 1 || tx.Evicted[0] > 4 {
		t.Fatalf("evicted %v", tx.Evicted)
	}
	for _, e := range []Extent{5, 6, 7} {
		if !al.IsActive(e) {
			t.Fatalf("%d not active", e)
		}
	}
}

func TestALEvictIdle(t *testing.T) {
	al := NewActivityLog(10, 5)
	mustBegin(t, al, 1, 3, AfterCommit)
	commit(t, al)
	mustComplete(t, al, 1, 3)
	mustBegin(t, al, 2, 2, Go)
	if n := al.EvictIdle(); n != 2 {
		t.Fatalf("evicted %d", n)
	}
	tx := commit(t, al)
	if tx.Seq != 6 || !slices.Equal(tx.Active, []Extent{2}) {
		t.Fatalf("tx %+v", tx)
	}
}

// TestALRandom checks the state machine's invariants under random
// operations: the log never holds more than its capacity, a write gets Go
// only when all its extents are committed active, an extent with writes
// in flight (or waiting for a commit) is never evicted, and every
// transaction's Active is exactly the set of extents in the log.
func TestALRandom(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 99))
		capacity := MinALExtents + r.IntN(20)
		al := NewActivityLog(capacity, 1)
		type write struct {
			a, b   Extent
			issued bool
		}
		var writes []write
		committed := map[Extent]bool{} // extents recorded active on disk
		refs := map[Extent]int{}
		nExt := Extent(capacity * 3)
		var sealed *Transaction
		for step := range 5000 {
			switch op := r.IntN(10); {
			case op < 5:
				a := Extent(r.IntN(int(nExt)))
				b := min(a+Extent(r.IntN(3)), nExt-1)
				st, err := al.Begin(ext(a, b))
				if err != nil {
					t.Fatal(err)
				}
				if st == Wait {
					continue
				}
				for e := a; e <= b; e++ {
					refs[e]++
					if st == Go && !committed[e] {
						t.Fatalf("seed %d step %d: Go for extent %d not committed", seed, step, e)
					}
				}
				writes = append(writes, write{a, b, st == Go})
			case op < 8 && len(writes) > 0:
				i := r.IntN(len(writes))
				w := writes[i]
				if !w.issued {
					continue
				}
				mustComplete(t, al, w.a, w.b)
				for e := w.a; e <= w.b; e++ {
					refs[e]--
				}
				writes = slices.Delete(writes, i, i+1)
			case op == 8 && sealed == nil:
				tx, ok := al.Seal()
				if !ok {
					continue
				}
				if len(tx.Active) > capacity {
					t.Fatalf("active %d > capacity %d", len(tx.Active), capacity)
				}
				in := map[Extent]bool{}
				for _, e := range tx.Active {
					in[e] = true
				}
				for e, n := range refs {
					if n > 0 && !in[e] {
						t.Fatalf("seed %d: extent %d with %d writes not in tx", seed, e, n)
					}
				}
				sealed = tx
			case op == 9 && sealed != nil:
				clear(committed)
				for _, e := range sealed.Active {
					committed[e] = true
				}
				if err := al.Committed(sealed); err != nil {
					t.Fatal(err)
				}
				sealed = nil
				for i := range writes {
					writes[i].issued = true
				}
			}
		}
	}
}

func TestALRing(t *testing.T) {
	const alExt = 2500 // 3 slots per transaction
	ringN := ringSlots(alExt)
	if SlotsPerTransaction(alExt) != 3 || ringN != 8 {
		t.Fatalf("slots %d ring %d", SlotsPerTransaction(alExt), ringN)
	}
	ring := make([]byte, ringN*BlockSize)
	r, err := Recover(ring, alExt, 1<<20)
	if err != nil || r.Found || r.NextSeq != 1 || r.NextSlot != 0 {
		t.Fatalf("empty ring: %+v %v", r, err)
	}
	buf := make([]byte, 3*BlockSize)
	pos := 0
	var sets [][]Extent
	for seq := uint64(1); seq <= 7; seq++ { // 7: 2100 extents, 3 slots
		set := make([]Extent, (int(seq)*300)%alExt)
		for i := range set {
			set[i] = Extent(int(seq)*7919 + i)
		}
		sets = append(sets, set)
		parts := EncodeTransaction(seq, set, buf)
		for k := range parts {
			copy(ring[((pos+k)%ringN)*BlockSize:], buf[k*BlockSize:(k+1)*BlockSize])
		}
		pos = (pos + parts) % ringN
		r, err := Recover(ring, alExt, 1<<20)
		if err != nil || !r.Found || r.Seq != seq || !slices.Equal(r.Active, set) || r.NextSlot != pos || r.NextSeq != seq+1 {
			t.Fatalf("seq %d: %+v %v", seq, r.Seq, err)
		}
	}
	// Tear the last transaction (its last slot is lost): the one before
	// wins, and the next sequence number skips the torn one, whose other
	// slots are intact.
	last := (pos + ringN - 1) % ringN
	clear(ring[last*BlockSize : last*BlockSize+100])
	r, err = Recover(ring, alExt, 1<<20)
	if err != nil || r.Seq != 6 || !slices.Equal(r.Active, sets[5]) || r.NextSeq != 8 {
		t.Fatalf("torn: seq %d next %d %v", r.Seq, r.NextSeq, err)
	}
	// Extents beyond the data area make a slot invalid.
	EncodeTransaction(50, []Extent{5}, buf)
	copy(ring, buf[:BlockSize])
	r, _ = Recover(ring, alExt, 5)
	if r.Seq == 50 {
		t.Fatal("out-of-range extent accepted")
	}
	if _, err := Recover(ring[:100], alExt, 5); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short ring: %v", err)
	}
}

func TestALTableChurn(t *testing.T) {
	// Heavy insert/evict churn over colliding extents keeps the hash table
	// consistent (backward-shift deletion).
	al := NewActivityLog(MinALExtents, 1)
	r := rand.New(rand.NewPCG(3, 3))
	for range 20000 {
		e := Extent(r.IntN(64)) * 8 // many collisions in a table of 16
		st, _ := al.Begin(ext(e, e))
		if st == AfterCommit {
			commit(t, al)
		}
		if st != Wait {
			mustComplete(t, al, e, e)
		}
		n := 0
		for _, i := range al.table {
			if i >= 0 {
				n++
				if al.lookup(al.entries[i].ext) != i {
					t.Fatal("entry not found by lookup")
				}
			}
		}
		if n != al.capacity-len(al.free) {
			t.Fatalf("table has %d entries, log %d", n, al.capacity-len(al.free))
		}
	}
}

// BenchmarkALBeginComplete is the hot path: a write to an extent already
// in the log.
func BenchmarkALBeginComplete(b *testing.B) {
	al := NewActivityLog(DefaultALExtents, 1)
	for e := range Extent(DefaultALExtents) {
		if st, _ := al.Begin(ext(e, e)); st != AfterCommit {
			b.Fatal(st)
		}
	}
	tx, _ := al.Seal()
	_ = al.Committed(tx)
	for e := range Extent(DefaultALExtents) {
		_ = al.Complete(ext(e, e))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f := Block(i%DefaultALExtents)*BlocksPerExtent + 17
		if st, _ := al.Begin(f, f+8); st != Go {
			b.Fatal(st)
		}
		_ = al.Complete(f, f+8)
	}
}

// BenchmarkALMiss is a write to a new extent: eviction, Seal, Committed.
func BenchmarkALMiss(b *testing.B) {
	al := NewActivityLog(DefaultALExtents, 1)
	b.ReportAllocs()
	for i := range b.N {
		e := Extent(i)
		if st, _ := al.Begin(ext(e, e)); st != AfterCommit {
			b.Fatal(st)
		}
		tx, _ := al.Seal()
		_ = al.Committed(tx)
		_ = al.Complete(ext(e, e))
	}
}
