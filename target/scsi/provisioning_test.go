package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"hastor/blockdev"
)

// cdbWriteSame builds WRITE SAME (10) (op 0x41) or (16) (0x93).
func cdbWriteSame(op byte, lba uint64, n uint32, flags byte) []byte {
	c := make([]byte, 16)
	c[0], c[1] = op, flags
	if op == opWriteSame10 {
		binary.BigEndian.PutUint32(c[2:6], uint32(lba))
		binary.BigEndian.PutUint16(c[7:9], uint16(n))
	} else {
		binary.BigEndian.PutUint64(c[2:10], lba)
		binary.BigEndian.PutUint32(c[10:14], n)
	}
	return c
}

// unmapDesc is one UNMAP block descriptor.
type unmapDesc struct {
	lba uint64
	n   uint32
}

// unmapParams builds an UNMAP parameter list and its CDB.
func unmapParams(descs ...unmapDesc) (cdb, params []byte) {
	params = make([]byte, unmapHdrLen+unmapDescLen*len(descs))
	binary.BigEndian.PutUint16(params[0:2], uint16(len(params)-2))
	binary.BigEndian.PutUint16(params[2:4], uint16(len(params)-unmapHdrLen))
	for i, d := range descs {
		p := params[unmapHdrLen+i*unmapDescLen:]
		binary.BigEndian.PutUint64(p[0:8], d.lba)
		binary.BigEndian.PutUint32(p[8:12], d.n)
	}
	cdb = make([]byte, 16)
	cdb[0] = opUnmap
	binary.BigEndian.PutUint16(cdb[7:9], uint16(len(params)))
	return cdb, params
}

// SBC-3 "WRITE SAME (10)", "WRITE SAME (16)": the Data-Out block is
// written to every block of the range, for both block sizes and at both
// ends of the LU (libiscsi WriteSame10.Simple, .Check); NUMBER OF LOGICAL
// BLOCKS 0 means to the last block; NDOB writes zeros; ranges longer than
// a write chunk are written whole.
func TestWriteSame_SBC3(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		lu := newTestLU(t, withSize(8<<20, bs), withBlockSize(bs))
		n := newNexus(t, lu)
		nb := lu.Capacity()
		for _, op := range []byte{opWriteSame10, opWriteSame16} {
			for _, c := range []struct {
				lba uint64
				n   uint32
			}{{0, 1}, {3, 7}, {nb - 5, 5}} {
				blk := pattern(bs, byte(c.n)+op)
				expectGood(t, run(t, lu, n, cdbWriteSame(op, c.lba, c.n, 0), blk))
				_, d := runData(t, lu, n, cdbRW(opRead16, c.lba, c.n, 0), nil)
				if !bytes.Equal(d, bytes.Repeat(blk, int(c.n))) {
					t.Fatalf("bs %d op %#x LBA %d: blocks differ from the pattern", bs, op, c.lba)
				}
			}
		}
		// 0 blocks: from the LBA to the last block.
		blk := pattern(bs, 9)
		expectGood(t, run(t, lu, n, cdbWriteSame(opWriteSame16, nb-3, 0, 0), blk))
		_, d := runData(t, lu, n, cdbRW(opRead16, nb-4, 4, 0), nil)
		if bytes.Equal(d[:bs], blk) || !bytes.Equal(d[bs:], bytes.Repeat(blk, 3)) {
			t.Fatalf("bs %d: 0-block WRITE SAME wrote the wrong blocks", bs)
		}
		// More than one chunk.
		big := uint32(3 * writeSameChunk / bs / 2)
		expectGood(t, run(t, lu, n, cdbWriteSame(opWriteSame16, 1, big, 0), blk))
		_, d = runData(t, lu, n, cdbRW(opRead16, 1+uint64(big)-2, 3, 0), nil)
		if !bytes.Equal(d[:2*bs], bytes.Repeat(blk, 2)) || bytes.Equal(d[2*bs:], blk) {
			t.Fatalf("bs %d: long WRITE SAME: wrong end", bs)
		}
		// NDOB (WRITE SAME (16) only): zeros, no Data-Out buffer.
		cmd := lu.Decode(cdbWriteSame(opWriteSame16, 1, 4, 0x01))
		if !cmd.Valid() || cmd.Dir != DirNone || cmd.DataLen != 0 {
			t.Fatalf("NDOB decoded %+v", cmd)
		}
		expectGood(t, run(t, lu, n, cdbWriteSame(opWriteSame16, 1, 4, 0x01), nil))
		_, d = runData(t, lu, n, cdbRW(opRead16, 1, 5, 0), nil)
		if !bytes.Equal(d[:4*bs], make([]byte, 4*bs)) || !bytes.Equal(d[4*bs:], blk) {
			t.Fatalf("bs %d: NDOB did not zero exactly its blocks", bs)
		}
	}
}

