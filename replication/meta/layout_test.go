package meta

import (
	"errors"
	"testing"
)

func checkLayout(t *testing.T, l Layout, devSize int64) {
	t.Helper()
	for _, v := range []int64{l.DataSize, l.MetaOffset, l.MetaSize, l.ALOffset, l.BitmapOffset, l.SuperblockOffsets[0], l.SuperblockOffsets[1]} {
		if v%BlockSize != 0 {
			t.Fatalf("%+v: %d not 4 KiB-aligned", l, v)
		}
	}
	if l.MetaOffset+l.MetaSize > devSize {
		t.Fatalf("%+v: metadata beyond device of %d", l, devSize)
	}
	if l.Placement == Internal && l.DataSize > l.MetaOffset {
		t.Fatalf("%+v: data overlaps metadata", l)
	}
	if l.MetaSize != MetaSizeFor(l.DataSize, l.ALExtents) {
		t.Fatalf("%+v: meta size %d, want %d", l, l.MetaSize, MetaSizeFor(l.DataSize, l.ALExtents))
	}
	if uint64(l.BitmapPages)*BlocksPerPage < l.Blocks() {
		t.Fatalf("%+v: bitmap pages do not cover the data", l)
	}
	if l.ALSlots < 2*SlotsPerTransaction(l.ALExtents) {
		t.Fatalf("%+v: ring smaller than two transactions", l)
	}
	// The regions do not overlap and stay inside the metadata area.
	type region struct{ off, n int64 }
	rs := []region{
		{l.SuperblockOffsets[0], BlockSize}, {l.SuperblockOffsets[1], BlockSize},
		{l.ALOffset, int64(l.ALSlots) * BlockSize}, {l.BitmapOffset, int64(l.BitmapPages) * BlockSize},
	}
	var total int64
	for i, a := range rs {
		total += a.n
		if a.off < l.MetaOffset || a.off+a.n > l.MetaOffset+l.MetaSize {
			t.Fatalf("%+v: region %d outside metadata area", l, i)
		}
		for _, b := range rs[i+1:] {
			if a.off < b.off+b.n && b.off < a.off+a.n {
				t.Fatalf("%+v: regions overlap", l)
			}
		}
	}
	if total != l.MetaSize {
		t.Fatalf("%+v: regions sum to %d, meta size %d", l, total, l.MetaSize)
	}
}

func TestPlanInternal(t *testing.T) {
	for _, size := range []int64{64 << 10, 1 << 20, 1<<20 + 512, 130023424 + 50<<10, 1 << 30, 10 << 40, 1<<40 + 12345*512} {
		for _, al := range []int{MinALExtents, DefaultALExtents, MaxALExtents} {
			l, err := PlanInternal(size, al)
			if errors.Is(err, ErrDeviceTooSmall) {
				continue
			}
			if err != nil {
				t.Fatalf("PlanInternal(%d, %d): %v", size, al, err)
			}
			checkLayout(t, l, size)
			// The data area is as large as it can be: one more block would
			// not fit.
			bigger := l.DataSize + BlockSize
			if bigger+MetaSizeFor(bigger, al) <= size&^(BlockSize-1) {
				t.Errorf("PlanInternal(%d, %d): data %d, but %d would fit", size, al, l.DataSize, bigger)
			}
			if l.SuperblockOffsets[1] != (size&^(BlockSize-1))-BlockSize {
				t.Errorf("superblock copy 1 not in the last block")
			}
		}
	}
	// 1 GiB with the default log: 9 bitmap pages (124 MiB each), 8 ring
	// slots, 2 superblocks: 76 KiB of metadata.
	l, err := PlanInternal(1<<30, DefaultALExtents)
	if err != nil || l.MetaSize != 76<<10 || l.DataSize != 1<<30-76<<10 {
		t.Errorf("1 GiB: %+v, %v", l, err)
	}
}

func TestPlanErrors(t *testing.T) {
	if _, err := PlanInternal(1<<30, 3); !errors.Is(err, ErrInvalidLayout) {
		t.Errorf("al 3: %v", err)
	}
	if _, err := PlanInternal(1<<30, MaxALExtents+1); !errors.Is(err, ErrInvalidLayout) {
		t.Errorf("al max+1: %v", err)
	}
	if _, err := PlanInternal(40<<10, MinALExtents); !errors.Is(err, ErrDeviceTooSmall) {
		t.Errorf("40 KiB: %v", err)
	}
	if _, err := PlanInternal(-1, MinALExtents); !errors.Is(err, ErrDeviceTooSmall) {
		t.Errorf("negative: %v", err)
	}
	if _, err := PlanExternal(1<<30+512, 1<<20, MinALExtents); !errors.Is(err, ErrInvalidLayout) {
		t.Errorf("unaligned data: %v", err)
	}
	if _, err := PlanExternal(0, 1<<20, MinALExtents); !errors.Is(err, ErrInvalidLayout) {
		t.Errorf("zero data: %v", err)
	}
	if _, err := PlanExternal(1<<40, 1<<20, MinALExtents); !errors.Is(err, ErrDeviceTooSmall) {
		t.Errorf("1 TiB on 1 MiB: %v", err)
	}
}

func TestPlanExternal(t *testing.T) {
	for _, ds := range []int64{4096, 1 << 30, 10 << 40} {
		for _, al := range []int{MinALExtents, 1008, 1009, MaxALExtents} {
			need := MetaSizeFor(ds, al)
			l, err := PlanExternal(ds, need, al)
			if err != nil {
				t.Fatalf("PlanExternal(%d, %d, %d): %v", ds, need, al, err)
			}
			checkLayout(t, l, need)
			if _, err := PlanExternal(ds, need-BlockSize, al); !errors.Is(err, ErrDeviceTooSmall) {
				t.Errorf("one block short: %v", err)
			}
		}
	}
	// 10 TiB: 320 MiB of bits in 84563 pages of 31744 bits.
	l, _ := PlanExternal(10<<40, 1<<40, DefaultALExtents)
	if l.BitmapPages != 84563 {
		t.Errorf("10 TiB: %d pages", l.BitmapPages)
	}
}
