package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"

	"hastor/blockdev"
)

// xcopySeg is one block to block segment of a test parameter list.
type xcopySeg struct {
	src, dst       uint16
	blocks         uint16
	srcLBA, dstLBA uint64
	dc             bool
}

// xcopyList builds an EXTENDED COPY (LID1) CDB and parameter list with one
// identification CSCD descriptor per LU in cscds (nil: a designator that
// names no LU) and the segments segs.
func xcopyList(listID, usage byte, cscds []*LU, segs ...xcopySeg) (cdb, params []byte) {
	p := make([]byte, xcopyHdrLen, xcopyHdrLen+len(cscds)*cscdLen+len(segs)*segB2BLen)
	p[0], p[1] = listID, usage<<3
	binary.BigEndian.PutUint16(p[2:4], uint16(len(cscds)*cscdLen))
	binary.BigEndian.PutUint32(p[8:12], uint32(len(segs)*segB2BLen))
	for _, l := range cscds {
		d := make([]byte, cscdLen)
		d[0] = cscdTypeIdent
		d[4], d[5], d[7] = codeBinary, assocLU|desigNAA, 16
		bs := 512
		if l != nil {
			copy(d[8:24], l.id.NAA[:])
			bs = l.bs
		} else {
			copy(d[8:24], "no such volume..")
		}
		d[29], d[30], d[31] = byte(bs>>16), byte(bs>>8), byte(bs)
		p = append(p, d...)
	}
	for _, s := range segs {
		d := make([]byte, segB2BLen)
		d[0] = segTypeB2B
		if s.dc {
			d[1] = 0x02
		}
		binary.BigEndian.PutUint16(d[2:4], segB2BLen-4)
		binary.BigEndian.PutUint16(d[4:6], s.src)
		binary.BigEndian.PutUint16(d[6:8], s.dst)
		binary.BigEndian.PutUint16(d[10:12], s.blocks)
		binary.BigEndian.PutUint64(d[12:20], s.srcLBA)
		binary.BigEndian.PutUint64(d[20:28], s.dstLBA)
		p = append(p, d...)
	}
	cdb = make([]byte, 16)
	cdb[0] = opExtendedCopy
	binary.BigEndian.PutUint32(cdb[10:14], uint32(len(p)))
	return cdb, p
}

func cdbReceiveCopyResults(sa, listID byte, alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1], c[2] = opReceiveCopyResults, sa, listID
	binary.BigEndian.PutUint32(c[10:14], alloc)
	return c
}

// readBlocks reads n blocks from lba through READ(16).
func readBlocks(t *testing.T, lu *LU, n *Nexus, lba uint64, blocks uint32) []byte {
	t.Helper()
	r, d := runData(t, lu, n, cdbRW(opRead16, lba, blocks, 0), nil)
	expectGood(t, r)
	return d
}

func writeBlocks(t *testing.T, lu *LU, n *Nexus, lba uint64, p []byte) {
	t.Helper()
	expectGood(t, run(t, lu, n, cdbRW(opWrite16, lba, uint32(len(p)/lu.bs), 0), p))
}

func withVolume(id string) luOpt { return func(c *LUConfig) { c.VolumeID = id } }

// SPC-4 "EXTENDED COPY (LID1)": block to block copies within an LU,
// between overlapping ranges in both directions (more than one chunk, so
// the backward copy is exercised), and a zero-length list.
func TestExtendedCopy_SPC4(t *testing.T) {
	lu := newTestLU(t, withSize(16<<20, 512))
	n := newNexus(t, lu)
	orig := pattern(3<<20, 3)
	writeBlocks(t, lu, n, 0, orig)

	cdb, params := xcopyList(1, listIDNoHold, []*LU{lu}, xcopySeg{blocks: 64, srcLBA: 0, dstLBA: 30000})
	expectGood(t, run(t, lu, n, cdb, params))
	if !bytes.Equal(readBlocks(t, lu, n, 30000, 64), orig[:64*512]) {
		t.Fatal("simple copy: destination differs from source")
	}

	// Destination after the source, overlapping: 2.5 MiB moved 0.5 MiB up.
	cdb, params = xcopyList(2, listIDNoHold, []*LU{lu}, xcopySeg{blocks: 5120, srcLBA: 0, dstLBA: 1024})
	expectGood(t, run(t, lu, n, cdb, params))
	if !bytes.Equal(readBlocks(t, lu, n, 1024, 5120), orig[:5120*512]) {
		t.Fatal("overlapping copy upwards smeared the data")
	}
	// And back down: destination before the source.
	cdb, params = xcopyList(3, listIDNoHold, []*LU{lu}, xcopySeg{blocks: 5120, srcLBA: 1024, dstLBA: 0})
	expectGood(t, run(t, lu, n, cdb, params))
	if !bytes.Equal(readBlocks(t, lu, n, 0, 5120), orig[:5120*512]) {
		t.Fatal("overlapping copy downwards smeared the data")
	}

	cdb[10], cdb[11], cdb[12], cdb[13] = 0, 0, 0, 0
	expectGood(t, run(t, lu, n, cdb, nil)) // PARAMETER LIST LENGTH 0: nothing to do
}

