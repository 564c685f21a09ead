package meta

import (
	"errors"
	"slices"
	"testing"

	"hastor/blockdev"
)

func newInternal(t testing.TB, size int64, al int) (*blockdev.Mem, *Store) {
	t.Helper()
	mem := blockdev.NewMem(size, 512)
	l, err := PlanInternal(size, al)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Create(mem, l, Superblock{Flags: FlagConsistent, CurrentUUID: 7}, false)
	if err != nil {
		t.Fatal(err)
	}
	return mem, st
}

func TestStoreCreateOpenLoad(t *testing.T) {
	mem, st := newInternal(t, 1<<30, MinALExtents)
	if sb := st.Superblock(); sb.Seq != 2 || sb.CurrentUUID != 7 || sb.DataSize != st.Layout().DataSize {
		t.Fatalf("superblock %+v", sb)
	}
	mem.Crash() // Create flushed everything
	st2, err := Open(mem, Internal)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Layout() != st.Layout() || st2.Superblock() != st.Superblock() {
		t.Fatalf("layout %+v / %+v", st2.Layout(), st.Layout())
	}
	ld, err := st2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if ld.Bitmap.Count() != 0 || len(ld.Recovered) != 0 || len(ld.TornPages) != 0 || ld.AL.Capacity() != MinALExtents {
		t.Fatalf("loaded %+v count %d", ld, ld.Bitmap.Count())
	}
	if _, err := Open(mem, External); !errors.Is(err, ErrNoMetadata) {
		t.Fatalf("internal opened as external: %v", err)
	}
	if _, err := Open(blockdev.NewMem(1<<20, 512), Internal); !errors.Is(err, ErrNoMetadata) {
		t.Fatalf("blank device: %v", err)
	}
}

func TestStoreExternalFullSync(t *testing.T) {
	const data = 300 << 20
	l, err := PlanExternal(data, 1<<20, 2000)
	if err != nil {
		t.Fatal(err)
	}
	mem := blockdev.NewMem(1<<20, 4096)
	if _, err := Create(mem, l, Superblock{Flags: FlagFullSync}, true); err != nil {
		t.Fatal(err)
	}
	mem.Crash()
	st, err := Open(mem, External)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	if ld.Bitmap.Count() != data/BlockSize || ld.Superblock.Flags != FlagFullSync {
		t.Fatalf("count %d flags %v", ld.Bitmap.Count(), ld.Superblock.Flags)
	}
	if _, err := Open(mem, Internal); !errors.Is(err, ErrNoMetadata) && !errors.Is(err, ErrLayoutMismatch) {
		t.Fatalf("external opened as internal: %v", err)
	}
}

func TestStoreSuperblockAlternates(t *testing.T) {
	mem, st := newInternal(t, 64<<20, MinALExtents)
	sb := st.Superblock()
	for i := range 5 {
		sb.Flags ^= FlagPrimary
		sb.ResyncPos = Block(i)
		if err := st.WriteSuperblock(sb); err != nil {
			t.Fatal(err)
		}
	}
	if st.Superblock().Seq != 7 || st.Stats().SuperblockWrites != 7 {
		t.Fatalf("seq %d stats %+v", st.Superblock().Seq, st.Stats())
	}
	// Destroy the newest copy (seq 7 is in copy 1): the older one wins.
	buf := blockdev.NewPool().Get(BlockSize)
	clear(buf.B)
	if _, err := mem.WriteAt(buf.B, st.Layout().SuperblockOffsets[1]); err != nil {
		t.Fatal(err)
	}
	st2, err := Open(mem, Internal)
	if err != nil || st2.Superblock().Seq != 6 || st2.Superblock().ResyncPos != 3 {
		t.Fatalf("after losing copy 1: %+v %v", st2.Superblock(), err)
	}
	bad := sb
	bad.DataSize++
	if err := st.WriteSuperblock(bad); !errors.Is(err, ErrLayoutMismatch) {
		t.Fatalf("layout change: %v", err)
	}
}