// WRITE SAME field checks (libiscsi WriteSame10.BeyondEol, .ZeroBlocks,
// .WriteProtect; SBC-3 "WRITE SAME (10)"): LBA OUT OF RANGE, MAXIMUM WRITE
// SAME LENGTH (also for 0 blocks, which means to the last block), WRPROTECT,
// ANCHOR, PBDATA and LBDATA rejected with the field pointer, NDOB only in
// the 16-byte CDB, a read-only LU, and a Data-Out buffer shorter than a
// block.
func TestWriteSameFields_SBC3(t *testing.T) {
	lu := newTestLU(t, withSize(64<<20, 512))
	n := newNexus(t, lu)
	nb := lu.Capacity()
	maxWS := uint64(lu.maxWriteSame)
	if nb <= maxWS {
		t.Fatalf("test needs an LU larger than MAXIMUM WRITE SAME LENGTH %d", maxWS)
	}
	blk := fill(512, 0)
	for _, op := range []byte{opWriteSame10, opWriteSame16} {
		for _, c := range []struct {
			lba uint64
			n   uint32
		}{{nb, 0}, {nb + 1, 0}, {nb, 1}, {nb - 1, 2}, {0x80000000, 0}, {0xFFFFFFFF, 1}} {
			expectSense(t, run(t, lu, n, cdbWriteSame(op, c.lba, c.n, 0), blk), SenseIllegalRequest, ascLBAOutOfRange)
		}
		nOff := 7
		if op == opWriteSame16 {
			nOff = 10
		}
		expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(op, 0, 0, 0), blk), nOff, 7)
		expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(op, nb-maxWS-1, 0, 0), blk), nOff, 7)
		expectGood(t, run(t, lu, n, cdbWriteSame(op, nb-maxWS, 0, 0), blk))
		if op == opWriteSame16 {
			expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(op, 0, uint32(maxWS)+1, 0), blk), nOff, 7)
		}
		for p := byte(1); p < 8; p++ {
			expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(op, 0, 1, p<<5), blk), 1, 7)
		}
		expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(op, 0, 1, 0x10), blk), 1, 4) // ANCHOR
		expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(op, 0, 1, 0x04), blk), 1, 2) // PBDATA
		expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(op, 0, 1, 0x02), blk), 1, 1) // LBDATA
		cmd := lu.Decode(cdbWriteSame(op, 0, 2, 0))
		buf := alignedBuf(100)
		expectSense(t, lu.Execute(context.Background(), n, &cmd, buf), SenseIllegalRequest, ascInvalidFieldInCmdIU)
	}
	expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(opWriteSame10, 0, 1, 0x01), blk), 1, 0) // no NDOB in (10)
	ro := newTestLU(t, withReadOnly())
	expectSense(t, run(t, ro, newNexus(t, ro), cdbWriteSame(opWriteSame10, 0, 1, 0), blk), SenseDataProtect, ascWriteProtected)
}