// Copies between two LUs of one target, with different block sizes and
// DC (NUMBER OF BLOCKS in destination blocks), and durability: with the
// destination's write cache disabled the copied blocks are written FUA
// (or flushed) before GOOD.
func TestExtendedCopyBetweenLUs_SPC4(t *testing.T) {
	f := blockdev.NewFaulty(blockdev.NewMem(4<<20, 4096))
	a := newTestLU(t, withSize(4<<20, 512), withVolume("vol-a"))
	b := newTestLU(t, withDev(f), withBlockSize(4096), withVolume("vol-b"))
	if _, err := NewTarget("iqn.2024-01.test:tgt", []*LU{a, b}); err != nil {
		t.Fatal(err)
	}
	na, nb := newNexus(t, a), newNexus(t, b)
	src := pattern(64<<10, 9)
	writeBlocks(t, a, na, 16, src)

	durable := f.Count(blockdev.OpWriteFUA) + f.Count(blockdev.OpFlush)
	// Sent to LU a; the destination is LU b (CSCD 1): 8 blocks of 4096.
	cdb, params := xcopyList(1, listIDHold, []*LU{a, b},
		xcopySeg{src: 0, dst: 1, blocks: 8, srcLBA: 16, dstLBA: 2, dc: true},
		xcopySeg{src: 0, dst: 1, blocks: 64, srcLBA: 80, dstLBA: 10}) // source blocks
	expectGood(t, run(t, a, na, cdb, params))
	if !bytes.Equal(readBlocks(t, b, nb, 2, 8), src[:32<<10]) || !bytes.Equal(readBlocks(t, b, nb, 10, 8), src[32<<10:]) {
		t.Fatal("copy between LUs: destination differs")
	}
	if f.Count(blockdev.OpWriteFUA)+f.Count(blockdev.OpFlush) == durable {
		t.Fatal("copy with WCE=0 was not made durable")
	}

	// RECEIVE COPY RESULTS (COPY STATUS) for the held list identifier 1.
	r, d := runData(t, a, na, cdbReceiveCopyResults(saCopyStatus, 1, 64), nil)
	expectGood(t, r)
	if len(d) != 12 || binary.BigEndian.Uint32(d[0:4]) != 8 || d[4] != copyStatusDone ||
		binary.BigEndian.Uint16(d[5:7]) != 2 || d[7] != 0 || binary.BigEndian.Uint32(d[8:12]) != 64<<10 {
		t.Fatalf("COPY STATUS: % x", d)
	}
	// Held per I_T nexus: another nexus, or another list identifier, has none.
	other := newNexus(t, a)
	expectInvalidCDB(t, run(t, a, other, cdbReceiveCopyResults(saCopyStatus, 1, 64), nil), 2, 7)
	expectInvalidCDB(t, run(t, a, na, cdbReceiveCopyResults(saCopyStatus, 2, 64), nil), 2, 7)
	// LIST ID USAGE 10b holds nothing.
	cdb, params = xcopyList(2, listIDNoHold, []*LU{a}, xcopySeg{blocks: 1})
	expectGood(t, run(t, a, na, cdb, params))
	expectInvalidCDB(t, run(t, a, na, cdbReceiveCopyResults(saCopyStatus, 2, 64), nil), 2, 7)

	// An LU of another target cannot be named.
	c := newTestLU(t, withVolume("vol-c"))
	cdb, params = xcopyList(0, listIDNone, []*LU{a, c}, xcopySeg{src: 0, dst: 1, blocks: 1})
	expectSense(t, run(t, a, na, cdb, params), SenseCopyAborted, 0x0804)
}

