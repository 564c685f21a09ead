package scsi

import (
	"encoding/binary"
	"slices"
	"testing"

	"hastor/blockdev"
)

// cdbPreFetch builds PRE-FETCH (10) or (16) (SBC-3 "PRE-FETCH (10)",
// "PRE-FETCH (16)").
func cdbPreFetch(op byte, lba uint64, n uint32, immed bool, group byte) []byte {
	c := cdbRW(op, lba, n, 0)
	if immed {
		c[1] |= 0x02
	}
	if op == opPreFetch10 {
		c[6] = group
	} else {
		c[14] = group
	}
	return c
}

// SBC-3 "PRE-FETCH (10)" and "PRE-FETCH (16)": no data transfer; GOOD (not
// CONDITION MET: the LU has no cache to load) with or without IMMED and with
// any GROUP NUMBER; the range is checked like READ's, including PREFETCH
// LENGTH 0 ("to the last LBA"), but not against MAXIMUM TRANSFER LENGTH
// (libiscsi Prefetch10/16.*).
func TestPreFetch_SBC3(t *testing.T) {
	lu := newTestLU(t, withMaxTransfer(4096)) // 2048 blocks, 8 per transfer
	n := newNexus(t, lu)
	nb := lu.Capacity()
	for _, op := range []byte{opPreFetch10, opPreFetch16} {
		for _, c := range []struct {
			lba   uint64
			n     uint32
			immed bool
			group byte
		}{{0, 1, false, 0}, {0, 256, false, 0}, {nb - 1, 1, false, 0}, {nb - 256, 256, false, 0},
			{0, 1, true, 0}, {0, 1, false, 3}, {0, 1, true, 3}, {0, 0, false, 0}, {nb - 1, 0, false, 0},
			{0, uint32(nb), false, 0}} {
			cdb := cdbPreFetch(op, c.lba, c.n, c.immed, c.group)
			if cmd := lu.Decode(cdb); cmd.Dir != DirNone || cmd.DataLen != 0 {
				t.Fatalf("op %#x: Dir %v DataLen %d", op, cmd.Dir, cmd.DataLen)
			}
			r := run(t, lu, n, cdb, nil)
			if r.Status != StatusGood || r.SenseLen != 0 {
				t.Fatalf("op %#x %+v: status %#x", op, c, r.Status)
			}
		}
		bad := []struct {
			lba uint64
			n   uint32
		}{{nb, 0}, {nb + 1, 0}, {nb, 1}, {nb - 1, 2}, {nb - 255, 256}, {0x80000000, 1}, {0xFFFFFFFF, 1}}
		if op == opPreFetch16 {
			bad = append(bad, []struct {
				lba uint64
				n   uint32
			}{{1 << 63, 0}, {1 << 63, 1}, {^uint64(0), 1}, {^uint64(0), 0}}...)
		}
		for _, c := range bad {
			expectSense(t, run(t, lu, n, cdbPreFetch(op, c.lba, c.n, false, 0), nil), SenseIllegalRequest, ascLBAOutOfRange)
		}
		// RELADR (obsolete) is reserved.
		c := cdbPreFetch(op, 0, 1, false, 0)
		c[1] |= 0x01
		expectInvalidCDB(t, run(t, lu, n, c, nil), 1, 0)
	}
}

func cdbGetLBAStatus(lba uint64, alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = opServiceActionIn, saGetLBAStatus
	binary.BigEndian.PutUint64(c[2:10], lba)
	binary.BigEndian.PutUint32(c[10:14], alloc)
	return c
}

