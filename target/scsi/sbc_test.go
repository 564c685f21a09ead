package scsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"hastor/blockdev"
)

var rwOps = []struct {
	name        string
	read, write byte
}{
	{"6", opRead6, opWrite6},
	{"10", opRead10, opWrite10},
	{"12", opRead12, opWrite12},
	{"16", opRead16, opWrite16},
}

// SBC-3 "READ (6/10/12/16)" and "WRITE (6/10/12/16)" round trip, for both block
// sizes and every CDB size.
func TestReadWrite_SBC3_5_11(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		lu := newTestLU(t, withBlockSize(bs))
		n := newNexus(t, lu)
		for i, op := range rwOps {
			lba := uint64(3 + 10*i)
			data := pattern(3*bs, byte(i))
			cmd := lu.Decode(cdbRW(op.write, lba, 3, 0))
			if cmd.Dir != DirWrite || cmd.DataLen != uint32(3*bs) || cmd.LBA != LBA(lba) || cmd.Blocks != 3 {
				t.Fatalf("WRITE(%s) decoded %+v", op.name, cmd)
			}
			expectGood(t, run(t, lu, n, cdbRW(op.write, lba, 3, 0), data))
			r, got := runData(t, lu, n, cdbRW(op.read, lba, 3, 0), nil)
			expectGood(t, r)
			if !bytes.Equal(got, data) {
				t.Fatalf("bs %d READ(%s): data differs", bs, op.name)
			}
		}
	}
}

// SBC-3 "READ (6)", "WRITE (6)": READ(6)/WRITE(6) TRANSFER LENGTH 0 means 256
// blocks; for the other CDBs 0 means no transfer and is not an error.
func TestTransferLengthZero_SBC3(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	if c := lu.Decode(cdbRW(opRead6, 0, 0, 0)); c.Blocks != 256 || c.DataLen != 256*512 {
		t.Fatalf("READ(6) length 0: %+v", c)
	}
	if c := lu.Decode(cdbRW(opWrite6, 0, 0, 0)); c.Blocks != 256 || c.Dir != DirWrite {
		t.Fatalf("WRITE(6) length 0: %+v", c)
	}
	for _, op := range []byte{opRead10, opRead12, opRead16, opWrite10, opWrite12, opWrite16, opVerify10, opWriteVerify16} {
		c := lu.Decode(cdbRW(op, 0, 0, 0))
		if !c.Valid() || c.Dir != DirNone || c.DataLen != 0 {
			t.Fatalf("op %#x length 0: %+v", op, c)
		}
		expectGood(t, run(t, lu, n, cdbRW(op, 0, 0, 0), nil))
	}
}

// SBC-3 "logical blocks": LBA OUT OF RANGE when the range passes the last LBA,
// even for zero blocks; overflowing 64-bit sums too (libiscsi Read16.BeyondEol,
// ModeSense6.Control-D_SENSE use LBA 2^64-1).
func TestLBAOutOfRange_SBC3_4_5(t *testing.T) {
	lu := newTestLU(t) // 2048 blocks
	n := newNexus(t, lu)
	cases := []struct {
		op  byte
		lba uint64
		n   uint32
	}{
		{opRead10, 2048, 0}, {opRead10, 2047, 2}, {opRead10, 0xFFFFFFFF, 1}, {opRead16, ^uint64(0), 1},
		{opRead16, ^uint64(0), 0}, {opWrite16, 1 << 63, 8}, {opRead6, 2047, 2}, {opWrite12, 2040, 9},
		{opVerify16, 2048, 1}, {opWriteVerify10, 2048, 1}, {opSyncCache10, 2040, 9}, {opSyncCache16, 2048, 0},
	}
	for _, c := range cases {
		cmd := lu.Decode(cdbRW(c.op, c.lba, c.n, 0))
		if cmd.Valid() || cmd.Dir != DirNone || cmd.DataLen != 0 {
			t.Fatalf("op %#x lba %d n %d decoded valid: %+v", c.op, c.lba, c.n, cmd)
		}
		expectSense(t, run(t, lu, n, cdbRW(c.op, c.lba, c.n, 0), nil), SenseIllegalRequest, ascLBAOutOfRange)
	}
	// The last block itself is fine.
	expectGood(t, run(t, lu, n, cdbRW(opRead16, 2047, 1, 0), nil))
	expectGood(t, run(t, lu, n, cdbRW(opSyncCache16, 2047, 1, 0), nil))
	expectGood(t, run(t, lu, n, cdbRW(opSyncCache10, 0, 0, 0), nil))
}