// OPERATING PARAMETERS reports the limits that the parameter list checks
// enforce.
func TestReceiveCopyResultsOperatingParameters_SPC4(t *testing.T) {
	lu := newTestLU(t, withBlockSize(4096))
	n := newNexus(t, lu)
	r, d := runData(t, lu, n, cdbReceiveCopyResults(saOperatingParams, 0, 1024), nil)
	expectGood(t, r)
	if len(d) != 46 || binary.BigEndian.Uint32(d[0:4]) != 42 {
		t.Fatalf("length %d: % x", len(d), d)
	}
	if binary.BigEndian.Uint16(d[8:10]) != xcopyMaxCSCDs || binary.BigEndian.Uint16(d[10:12]) != xcopyMaxSegments ||
		binary.BigEndian.Uint32(d[12:16]) != xcopyMaxDescLen || binary.BigEndian.Uint32(d[16:20]) != 0xFFFF*4096 ||
		d[37] != 12 || d[43] != 2 || d[44] != segTypeB2B || d[45] != cscdTypeIdent {
		t.Fatalf("operating parameters: % x", d)
	}
	r, d = runData(t, lu, n, cdbReceiveCopyResults(saOperatingParams, 0, 8), nil)
	expectGood(t, r)
	if len(d) != 8 {
		t.Fatalf("allocation length 8: %d bytes", len(d))
	}
	expectInvalidCDB(t, run(t, lu, n, cdbReceiveCopyResults(saOperatingParams, 1, 64), nil), 2, 0)
}

// Bad parameter lists end with the SPC-4 sense and copy nothing, even
// when an earlier segment was good.
func TestExtendedCopyErrors_SPC4(t *testing.T) {
	lu := newTestLU(t, withSize(1<<20, 512))
	n := newNexus(t, lu)
	writeBlocks(t, lu, n, 0, pattern(8*512, 5))
	good := xcopySeg{blocks: 8, srcLBA: 0, dstLBA: 100}
	nb := lu.Capacity()
	const seg0 = xcopyHdrLen + 2*cscdLen // the first segment, after two CSCDs
	for _, tc := range []struct {
		name  string
		cscds []*LU // default: lu twice
		segs  []xcopySeg
		edit  func(p []byte) []byte
		key   SenseKey
		asc   ascCode
		field int   // INVALID FIELD IN PARAMETER LIST: byte
		bit   uint8 // and bit
	}{
		{name: "short header", edit: func(p []byte) []byte { return p[:15] }, key: SenseIllegalRequest, asc: ascParamListLength},
		{name: "descriptors cut short", edit: func(p []byte) []byte { return p[:len(p)-1] }, key: SenseIllegalRequest, asc: ascParamListLength},
		{name: "descriptor lists too long", edit: func(p []byte) []byte {
			binary.BigEndian.PutUint32(p[8:12], 1000) // 64 + 1000 > 1024
			return append(p, make([]byte, 1000-28)...)
		}, key: SenseIllegalRequest, asc: ascParamListLength},
		{name: "too many CSCDs", cscds: []*LU{lu, lu, lu, lu, lu, lu, lu, lu, lu}, key: SenseIllegalRequest, asc: 0x2606},
		{name: "too many segments", segs: make([]xcopySeg, 17), key: SenseIllegalRequest, asc: 0x2608},
		{name: "CSCD type", edit: func(p []byte) []byte { p[16] = 0xE0; return p }, key: SenseIllegalRequest, asc: 0x2607},
		{name: "segment type", edit: func(p []byte) []byte { p[seg0] = 0x03; return p }, key: SenseIllegalRequest, asc: 0x2609},
		{name: "segment length", edit: func(p []byte) []byte { p[seg0+3] = 0x10; return p }, asc: ascInvalidFieldInParam, field: seg0 + 2, bit: 7},
		{name: "inline data", edit: func(p []byte) []byte { p[15] = 4; return p }, key: SenseIllegalRequest, asc: 0x260B},
		{name: "list id usage 01b", edit: func(p []byte) []byte { p[1] = 0x08; return p }, asc: ascInvalidFieldInParam, field: 1, bit: 4},
		{name: "block length", edit: func(p []byte) []byte { p[16+30] = 0x10; return p }, asc: ascInvalidFieldInParam, field: 16 + 29, bit: 7},
		{name: "no such CSCD", segs: []xcopySeg{good, {dst: 2, blocks: 1}}, key: SenseCopyAborted, asc: 0x0804},
		{name: "unknown LU", cscds: []*LU{lu, nil}, segs: []xcopySeg{good, {dst: 1, blocks: 1}}, key: SenseCopyAborted, asc: 0x0804},
		{name: "NUL", edit: func(p []byte) []byte { p[17] = 0x20; return p }, key: SenseCopyAborted, asc: 0x0804},
		{name: "past the end (destination)", segs: []xcopySeg{good, {blocks: 2, dstLBA: nb - 1}}, key: SenseCopyAborted, asc: 0x0D02},
		{name: "past the end (source)", segs: []xcopySeg{good, {blocks: 1, srcLBA: nb}}, key: SenseCopyAborted, asc: 0x0D04},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cscds, segs := tc.cscds, tc.segs
			if cscds == nil {
				cscds = []*LU{lu, lu}
			}
			if segs == nil {
				segs = []xcopySeg{good}
			}
			for i := range segs {
				if segs[i].blocks == 0 {
					segs[i] = good
				}
			}
			cdb, p := xcopyList(1, listIDNoHold, cscds, segs...)
			if tc.edit != nil {
				p = tc.edit(p)
				binary.BigEndian.PutUint32(cdb[10:14], uint32(len(p)))
			}
			r := run(t, lu, n, cdb, p)
			if tc.asc == ascInvalidFieldInParam {
				expectInvalidParam(t, r, tc.field, tc.bit)
			} else {
				expectSense(t, r, tc.key, tc.asc)
			}
			if !bytes.Equal(readBlocks(t, lu, n, 100, 8), make([]byte, 8*512)) {
				t.Fatal("a refused EXTENDED COPY copied blocks")
			}
		})
	}
}