// WRITE SAME (16) with UNMAP=1 (libiscsi WriteSame16.Unmap,
// .UnmapUntilEnd): on a thin provisioned LU a zero block deallocates the
// range, which then reads as zeros (LBPRZ=1), with no write; a non-zero block
// is written. WRITE SAME (10), and any WRITE SAME on a fully provisioned LU,
// refuse UNMAP=1 with INVALID FIELD IN CDB. With WCE=0 the deallocation is
// durable before GOOD.
func TestWriteSameUnmap_SBC3(t *testing.T) {
	mem := blockdev.NewMem(1<<20, 512)
	f := blockdev.NewFaulty(mem)
	lu := newTestLU(t, withDev(f))
	n := newNexus(t, lu)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 16, 0), fill(16*512, 0xFF)))
	writes := f.Count(blockdev.OpWrite) + f.Count(blockdev.OpWriteFUA)
	expectGood(t, run(t, lu, n, cdbWriteSame(opWriteSame16, 2, 4, 0x08), fill(512, 0)))
	if f.Count(blockdev.OpDiscard) != 1 || f.Count(blockdev.OpWrite)+f.Count(blockdev.OpWriteFUA) != writes {
		t.Fatalf("WRITE SAME UNMAP: %d discards, %d writes", f.Count(blockdev.OpDiscard), f.Count(blockdev.OpWrite)+f.Count(blockdev.OpWriteFUA)-writes)
	}
	mem.Crash() // WCE=0: the deallocation is durable
	_, d := runData(t, lu, n, cdbRW(opRead10, 0, 8, 0), nil)
	want := append(append(fill(1024, 0xFF), make([]byte, 4*512)...), fill(1024, 0xFF)...)
	if !bytes.Equal(d, want) {
		t.Fatal("WRITE SAME UNMAP: wrong blocks zeroed, or not durable")
	}
	// NDOB with UNMAP, 0 blocks: deallocate to the end.
	expectGood(t, run(t, lu, n, cdbWriteSame(opWriteSame16, lu.Capacity()-2, 0, 0x09), nil))
	if f.Count(blockdev.OpDiscard) != 2 {
		t.Fatal("NDOB UNMAP did not deallocate")
	}
	// A non-zero block is written, not deallocated (SBC-3 "WRITE SAME
	// command and unmap operations").
	expectGood(t, run(t, lu, n, cdbWriteSame(opWriteSame16, 8, 2, 0x08), fill(512, 0x5A)))
	if f.Count(blockdev.OpDiscard) != 2 {
		t.Fatal("non-zero WRITE SAME UNMAP deallocated")
	}
	if _, d = runData(t, lu, n, cdbRW(opRead10, 8, 2, 0), nil); !bytes.Equal(d, fill(1024, 0x5A)) {
		t.Fatal("non-zero WRITE SAME UNMAP not written")
	}

	// WRITE SAME (10) never unmaps (LBPWS10=0).
	expectInvalidCDB(t, run(t, lu, n, cdbWriteSame(opWriteSame10, 8, 2, 0x08), fill(512, 0)), 1, 3)

	full := newTestLU(t, fullyProvisioned(1<<20, 512))
	fn := newNexus(t, full)
	for _, op := range []byte{opWriteSame10, opWriteSame16} {
		expectInvalidCDB(t, run(t, full, fn, cdbWriteSame(op, 0, 1, 0x08), fill(512, 0)), 1, 3)
		expectGood(t, run(t, full, fn, cdbWriteSame(op, 0, 1, 0), fill(512, 0)))
	}
}

// SBC-3 "UNMAP" (libiscsi Unmap.Simple, .ZeroBlocks, .VPD): each
// descriptor's blocks are deallocated and read as zeros; 0-block
// descriptors (even at the capacity) and an empty list do nothing; WCE=0
// makes the deallocation durable before GOOD.
func TestUnmap_SBC3(t *testing.T) {
	mem := blockdev.NewMem(1<<20, 512)
	f := blockdev.NewFaulty(mem)
	lu := newTestLU(t, withDev(f))
	n := newNexus(t, lu)
	nb := lu.Capacity()
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 32, 0x08), fill(32*512, 0xA5)))
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, nb-4, 4, 0x08), fill(4*512, 0xA5)))
	cdb, params := unmapParams(unmapDesc{1, 2}, unmapDesc{10, 0}, unmapDesc{20, 5}, unmapDesc{nb - 4, 4}, unmapDesc{nb, 0})
	expectGood(t, run(t, lu, n, cdb, params))
	if f.Count(blockdev.OpDiscard) != 3 {
		t.Fatalf("%d discards, want 3", f.Count(blockdev.OpDiscard))
	}
	mem.Crash()
	_, d := runData(t, lu, n, cdbRW(opRead10, 0, 32, 0), nil)
	for lba := 0; lba < 32; lba++ {
		zero := (lba >= 1 && lba < 3) || (lba >= 20 && lba < 25)
		if got := d[lba*512] == 0; got != zero {
			t.Fatalf("LBA %d: zero %v, want %v", lba, got, zero)
		}
	}
	if _, d = runData(t, lu, n, cdbRW(opRead10, nb-4, 4, 0), nil); !bytes.Equal(d, make([]byte, 4*512)) {
		t.Fatal("last blocks not deallocated")
	}
	// No parameter list, or a header without descriptors.
	cdb, params = unmapParams()
	expectGood(t, run(t, lu, n, cdb, params))
	expectGood(t, run(t, lu, n, cdb6(opUnmap), nil))
	// An incomplete last descriptor is ignored.
	cdb, params = unmapParams(unmapDesc{40, 1}, unmapDesc{41, 1})
	binary.BigEndian.PutUint16(params[2:4], unmapDescLen+8)
	expectGood(t, run(t, lu, n, cdb, params))
	if f.Count(blockdev.OpDiscard) != 4 {
		t.Fatalf("incomplete descriptor: %d discards, want 4", f.Count(blockdev.OpDiscard))
	}
}