// SBC-3 "GET LBA STATUS": on a fully provisioned LU one LBA status
// descriptor, mapped, from the starting LBA to the end (at most
// FFFFFFFFh blocks); a starting LBA past the last one is LBA OUT OF RANGE,
// including 2^63 (libiscsi GetLBAStatus.Simple/BeyondEol).
func TestGetLBAStatus_SBC3(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	nb := lu.Capacity()
	for _, lba := range []uint64{0, 1, 255, nb - 256, nb - 1} {
		r, d := runData(t, lu, n, cdbGetLBAStatus(lba, 24), nil)
		expectGood(t, r)
		if len(d) != 24 || binary.BigEndian.Uint32(d[0:4]) != 20 {
			t.Fatalf("LBA %d: % x", lba, d)
		}
		if got := binary.BigEndian.Uint64(d[8:16]); got != lba {
			t.Fatalf("descriptor LBA %d, want %d", got, lba)
		}
		if got := binary.BigEndian.Uint32(d[16:20]); uint64(got) != nb-lba {
			t.Fatalf("LBA %d: %d blocks, want %d", lba, got, nb-lba)
		}
		if d[20]&0x0F != 0 {
			t.Fatalf("provisioning status %#x, want 0 (mapped)", d[20]&0x0F)
		}
	}
	// Allocation length truncates; 0 transfers nothing.
	r, d := runData(t, lu, n, cdbGetLBAStatus(0, 16), nil)
	expectGood(t, r)
	if len(d) != 16 {
		t.Fatalf("alloc 16: %d bytes", len(d))
	}
	if cmd := lu.Decode(cdbGetLBAStatus(0, 0)); cmd.Dir != DirNone {
		t.Fatalf("alloc 0: Dir %v", cmd.Dir)
	}
	expectGood(t, run(t, lu, n, cdbGetLBAStatus(0, 0), nil))
	for _, lba := range []uint64{nb, nb + 1, 1 << 63, ^uint64(0)} {
		expectSense(t, run(t, lu, n, cdbGetLBAStatus(lba, 24), nil), SenseIllegalRequest, ascLBAOutOfRange)
	}
	c := cdbGetLBAStatus(0, 24)
	c[14] = 0x01 // reserved in SBC-3
	expectInvalidCDB(t, run(t, lu, n, c, nil), 14, 0)

	// More than 2^32-1 blocks to the end: the count saturates.
	big := newTestLU(t, withDev(nullDev{(1<<32 + 100) * 512}))
	bn := newNexus(t, big)
	r, d = runData(t, big, bn, cdbGetLBAStatus(10, 24), nil)
	expectGood(t, r)
	if got := binary.BigEndian.Uint32(d[16:20]); got != 0xFFFFFFFF {
		t.Fatalf("%d blocks, want FFFFFFFFh", got)
	}
}

// holeDev is a Mem whose Mapped answers from a fixed map: runs of bytes
// that alternate between unmapped and mapped, starting unmapped.
type holeDev struct {
	*blockdev.Mem
	bounds []int64 // ascending offsets where the state flips
}

func (d holeDev) Mapped(off, n int64) (bool, int64, error) {
	mapped, end := false, d.Size()
	for _, b := range d.bounds {
		if b > off {
			end = b
			break
		}
		mapped = !mapped
	}
	return mapped, min(n, end-off), nil
}