// Read-only destinations, reservations held by other I_T nexuses and a
// Medium that is not ready end the command before anything is copied.
func TestExtendedCopyAccess_SPC4(t *testing.T) {
	a := newTestLU(t, withVolume("vol-a"))
	ro := newTestLU(t, withVolume("vol-ro"), withReadOnly())
	if _, err := NewTarget("iqn.2024-01.test:tgt", []*LU{a, ro}); err != nil {
		t.Fatal(err)
	}
	n, other := newNexus(t, a), newNexus(t, a)
	cdb, p := xcopyList(0, listIDNone, []*LU{a, ro}, xcopySeg{src: 0, dst: 1, blocks: 1})
	expectSense(t, run(t, a, n, cdb, p), SenseDataProtect, ascWriteProtected)
	cdb, p = xcopyList(0, listIDNone, []*LU{ro, a}, xcopySeg{src: 0, dst: 1, blocks: 1})
	expectGood(t, run(t, a, n, cdb, p)) // reading a read-only LU is fine

	// Another nexus reserves the source (SPC-2 RESERVE): reading it through
	// the copy manager conflicts, as a READ would.
	expectSense(t, run(t, ro, other, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
	expectGood(t, run(t, ro, other, cdb6(opReserve6), nil))
	if r := run(t, a, n, cdb, p); r.Status != StatusReservationConflict {
		t.Fatalf("copy from a reserved LU: status %#x, want RESERVATION CONFLICT", r.Status)
	}
	expectGood(t, run(t, ro, other, cdb6(opRelease6), nil))
	expectGood(t, run(t, a, n, cdb, p))
}

// SPC-4 "Third-party Copy VPD page": the descriptors an EXTENDED COPY
// (LID1) copy manager must report, each a multiple of 4 bytes, in
// ascending order, with the limits OPERATING PARAMETERS reports.
func TestThirdPartyCopyVPD_SPC4(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	p := vpd(t, lu, n, vpdThirdPartyCopy)
	want := []byte{
		0x00, 0x8F, 0x00, 0x60,
		// Supported Commands: 83h {00h}, 84h {00h, 03h}.
		0x00, 0x01, 0x00, 0x08, 0x07, 0x83, 0x01, 0x00, 0x84, 0x02, 0x00, 0x03,
		// Parameter Data: 8 CSCDs, 16 segments, 1024 bytes, no inline data.
		0x00, 0x04, 0x00, 0x1C, 0, 0, 0, 0, 0x00, 0x08, 0x00, 0x10, 0x00, 0x00, 0x04, 0x00, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		// Supported Descriptors: 02h, E4h.
		0x00, 0x08, 0x00, 0x04, 0x02, 0x02, 0xE4, 0x00,
		// Supported CSCD IDs: none beyond the descriptor indexes.
		0x00, 0x0C, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
		// General Copy Operations: 16 copies, segments of 65535 blocks of
		// 512 bytes, granularity 2^9.
		0x80, 0x01, 0x00, 0x20, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0x01, 0xFF, 0xFE, 0x00, 0x09, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	}
	if !bytes.Equal(p, want) {
		t.Fatalf("page 8Fh:\n got % x\nwant % x", p, want)
	}
	// The 3PC bit in the standard INQUIRY data announces it.
	r, d := runData(t, lu, n, cdb6(opInquiry, 0, 0, 0, 36), nil)
	expectGood(t, r)
	if d[5]&0x08 == 0 {
		t.Fatal("3PC is 0")
	}
}