// SBC-3 "Block Limits VPD page": a transfer longer than MAXIMUM TRANSFER LENGTH
// is INVALID FIELD IN CDB pointing at the TRANSFER LENGTH field.
func TestMaxTransferLength_SBC3_6_5_3(t *testing.T) {
	lu := newTestLU(t, withMaxTransfer(64<<10)) // 128 blocks
	n := newNexus(t, lu)
	expectGood(t, run(t, lu, n, cdbRW(opRead10, 0, 128, 0), nil))
	for op, off := range map[byte]int{opRead10: 7, opWrite12: 6, opRead16: 10, opRead6: 4, opVerify10: 7} {
		expectInvalidCDB(t, run(t, lu, n, cdbRW(op, 0, 129, 0), nil), off, 7)
	}
}

// SBC-3 "READ (10)": RDPROTECT/WRPROTECT/VRPROTECT must be 0 without protection
// information; DPO, FUA, FUA_NV (obsolete) and RARC are accepted (libiscsi
// Read10.ReadProtect, Write10.Flags).
func TestReadWriteFlags_SBC3_5_8(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	data := pattern(512, 1)
	for _, flags := range []byte{0x10, 0x08, 0x0A, 0x02, 0x1A} {
		expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, flags), data))
	}
	for _, flags := range []byte{0x10, 0x08, 0x04, 0x02, 0x1E} {
		expectGood(t, run(t, lu, n, cdbRW(opRead16, 0, 1, flags), nil))
	}
	for p := byte(1); p < 8; p++ {
		expectInvalidCDB(t, run(t, lu, n, cdbRW(opRead10, 0, 1, p<<5), nil), 1, 7)
		expectInvalidCDB(t, run(t, lu, n, cdbRW(opWrite16, 0, 1, p<<5), data), 1, 7)
		expectInvalidCDB(t, run(t, lu, n, cdbRW(opVerify12, 0, 1, p<<5), nil), 1, 7)
		expectInvalidCDB(t, run(t, lu, n, cdbRW(opWriteVerify10, 0, 1, p<<5), data), 1, 7)
	}
	// Reserved: WRITE(10) byte 1 bit 2, bit 0; READ(6) byte 1 bits 7-5
	// are LUN-era reserved bits.
	expectInvalidCDB(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, 0x04), data), 1, 2)
	expectInvalidCDB(t, run(t, lu, n, cdbRW(opRead12, 0, 1, 0x01), nil), 1, 0)
	c := cdbRW(opRead6, 0, 1, 0)
	c[1] |= 0x20
	expectInvalidCDB(t, run(t, lu, n, c, nil), 1, 7)
	// GROUP NUMBER is ignored; bits above it are reserved.
	c = cdbRW(opRead10, 0, 1, 0)
	c[6] = 0x1F
	expectGood(t, run(t, lu, n, c, nil))
	c[6] = 0x20
	expectInvalidCDB(t, run(t, lu, n, c, nil), 6, 5)
}