// SBC-3 "GET LBA STATUS" on a thin provisioned LU whose device tells what
// is mapped: one descriptor per run, a partly mapped block is mapped
// (and merges with its mapped neighbours), and the allocation length
// bounds the descriptors returned.
func TestGetLBAStatusRuns_SBC3(t *testing.T) {
	const bs, nb = 4096, 256
	dev := holeDev{blockdev.NewMem(nb*bs, bs), []int64{
		1*bs + 2048, 3 * bs, // block 1 partly mapped, block 2 mapped
		10 * bs, 11*bs + 512, // block 10 mapped, block 11 partly
		11*bs + 1024, 12 * bs, // and mapped again at its end
	}}
	lu := newTestLU(t, withDev(dev), withBlockSize(bs))
	n := newNexus(t, lu)
	type desc struct {
		lba    uint64
		blocks uint32
		state  byte
	}
	status := func(lba uint64, alloc uint32) []desc {
		t.Helper()
		r, d := runData(t, lu, n, cdbGetLBAStatus(lba, alloc), nil)
		expectGood(t, r)
		if int(binary.BigEndian.Uint32(d[0:4])) != len(d)-4 {
			t.Fatalf("PARAMETER DATA LENGTH %d with %d bytes", binary.BigEndian.Uint32(d[0:4]), len(d))
		}
		var got []desc
		for p := d[8:]; len(p) >= 16; p = p[16:] {
			got = append(got, desc{binary.BigEndian.Uint64(p[0:8]), binary.BigEndian.Uint32(p[8:12]), p[12]})
		}
		return got
	}
	all := []desc{{0, 1, 1}, {1, 2, 0}, {3, 7, 1}, {10, 2, 0}, {12, nb - 12, 1}}
	if got := status(0, 1024); !slices.Equal(got, all) {
		t.Fatalf("runs %+v, want %+v", got, all)
	}
	if got := status(0, 24); !slices.Equal(got, all[:1]) {
		t.Fatalf("allocation length 24: %+v", got)
	}
	if got := status(0, 8+2*16); !slices.Equal(got, all[:2]) {
		t.Fatalf("allocation length 40: %+v", got)
	}
	if got := status(5, 1024); !slices.Equal(got, []desc{{5, 5, 1}, {10, 2, 0}, {12, nb - 12, 1}}) {
		t.Fatalf("from LBA 5: %+v", got)
	}
	// Thin provisioning off: one mapped run, the device is not asked.
	full := newTestLU(t, withDev(dev), withBlockSize(bs), func(c *LUConfig) { c.FullyProvisioned = true })
	lu, n = full, newNexus(t, full)
	if got := status(0, 1024); !slices.Equal(got, []desc{{0, nb, 0}}) {
		t.Fatalf("fully provisioned: %+v", got)
	}
}

func cdbReadDefect(twelve bool, plist, glist bool, format byte, index, alloc uint32) []byte {
	c := make([]byte, 16)
	f := format
	if plist {
		f |= 0x10
	}
	if glist {
		f |= 0x08
	}
	if twelve {
		c[0], c[1] = opReadDefect12, f
		binary.BigEndian.PutUint32(c[2:6], index)
		binary.BigEndian.PutUint32(c[6:10], alloc)
	} else {
		c[0], c[2] = opReadDefect10, f
		binary.BigEndian.PutUint16(c[7:9], uint16(alloc))
	}
	return c
}

// SBC-3 "READ DEFECT DATA (10)" and "READ DEFECT DATA (12)": empty lists in
// the requested format, PLISTV/GLISTV echoing the request, header only
// (libiscsi ReadDefectData10/12.Simple); the reserved format 111b is INVALID
// FIELD IN CDB.
func TestReadDefectData_SBC3(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	for _, twelve := range []bool{false, true} {
		hdr := 4
		if twelve {
			hdr = 8
		}
		for format := byte(0); format < 7; format++ {
			for _, lists := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				r, d := runData(t, lu, n, cdbReadDefect(twelve, lists[0], lists[1], format, 5, 32), nil)
				expectGood(t, r)
				want := make([]byte, hdr)
				want[1] = format
				if lists[0] {
					want[1] |= 0x10
				}
				if lists[1] {
					want[1] |= 0x08
				}
				if string(d) != string(want) {
					t.Fatalf("twelve=%v format %d lists %v: % x, want % x", twelve, format, lists, d, want)
				}
			}
		}
		r, d := runData(t, lu, n, cdbReadDefect(twelve, true, true, 0, 0, 2), nil)
		expectGood(t, r)
		if len(d) != 2 {
			t.Fatalf("alloc 2: %d bytes", len(d))
		}
		off := 2
		if twelve {
			off = 1
		}
		expectInvalidCDB(t, run(t, lu, n, cdbReadDefect(twelve, false, false, 7, 0, 32), nil), off, 2)
	}
	// The libiscsi 1.19 READ DEFECT DATA (12) CDB builder overwrites byte 2
	// with the address descriptor index: an all-zero CDB must work.
	c := make([]byte, 16)
	c[0] = opReadDefect12
	binary.BigEndian.PutUint32(c[6:10], 32)
	expectGood(t, run(t, lu, n, c, nil))
}