func TestStoreALRecovery(t *testing.T) {
	mem, st := newInternal(t, 1<<30, MinALExtents)
	ld, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	al, bm := ld.AL, ld.Bitmap
	mustBegin(t, al, 3, 4, AfterCommit)
	mustBegin(t, al, 40, 40, AfterCommit)
	tx, _ := al.Seal()
	if err := st.CommitAL(tx, bm); err != nil {
		t.Fatal(err)
	}
	if err := al.Committed(tx); err != nil {
		t.Fatal(err)
	}
	// Crash: the writes to 3, 4, 40 may be anywhere; all three extents
	// come back out of sync, and nothing else.
	mem.Crash()
	st2, err := Open(mem, Internal)
	if err != nil {
		t.Fatal(err)
	}
	ld2, err := st2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sorted(ld2.Recovered), []Extent{3, 4, 40}) || ld2.Bitmap.Count() != 3*BlocksPerExtent {
		t.Fatalf("recovered %v count %d", ld2.Recovered, ld2.Bitmap.Count())
	}
	// The recovered bits are on disk already: a crash right after Load
	// with a fresh, empty AL transaction loses nothing.
	al2 := ld2.AL
	mustBegin(t, al2, 100, 100, AfterCommit)
	tx2, _ := al2.Seal()
	if err := st2.CommitAL(tx2, ld2.Bitmap); err != nil {
		t.Fatal(err)
	}
	mem.Crash()
	st3, _ := Open(mem, Internal)
	ld3, err := st3.Load()
	if err != nil {
		t.Fatal(err)
	}
	if ld3.Bitmap.Count() != 4*BlocksPerExtent || ld3.AL.Stats().Active != 0 {
		t.Fatalf("count %d", ld3.Bitmap.Count())
	}
	if tx2.Seq <= tx.Seq {
		t.Fatalf("seq went back: %d after %d", tx2.Seq, tx.Seq)
	}
}

func TestStoreCommitFlushesEvictedBits(t *testing.T) {
	mem, st := newInternal(t, 1<<30, MinALExtents)
	ld, _ := st.Load()
	al, bm := ld.AL, ld.Bitmap
	// Extent 0 written while disconnected, then idle.
	mustBegin(t, al, 0, 0, AfterCommit)
	tx, _ := al.Seal()
	if err := st.CommitAL(tx, bm); err != nil {
		t.Fatal(err)
	}
	_ = al.Committed(tx)
	bm.SetRange(5, 9)
	mustComplete(t, al, 0, 0)
	if !bm.PageNeedsFlush(0) {
		t.Fatal("page 0 should need a flush")
	}
	al.EvictIdle()
	tx, _ = al.Seal()
	if !slices.Equal(tx.BitmapPages, []int{0}) {
		t.Fatalf("pages %v", tx.BitmapPages)
	}
	before := st.Stats().BitmapWrites
	if err := st.CommitAL(tx, bm); err != nil {
		t.Fatal(err)
	}
	if st.Stats().BitmapWrites != before+1 || bm.PageNeedsFlush(0) {
		t.Fatal("evicted extent's page not written")
	}
	mem.Crash()
	st2, _ := Open(mem, Internal)
	ld2, _ := st2.Load()
	if len(ld2.Recovered) != 0 || ld2.Bitmap.Count() != 4 || !ld2.Bitmap.Test(5) {
		t.Fatalf("recovered %v count %d", ld2.Recovered, ld2.Bitmap.Count())
	}
}

func TestStoreErrorsWrapped(t *testing.T) {
	mem, st := newInternal(t, 64<<20, MinALExtents)
	f := blockdev.NewFaulty(mem)
	st2, err := Open(f, Internal)
	if err != nil {
		t.Fatal(err)
	}
	f.FailAfter(blockdev.OpFlush, 0, nil)
	if err := st2.WriteSuperblock(st.Superblock()); !errors.Is(err, blockdev.ErrInjected) {
		t.Fatalf("flush failure: %v", err)
	}
	f.Reset()
	f.FailAfter(blockdev.OpRead, 1, nil) // the ring read passes, the bitmap read fails
	if _, err := st2.Load(); !errors.Is(err, blockdev.ErrInjected) {
		t.Fatalf("read failure: %v", err)
	}
	f.Reset()
	f.FailAfter(blockdev.OpRead, 0, nil)
	if _, err := Open(f, Internal); !errors.Is(err, blockdev.ErrInjected) {
		t.Fatalf("open read failure: %v", err)
	}
}