// Durability (SBC-3 "write caching", FUA bit): with WCE=0 and with FUA=1 a
// write is on the medium before GOOD; with WCE=1 and FUA=0 it is not until
// SYNCHRONIZE CACHE.
func TestDurability_SBC3_4_15(t *testing.T) {
	for _, withFUA := range []bool{true, false} {
		mem := blockdev.NewMem(1<<20, 512)
		var dev blockdev.Device = mem
		if !withFUA {
			dev = noFUA{mem}
		}
		lu := newTestLU(t, withDev(dev), withWriteCache())
		n := newNexus(t, lu)
		data := pattern(512, 9)
		read := func(lba uint64) []byte {
			r, d := runData(t, lu, n, cdbRW(opRead10, lba, 1, 0), nil)
			expectGood(t, r)
			return d
		}
		expectGood(t, run(t, lu, n, cdbRW(opWrite10, 1, 1, 0), data)) // cached
		mem.Crash()
		if bytes.Equal(read(1), data) {
			t.Fatal("WCE=1 write survived a crash without SYNCHRONIZE CACHE")
		}
		expectGood(t, run(t, lu, n, cdbRW(opWrite10, 2, 1, 0x08), data)) // FUA
		mem.Crash()
		if !bytes.Equal(read(2), data) {
			t.Fatalf("fua=%v: FUA write lost", withFUA)
		}
		expectGood(t, run(t, lu, n, cdbRW(opWrite10, 3, 1, 0), data))
		expectGood(t, run(t, lu, n, cdbRW(opSyncCache10, 0, 0, 0), nil))
		mem.Crash()
		if !bytes.Equal(read(3), data) {
			t.Fatal("write lost after SYNCHRONIZE CACHE")
		}
		// WCE=0 via MODE SELECT: every write durable.
		expectGood(t, run(t, lu, n, modeSelect6(cachingPage(false)), cachingPage(false)))
		expectGood(t, run(t, lu, n, cdbRW(opWrite16, 4, 1, 0), data))
		expectGood(t, run(t, lu, n, cdbRW(opWriteVerify10, 5, 1, 0), data))
		mem.Crash()
		if !bytes.Equal(read(4), data) || !bytes.Equal(read(5), data) {
			t.Fatal("WCE=0 write lost")
		}
		if len(mem.Dirty()) != 0 {
			t.Fatalf("dirty blocks with WCE=0: %v", mem.Dirty())
		}
	}
}

// noFUA hides Mem's FUAWriter so the WriteAt+Flush path is tested.
type noFUA struct{ m *blockdev.Mem }

func (d noFUA) ReadAt(p []byte, off int64) (int, error)  { return d.m.ReadAt(p, off) }
func (d noFUA) WriteAt(p []byte, off int64) (int, error) { return d.m.WriteAt(p, off) }
func (d noFUA) Flush() error                             { return d.m.Flush() }
func (d noFUA) Size() int64                              { return d.m.Size() }
func (d noFUA) Close() error                             { return d.m.Close() }

// Disabling the write cache flushes data written while it was enabled.
func TestWCEOffFlushes_SBC3_6_4_5(t *testing.T) {
	mem := blockdev.NewMem(1<<20, 512)
	lu := newTestLU(t, withDev(mem), withWriteCache())
	n := newNexus(t, lu)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 1, 1, 0), pattern(512, 1)))
	if len(mem.Dirty()) == 0 {
		t.Fatal("expected a dirty block")
	}
	expectGood(t, run(t, lu, n, modeSelect10(hdr10(cachingPage(false))), hdr10(cachingPage(false))))
	if len(mem.Dirty()) != 0 {
		t.Fatal("WCE 1→0 did not flush")
	}
}

// Read-only LU (SBC-3 "write protection"): writes fail with DATA PROTECT, WRITE
// PROTECTED; WP is set in the mode parameter header (libiscsi
// ReadOnly.ReadOnlySBC).
func TestReadOnly_SBC3(t *testing.T) {
	lu := newTestLU(t, withReadOnly())
	n := newNexus(t, lu)
	data := pattern(512, 1)
	for _, op := range []byte{opWrite6, opWrite10, opWrite12, opWrite16, opWriteVerify10, opWriteVerify12, opWriteVerify16} {
		expectSense(t, run(t, lu, n, cdbRW(op, 0, 1, 0), data), SenseDataProtect, ascWriteProtected)
	}
	expectGood(t, run(t, lu, n, cdbRW(opRead10, 0, 1, 0), nil))
	_, d := runData(t, lu, n, modeSense6(0, pageAllPages, 0, 255), nil)
	if d[2]&0x80 == 0 {
		t.Fatal("WP not set")
	}
}