// UNMAP errors change nothing: a PARAMETER LIST LENGTH of 1-7 is PARAMETER
// LIST LENGTH ERROR; a descriptor past the capacity is LBA OUT OF RANGE;
// more than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT descriptors or MAXIMUM
// UNMAP LBA COUNT blocks is INVALID FIELD IN PARAMETER LIST; ANCHOR is
// unsupported; a read-only LU refuses; a fully provisioned LU does not
// have the command.
func TestUnmapErrors_SBC3(t *testing.T) {
	f := blockdev.NewFaulty(blockdev.NewMem(4<<30, 512))
	lu := newTestLU(t, withDev(f))
	n := newNexus(t, lu)
	nb := lu.Capacity()
	for l := 1; l < unmapHdrLen; l++ {
		c := cdb6(opUnmap)
		c[8] = byte(l)
		expectSense(t, run(t, lu, n, c, make([]byte, l)), SenseIllegalRequest, ascParamListLength)
	}
	for _, bad := range []unmapDesc{{nb, 1}, {nb - 1, 2}, {nb + 1, 0}, {^uint64(0), 1}} {
		cdb, params := unmapParams(unmapDesc{0, 1}, bad)
		expectSense(t, run(t, lu, n, cdb, params), SenseIllegalRequest, ascLBAOutOfRange)
	}
	descs := make([]unmapDesc, maxUnmapDescriptors+1)
	cdb, params := unmapParams(descs...)
	expectInvalidParam(t, run(t, lu, n, cdb, params), 2, 7)
	cdb, params = unmapParams(unmapDesc{0, uint32(lu.maxUnmap)}, unmapDesc{uint64(lu.maxUnmap), 1})
	expectInvalidParam(t, run(t, lu, n, cdb, params), unmapHdrLen+unmapDescLen+8, 7)
	if f.Count(blockdev.OpDiscard) != 0 {
		t.Fatal("a refused UNMAP deallocated")
	}
	anchor := cdb6(opUnmap, 0x01)
	expectInvalidCDB(t, run(t, lu, n, anchor, nil), 1, 0)

	ro := newTestLU(t, withReadOnly())
	cdb, params = unmapParams(unmapDesc{0, 1})
	expectSense(t, run(t, ro, newNexus(t, ro), cdb, params), SenseDataProtect, ascWriteProtected)
	full := newTestLU(t, fullyProvisioned(1<<20, 512))
	expectSense(t, run(t, full, newNexus(t, full), cdb, params), SenseIllegalRequest, ascInvalidOpcode)
	// A device that could deallocate, with thin provisioning turned off.
	f = blockdev.NewFaulty(blockdev.NewMem(1<<20, 512))
	off := newTestLU(t, withDev(f), func(c *LUConfig) { c.FullyProvisioned = true })
	expectSense(t, run(t, off, newNexus(t, off), cdb, params), SenseIllegalRequest, ascInvalidOpcode)
	if f.Count(blockdev.OpDiscard) != 0 {
		t.Fatal("UNMAP deallocated on a fully provisioned LU")
	}
}
