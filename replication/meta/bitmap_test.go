package meta

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBitmapModel drives random range operations against a []bool model.
func TestBitmapModel(t *testing.T) {
	for _, blocks := range []uint64{1, 63, 64, 65, BlocksPerPage - 1, BlocksPerPage, 2*BlocksPerPage + 77} {
		r := rand.New(rand.NewPCG(blocks, 1))
		bm := NewBitmap(blocks)
		model := make([]bool, blocks)
		count := func() (n uint64) {
			for _, v := range model {
				if v {
					n++
				}
			}
			return
		}
		for range 2000 {
			a := Block(r.Uint64N(blocks + 10))
			b := a + Block(r.Uint64N(300))
			if r.IntN(10) == 0 {
				b = a + Block(r.Uint64N(blocks+1))
			}
			var changed, want uint64
			switch r.IntN(4) {
			case 0, 1:
				changed = bm.SetRange(a, b)
				for x := a; x < b && uint64(x) < blocks; x++ {
					if !model[x] {
						want++
					}
					model[x] = true
				}
			case 2:
				changed = bm.ClearRange(a, b)
				for x := a; x < b && uint64(x) < blocks; x++ {
					if model[x] {
						want++
					}
					model[x] = false
				}
			case 3:
				set := r.IntN(2) == 0
				if set {
					bm.Set(a)
				} else {
					bm.Clear(a)
				}
				if uint64(a) < blocks {
					model[a] = set
				}
			}
			if changed != want {
				t.Fatalf("blocks %d: changed %d, want %d", blocks, changed, want)
			}
			if bm.Count() != count() {
				t.Fatalf("blocks %d: count %d, want %d", blocks, bm.Count(), count())
			}
			if got := bm.CountRange(a, b); got != bm.countSlow(a, b) {
				t.Fatalf("CountRange %d", got)
			}
		}
		for x := range model {
			if bm.Test(Block(x)) != model[x] {
				t.Fatalf("blocks %d: bit %d is %v", blocks, x, bm.Test(Block(x)))
			}
		}
		// Ranges enumerate exactly the set bits, in order, as maximal runs.
		var got []Block
		prevEnd := Block(0)
		for first, end := range bm.Ranges(0) {
			if first >= end || (len(got) > 0 && first <= prevEnd) {
				t.Fatalf("bad run [%d,%d) after %d", first, end, prevEnd)
			}
			for x := first; x < end; x++ {
				got = append(got, x)
			}
			prevEnd = end
		}
		var want []Block
		for x, v := range model {
			if v {
				want = append(want, Block(x))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("blocks %d: ranges differ", blocks)
		}
		// NextRange with a length limit resumes where it stopped.
		got = got[:0]
		for from := Block(0); ; {
			first, end, ok := bm.NextRange(from, 5)
			if !ok {
				break
			}
			if end-first > 5 {
				t.Fatalf("run longer than 5")
			}
			for x := first; x < end; x++ {
				got = append(got, x)
			}
			from = end
		}
		if !slices.Equal(got, want) {
			t.Fatalf("blocks %d: limited ranges differ", blocks)
		}
	}
}

func (b *Bitmap) countSlow(first, end Block) (n uint64) {
	for x := first; x < end; x++ {
		if b.Test(x) {
			n++
		}
	}
	return
}

func TestBitmapDirtyPages(t *testing.T) {
	bm := NewBitmap(5 * BlocksPerPage)
	if slices.Collect(bm.DirtyPages()) != nil {
		t.Fatal("new bitmap has dirty pages")
	}
	bm.Set(BlocksPerPage*3 + 7)
	bm.SetRange(BlocksPerPage-1, BlocksPerPage+1) // pages 0 and 1
	if got := slices.Collect(bm.DirtyPages()); !slices.Equal(got, []int{0, 1, 3}) {
		t.Fatalf("dirty %v", got)
	}
	buf := make([]byte, BlockSize)
	for p := range bm.DirtyPages() {
		bm.SnapshotPage(p, buf)
	}
	if slices.Collect(bm.DirtyPages()) != nil || bm.PageNeedsFlush(3) {
		t.Fatal("pages still dirty after snapshot")
	}
	// Setting a set bit dirties nothing; clearing dirties without needing
	// a flush.
	bm.Set(BlocksPerPage*3 + 7)
	if bm.PageDirty(3) {
		t.Fatal("no-op Set dirtied a page")
	}
	bm.Clear(BlocksPerPage*3 + 7)
	if !bm.PageDirty(3) || bm.PageNeedsFlush(3) {
		t.Fatal("Clear: want dirty, no flush needed")
	}
	bm.ClearRange(4*BlocksPerPage, 5*BlocksPerPage) // nothing set: clean
	if bm.PageDirty(4) {
		t.Fatal("no-op ClearRange dirtied a page")
	}
	// Iteration stops when asked to.
	bm.Set(4 * BlocksPerPage)
	for p := range bm.DirtyPages() {
		if p != 3 {
			t.Fatalf("first dirty page %d", p)
		}
		break
	}
}

func TestBitmapPageRoundTrip(t *testing.T) {
	blocks := uint64(2*BlocksPerPage + 1000)
	r := rand.New(rand.NewPCG(7, 7))
	bm := NewBitmap(blocks)
	for range 500 {
		a := Block(r.Uint64N(blocks))
		bm.SetRange(a, a+Block(r.Uint64N(100)))
	}
	bm2 := NewBitmap(blocks)
	buf := make([]byte, BlockSize)
	for p := range bm.Pages() {
		bm.EncodePage(p, buf)
		if torn := bm2.LoadPage(p, buf); torn {
			t.Fatalf("page %d torn", p)
		}
	}
	if !slices.Equal(bm.words, bm2.words) || bm.Count() != bm2.Count() {
		t.Fatal("decoded bitmap differs")
	}
	if slices.Collect(bm2.DirtyPages()) != nil {
		t.Fatal("loaded pages dirty")
	}
	// A torn page (here: the second 512-byte sector of another version)
	// reads as all ones over the blocks it covers, and needs a flush.
	// Tear the page: the header (with the checksum) and the first bits
	// come from the old version, the rest from the new one.
	bm.SetRange(2*BlocksPerPage+900, 2*BlocksPerPage+1000)
	bm.EncodePage(2, buf)
	other := NewBitmap(blocks)
	obuf := make([]byte, BlockSize)
	other.EncodePage(2, obuf)
	copy(buf[:pageHeaderSize+100], obuf[:pageHeaderSize+100])
	before := bm2.Count() - bm2.CountRange(2*BlocksPerPage, Block(blocks))
	if !bm2.LoadPage(2, buf) {
		t.Fatal("torn page accepted")
	}
	if bm2.Count() != before+1000 || !bm2.PageNeedsFlush(2) {
		t.Fatalf("torn page: count %d, want %d", bm2.Count(), before+1000)
	}
	if bm2.Test(Block(blocks)) {
		t.Fatal("bit beyond the end set")
	}
	// A page written for another index is refused too.
	bm.EncodePage(1, buf)
	if !bm2.LoadPage(0, buf) {
		t.Fatal("misdirected page accepted")
	}
}

// BenchmarkBitmapSetClear sets then clears the bits of a 32 KiB write.
func BenchmarkBitmapSetClear(b *testing.B) {
	bm := NewBitmap(256 << 20 / 4) // 1 TiB
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([]Block, 4096)
	for i := range xs {
		xs[i] = Block(r.Uint64N(bm.Blocks() - 64))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		x := xs[i%len(xs)]
		bm.SetRange(x, x+8) // a 32 KiB write
		bm.ClearRange(x, x+8)
	}
}

func BenchmarkBitmapCountRange(b *testing.B) {
	bm := NewBitmap(256 << 20 / 4)
	bm.SetRange(0, Block(bm.Blocks()/2))
	b.ReportAllocs()
	b.SetBytes(BlocksPerExtent / 8)
	for i := range b.N {
		e := Extent(i % 1000)
		if bm.CountRange(e.FirstBlock(), e.FirstBlock()+BlocksPerExtent) > BlocksPerExtent {
			b.Fatal("bad count")
		}
	}
}

func BenchmarkBitmapNextRange(b *testing.B) {
	bm := NewBitmap(1 << 24)
	for x := Block(0); x < 1<<24; x += 1000 {
		bm.SetRange(x, x+10)
	}
	b.ReportAllocs()
	from := Block(0)
	for range b.N {
		_, end, ok := bm.NextRange(from, 0)
		if !ok {
			end = 0
		}
		from = end
	}
}