// SPC-4 "Control mode page" SWP is not changeable (libiscsi
// ModeSense6.Control-SWP then skips): a MODE SELECT setting it is INVALID FIELD
// IN PARAMETER LIST.
func TestSoftwareWriteProtectFixed_SPC4_7_5_8(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	r, chg := runData(t, lu, n, modeSense6(0x08, pageControl, pcChangeable, 255), nil)
	expectGood(t, r)
	if chg[4+4]&0x08 != 0 {
		t.Fatal("SWP changeable")
	}
	expectInvalidParam(t, run(t, lu, n, modeSelect6(controlPage(false, true)), controlPage(false, true)), 8, 3)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, 0), pattern(512, 1)))
}

// Execute contract: a data-out shorter than the CDB's transfer length
// (iSCSI EDTL < SPDTL) writes only the whole blocks received; a partial
// block writes nothing and returns INVALID FIELD IN COMMAND INFORMATION
// UNIT (FCP-4 "FCP_DL", libiscsi iSCSIResiduals.Write10Residuals).
func TestShortDataOut(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	old := pattern(2*512, 'a')
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 2, 0), old))
	// Two blocks announced, one received.
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 2, 0), bytes.Repeat([]byte{'b'}, 512)))
	_, d := runData(t, lu, n, cdbRW(opRead10, 0, 2, 0), nil)
	if !bytes.Equal(d[:512], bytes.Repeat([]byte{'b'}, 512)) || !bytes.Equal(d[512:], old[512:]) {
		t.Fatal("short write: wrong data")
	}
	// 200 bytes of a block: nothing written.
	expectSense(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, 0), bytes.Repeat([]byte{'c'}, 200)), SenseIllegalRequest, ascInvalidFieldInCmdIU)
	_, d = runData(t, lu, n, cdbRW(opRead10, 0, 1, 0), nil)
	if d[0] != 'b' {
		t.Fatal("partial block written")
	}
	// No data at all: GOOD, nothing written.
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, 0), []byte{}))
}

// Execute contract: a data-in buffer shorter than the transfer length
// (EDTL < SPDTL) gets the first bytes, whole blocks or not.
func TestShortDataIn(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	data := pattern(1024, 3)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 2, 0), data))
	cmd := lu.Decode(cdbRW(opRead10, 0, 2, 0))
	for _, l := range []int{0, 200, 512, 700} {
		buf := alignedBuf(l)
		r := lu.Execute(t.Context(), n, &cmd, buf)
		expectGood(t, r)
		if r.DataLen != l || !bytes.Equal(buf[:l], data[:l]) {
			t.Fatalf("len %d: DataLen %d", l, r.DataLen)
		}
	}
	// A buffer without the slack the contract requires is an internal
	// error, not a panic.
	buf := make([]byte, 200)
	r := lu.Execute(t.Context(), n, &cmd, buf)
	expectSense(t, r, SenseHardwareError, ascInternalTargetFailure)
}

// SBC-3 "VERIFY (10/12/16)": BYTCHK 00b, 01b (MISCOMPARE with the offset in
// INFORMATION), 11b; 10b reserved (libiscsi Verify10.*).
func TestVerify_SBC3_5_31(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	data := pattern(8*512, 5)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 10, 8, 0), data))
	for _, op := range []byte{opVerify10, opVerify12, opVerify16} {
		expectGood(t, run(t, lu, n, cdbRW(op, 10, 8, 0), nil))
		expectGood(t, run(t, lu, n, cdbRW(op, 10, 8, 0x12), data)) // DPO + BYTCHK 01b
		bad := bytes.Clone(data)
		bad[3000] ^= 'X'
		p := expectSense(t, run(t, lu, n, cdbRW(op, 10, 8, 0x02), bad), SenseMiscompare, ascMiscompare)
		if !p.valid || p.info != 3000 {
			t.Fatalf("INFORMATION %d valid %v, want 3000", p.info, p.valid)
		}
		// BYTCHK=0 does not compare.
		expectGood(t, run(t, lu, n, cdbRW(op, 10, 8, 0x00), nil))
		expectInvalidCDB(t, run(t, lu, n, cdbRW(op, 10, 8, 0x04), nil), 1, 2)
	}
	// BYTCHK 11b: one block compared with every block.
	same := bytes.Repeat(pattern(512, 7), 4)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 100, 4, 0), same))
	if c := lu.Decode(cdbRW(opVerify16, 100, 4, 0x06)); c.DataLen != 512 || c.Dir != DirWrite {
		t.Fatalf("BYTCHK 11b decoded %+v", c)
	}
	expectGood(t, run(t, lu, n, cdbRW(opVerify16, 100, 4, 0x06), same[:512]))
	expectSense(t, run(t, lu, n, cdbRW(opVerify16, 100, 5, 0x06), same[:512]), SenseMiscompare, ascMiscompare)
	// Large ranges go through several chunks.
	big := pattern(2*verifyChunk+1024, 11)
	nb := uint32(len(big) / 512)
	expectGood(t, run(t, lu, n, cdbRW(opWrite16, 0, nb, 0), big))
	expectGood(t, run(t, lu, n, cdbRW(opVerify16, 0, nb, 0x02), big))
	big[verifyChunk+17] ^= 1
	p := expectSense(t, run(t, lu, n, cdbRW(opVerify16, 0, nb, 0x02), big), SenseMiscompare, ascMiscompare)
	if p.info != verifyChunk+17 {
		t.Fatalf("INFORMATION %d", p.info)
	}
	expectGood(t, run(t, lu, n, cdbRW(opVerify16, 0, nb, 0), nil))
}

// SBC-3 "WRITE AND VERIFY (10/12/16)" with BYTCHK 0 and 1; 10b/11b are
// invalid.
func TestWriteAndVerify_SBC3_5_42(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	for i, op := range []byte{opWriteVerify10, opWriteVerify12, opWriteVerify16} {
		data := pattern(2*512, byte(i))
		expectGood(t, run(t, lu, n, cdbRW(op, 20, 2, 0x12), data))
		_, got := runData(t, lu, n, cdbRW(opRead10, 20, 2, 0), nil)
		if !bytes.Equal(got, data) {
			t.Fatal("WRITE AND VERIFY data not written")
		}
		expectGood(t, run(t, lu, n, cdbRW(op, 20, 2, 0), data))
		expectInvalidCDB(t, run(t, lu, n, cdbRW(op, 20, 2, 0x04), data), 1, 2)
		expectInvalidCDB(t, run(t, lu, n, cdbRW(op, 20, 2, 0x08), data), 1, 3) // no FUA bit
	}
}

// SBC-3 "READ CAPACITY (10)" and "READ CAPACITY (16)".
func TestReadCapacity_SBC3_5_16(t *testing.T) {
	lu := newTestLU(t, withBlockSize(4096)) // 256 blocks
	n := newNexus(t, lu)
	r, d := runData(t, lu, n, cdbRW(opReadCapacity10, 0, 0, 0), nil)
	expectGood(t, r)
	if !bytes.Equal(d, []byte{0, 0, 0, 255, 0, 0, 0x10, 0}) {
		t.Fatalf("READ CAPACITY(10): % x", d)
	}
	c := make([]byte, 16)
	c[0] = opReadCapacity10
	c[5] = 1
	expectInvalidCDB(t, run(t, lu, n, c, nil), 2, 7) // PMI=0, LBA≠0
	c[8] = 1
	expectGood(t, run(t, lu, n, c, nil))

	rc16 := func(alloc uint32) []byte {
		c := make([]byte, 16)
		c[0], c[1] = opServiceActionIn, saReadCapacity16
		binary.BigEndian.PutUint32(c[10:14], alloc)
		return c
	}
	r, d = runData(t, lu, n, rc16(32), nil)
	expectGood(t, r)
	want := make([]byte, 32)
	want[7], want[10] = 255, 0x10
	want[14] = 0xC0 // LBPME, LBPRZ: Mem can deallocate
	if !bytes.Equal(d, want) {
		t.Fatalf("READ CAPACITY(16): % x", d)
	}
	for alloc := uint32(0); alloc < 16; alloc++ { // libiscsi ReadCapacity16.Alloclen
		r, d := runData(t, lu, n, rc16(alloc), nil)
		expectGood(t, r)
		if len(d) != int(alloc) {
			t.Fatalf("alloc %d: %d bytes", alloc, len(d))
		}
	}
	// More than 2^32 blocks: READ CAPACITY(10) returns FFFFFFFFh.
	big := newTestLU(t, withSize((1<<32+10)*512, 512))
	bn := newNexus(t, big)
	_, d = runData(t, big, bn, cdbRW(opReadCapacity10, 0, 0, 0), nil)
	if binary.BigEndian.Uint32(d[0:4]) != 0xFFFFFFFF {
		t.Fatalf("big READ CAPACITY(10): % x", d)
	}
	_, d = runData(t, big, bn, rc16(32), nil)
	if binary.BigEndian.Uint64(d[0:8]) != 1<<32+9 {
		t.Fatalf("big READ CAPACITY(16): % x", d)
	}
}

// SBC-3 "START STOP UNIT" and "PREVENT ALLOW MEDIUM REMOVAL":
// accepted, no effect (libiscsi StartStopUnit.NoLoej).
func TestStartStopPreventAllow_SBC3_5_25(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	for _, b4 := range []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x10, 0x20, 0x30, 0x70, 0xA0, 0xB0} {
		for _, immed := range []byte{0, 1} {
			expectGood(t, run(t, lu, n, cdb6(opStartStopUnit, immed, 0, 0, b4), nil))
			expectGood(t, run(t, lu, n, cdb6(opTestUnitReady), nil))
		}
	}
	expectInvalidCDB(t, run(t, lu, n, cdb6(opStartStopUnit, 0, 0, 0, 0x40), nil), 4, 7)
	for _, p := range []byte{0, 1} {
		expectGood(t, run(t, lu, n, cdb6(opPreventAllow, 0, 0, 0, p), nil))
	}
}

// Device errors become MEDIUM ERROR (SPC-4 "sense key and additional sense
// code"): UNRECOVERED READ ERROR for reads, WRITE ERROR for writes and flushes.
func TestMediumErrors(t *testing.T) {
	f := blockdev.NewFaulty(blockdev.NewMem(1<<20, 512))
	lu := newTestLU(t, withDev(f))
	n := newNexus(t, lu)
	f.SetFault(func(op blockdev.Op, off int64, _ int) error {
		if off == 512*7 || op == blockdev.OpFlush {
			return blockdev.ErrInjected
		}
		return nil
	})
	expectSense(t, run(t, lu, n, cdbRW(opRead10, 7, 1, 0), nil), SenseMediumError, ascUnrecoveredReadError)
	expectSense(t, run(t, lu, n, cdbRW(opVerify10, 7, 1, 0), nil), SenseMediumError, ascUnrecoveredReadError)
	expectSense(t, run(t, lu, n, cdbRW(opWrite10, 7, 1, 0), pattern(512, 1)), SenseMediumError, ascWriteError)
	expectSense(t, run(t, lu, n, cdbRW(opSyncCache16, 0, 0, 0), nil), SenseMediumError, ascWriteError)
	expectGood(t, run(t, lu, n, cdbRW(opRead10, 8, 1, 0), nil))
	f.SetFault(func(blockdev.Op, int64, int) error { return blockdev.ErrClosed })
	expectSense(t, run(t, lu, n, cdbRW(opRead10, 8, 1, 0), nil), SenseNotReady, ascLUNotReady)
	if !errors.Is(blockdev.ErrInjected, blockdev.ErrInjected) {
		t.Fatal()
	}
}
