package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func modeSense6(b1, page, pc, alloc byte) []byte {
	return cdb6(opModeSense6, b1, pc<<6|page, 0, alloc)
}

func modeSense10(b1, page, pc byte, sub byte, alloc uint16) []byte {
	c := make([]byte, 16)
	c[0], c[1], c[2], c[3] = opModeSense10, b1, pc<<6|page, sub
	binary.BigEndian.PutUint16(c[7:9], alloc)
	return c
}

// modeSelect6 returns a MODE SELECT(6) CDB (PF=1) for param, a parameter
// list with a 4-byte header prepended by the caller or by hdr6.
func modeSelect6(pageData []byte) []byte {
	return cdb6(opModeSelect6, 0x10, 0, 0, byte(len(pageData)))
}

func modeSelect10(param []byte) []byte {
	c := make([]byte, 16)
	c[0], c[1] = opModeSelect10, 0x10
	binary.BigEndian.PutUint16(c[7:9], uint16(len(param)))
	return c
}

func hdr10(param6 []byte) []byte {
	return append(make([]byte, 8), param6[4:]...)
}

// cachingPage returns a MODE SELECT(6) parameter list holding the Caching
// page with WCE set as given.
func cachingPage(wce bool) []byte {
	p := make([]byte, 4+20)
	p[4], p[5] = pageCaching, 0x12
	if wce {
		p[6] = 0x04
	}
	return p
}

// controlPage returns a MODE SELECT(6) parameter list with the Control page.
func controlPage(dsense, swp bool) []byte {
	p := make([]byte, 4+12)
	p[4], p[5] = pageControl, 0x0A
	if dsense {
		p[6] |= 0x04
	}
	p[7] = 0x10
	if swp {
		p[8] |= 0x08
	}
	p[12], p[13] = 0xFF, 0xFF // BUSY TIMEOUT PERIOD
	return p
}

// pages splits mode pages.
func pages(t *testing.T, b []byte) map[byte][]byte {
	t.Helper()
	m := map[byte][]byte{}
	for len(b) > 0 {
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			t.Fatalf("truncated page: % x", b)
		}
		m[b[0]&0x3F] = b[:2+b[1]]
		b = b[2+b[1]:]
	}
	return m
}

// SPC-4 "MODE SENSE(6)": header, block descriptor, all pages, page
// control, DPOFUA (libiscsi ModeSense6.AllPages, .Control, .Residuals).
func TestModeSense6_SPC4_6_13(t *testing.T) {
	lu := newTestLU(t, withWriteCache())
	n := newNexus(t, lu)
	r, d := runData(t, lu, n, modeSense6(0, pageAllPages, pcCurrent, 255), nil)
	expectGood(t, r)
	if int(d[0]) != len(d)-1 || d[1] != 0 || d[2] != 0x10 || d[3] != 8 {
		t.Fatalf("header % x (len %d)", d[:4], len(d))
	}
	if !bytes.Equal(d[4:12], []byte{0, 0, 0x08, 0, 0, 0, 0x02, 0}) { // 2048 blocks of 512
		t.Fatalf("block descriptor % x", d[4:12])
	}
	pg := pages(t, d[12:])
	if len(pg) != 3 || len(pg[pageCaching]) != 20 || len(pg[pageControl]) != 12 || len(pg[pageInfoExc]) != 12 {
		t.Fatalf("pages %v", pg)
	}
	if pg[pageCaching][2] != 0x04 {
		t.Fatalf("WCE not reported: % x", pg[pageCaching])
	}
	ctl := pg[pageControl]
	if ctl[2] != 0 || ctl[3] != 0x10 || ctl[4] != 0 || ctl[5] != 0 || ctl[8] != 0xFF || ctl[9] != 0xFF {
		t.Fatalf("control page % x", ctl)
	}
	// The control page alone is identical (ModeSense6.Control).
	_, d2 := runData(t, lu, n, modeSense6(0x08, pageControl, pcCurrent, 255), nil)
	if d2[3] != 0 || !bytes.Equal(d2[4:], ctl) {
		t.Fatalf("control page alone: % x", d2)
	}
	// Truncation: 4 bytes (ModeSense6.Residuals).
	r, d = runData(t, lu, n, modeSense6(0, pageAllPages, pcCurrent, 4), nil)
	expectGood(t, r)
	if len(d) != 4 {
		t.Fatalf("alloc 4: %d bytes", len(d))
	}
	// Changeable values: WCE and D_SENSE only.
	_, d = runData(t, lu, n, modeSense6(0x08, pageAllPages, pcChangeable, 255), nil)
	pg = pages(t, d[4:])
	if pg[pageCaching][2] != 0x04 || pg[pageControl][2] != 0x04 || !bytes.Equal(pg[pageControl][3:], make([]byte, 9)) ||
		!bytes.Equal(pg[pageInfoExc][2:], make([]byte, 10)) {
		t.Fatalf("changeable: % x", d)
	}
	// Default values: WCE from the configuration.
	expectGood(t, run(t, lu, n, modeSelect6(cachingPage(false)), cachingPage(false)))
	_, d = runData(t, lu, n, modeSense6(0x08, pageCaching, pcDefault, 255), nil)
	if d[4+2] != 0x04 {
		t.Fatalf("default WCE: % x", d)
	}
	_, d = runData(t, lu, n, modeSense6(0x08, pageCaching, pcCurrent, 255), nil)
	if d[4+2] != 0 {
		t.Fatalf("current WCE: % x", d)
	}
	// Saved values are not supported (SPC-4 "page control").
	expectSense(t, run(t, lu, n, modeSense6(0, pageAllPages, pcSaved, 255), nil), SenseIllegalRequest, ascSavingParamsNotSupp)
	// Unsupported page and subpage.
	expectInvalidCDB(t, run(t, lu, n, modeSense6(0, 0x19, pcCurrent, 255), nil), 2, 5)
	c := modeSense6(0, pageControl, pcCurrent, 255)
	c[3] = 0x01
	expectInvalidCDB(t, run(t, lu, n, c, nil), 3, 7)
	c[3] = 0xFF
	expectGood(t, run(t, lu, n, c, nil))
}

// SPC-4 "MODE SENSE(10)" with LLBAA: long LBA block descriptor.
func TestModeSense10_SPC4_6_14(t *testing.T) {
	lu := newTestLU(t, withBlockSize(4096))
	n := newNexus(t, lu)
	_, d := runData(t, lu, n, modeSense10(0x10, pageCaching, pcCurrent, 0, 512), nil)
	if int(binary.BigEndian.Uint16(d[0:2])) != len(d)-2 || d[4] != 0x01 || binary.BigEndian.Uint16(d[6:8]) != 16 {
		t.Fatalf("header % x", d[:8])
	}
	if binary.BigEndian.Uint64(d[8:16]) != 256 || binary.BigEndian.Uint32(d[20:24]) != 4096 {
		t.Fatalf("long descriptor % x", d[8:24])
	}
	_, d = runData(t, lu, n, modeSense10(0, pageCaching, pcCurrent, 0, 512), nil)
	if d[4] != 0 || binary.BigEndian.Uint16(d[6:8]) != 8 || len(d) != 8+8+20 {
		t.Fatalf("short descriptor % x", d)
	}
	_, d = runData(t, lu, n, modeSense10(0x08, pageAllPages, pcCurrent, 0xFF, 512), nil)
	if binary.BigEndian.Uint16(d[6:8]) != 0 || len(pages(t, d[8:])) != 3 {
		t.Fatalf("DBD all subpages % x", d)
	}
}

// SPC-4 "MODE SELECT(6)", "MODE SELECT(10)": changeable bits change, others
// must match (INVALID FIELD IN PARAMETER LIST with a C/D=0 field pointer); MODE
// PARAMETERS CHANGED for the other nexuses.
func TestModeSelect_SPC4_6_11(t *testing.T) {
	lu := newTestLU(t)
	a, b := newNexus(t, lu), newNexus(t, lu)
	expectGood(t, run(t, lu, a, modeSelect6(cachingPage(true)), cachingPage(true)))
	if !lu.mode.Load().WCE {
		t.Fatal("WCE not applied")
	}
	expectGood(t, run(t, lu, a, cdb6(opTestUnitReady), nil))
	expectSense(t, run(t, lu, b, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascModeParamsChanged)
	expectGood(t, run(t, lu, b, cdb6(opTestUnitReady), nil))
	// No change: no UA.
	expectGood(t, run(t, lu, a, modeSelect6(cachingPage(true)), cachingPage(true)))
	expectGood(t, run(t, lu, b, cdb6(opTestUnitReady), nil))
	// MODE SELECT(10), with a block descriptor.
	p := make([]byte, 8+8+20)
	p[7] = 8
	binary.BigEndian.PutUint32(p[8:12], 2048)
	p[8+6] = 0x02 // block length 512
	copy(p[16:], cachingPage(false)[4:])
	expectGood(t, run(t, lu, a, modeSelect10(p), p))
	if lu.mode.Load().WCE {
		t.Fatal("WCE not cleared")
	}

	// Errors, with field pointers into the parameter list.
	bad := cachingPage(true)
	bad[6] |= 0x01 // RCD is not changeable
	expectInvalidParam(t, run(t, lu, a, modeSelect6(bad), bad), 6, 0)
	bad = controlPage(false, false)
	bad[7] = 0x00 // QUEUE ALGORITHM MODIFIER
	expectInvalidParam(t, run(t, lu, a, modeSelect6(bad), bad), 7, 4)
	bad = cachingPage(true)
	bad[5] = 0x10 // page length
	expectInvalidParam(t, run(t, lu, a, modeSelect6(bad), bad), 5, 7)
	bad = append(cachingPage(true), 0x19, 0x02, 0, 0) // unsupported page
	expectInvalidParam(t, run(t, lu, a, modeSelect6(bad), bad), 24, 5)
	bad = cachingPage(true)[:10] // truncated page
	expectSense(t, run(t, lu, a, modeSelect6(bad), bad), SenseIllegalRequest, ascParamListLength)
	bad = cachingPage(true)
	bad[1] = 1 // medium type
	expectInvalidParam(t, run(t, lu, a, modeSelect6(bad), bad), 1, 7)
	bad = append([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0}, cachingPage(true)[4:]...) // block length 4096
	expectInvalidParam(t, run(t, lu, a, modeSelect6(bad), bad), 9, 7)
	bad = append([]byte{0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0x02, 0}, cachingPage(true)[4:]...) // 1 block
	expectInvalidParam(t, run(t, lu, a, modeSelect6(bad), bad), 4, 7)
	if lu.mode.Load().WCE {
		t.Fatal("a rejected parameter list changed the state")
	}
	// A valid page followed by an invalid one changes nothing.
	bad = append(cachingPage(true), controlPage(false, false)[4:]...)
	bad[24+3] = 0
	expectInvalidParam(t, run(t, lu, a, modeSelect6(bad), bad), 27, 4)
	if lu.mode.Load().WCE {
		t.Fatal("partial MODE SELECT applied")
	}
	// CDB checks: SP=1, PF=0.
	c := modeSelect6(cachingPage(true))
	c[1] = 0x11
	expectInvalidCDB(t, run(t, lu, a, c, cachingPage(true)), 1, 0)
	c[1] = 0x00
	expectInvalidCDB(t, run(t, lu, a, c, cachingPage(true)), 1, 4)
	// Parameter list length 0: nothing to do.
	expectGood(t, run(t, lu, a, cdb6(opModeSelect6, 0x10), nil))
	// Fewer bytes than the parameter list length.
	cmd := lu.Decode(modeSelect6(cachingPage(true)))
	buf := alignedBuf(10)
	expectSense(t, lu.Execute(t.Context(), a, &cmd, buf), SenseIllegalRequest, ascParamListLength)
}

// SPC-4 "Control mode page" D_SENSE: descriptor-format sense data once set
// (libiscsi ModeSense6.Control-D_SENSE).
func TestDSense_SPC4_7_5_8(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	oob := cdbRW(opRead16, ^uint64(0), 1, 0)
	r := run(t, lu, n, oob, nil)
	if r.Sense[0] != 0x70 || r.SenseLen != 18 {
		t.Fatalf("fixed sense expected: % x", r.SenseData())
	}
	expectGood(t, run(t, lu, n, modeSelect6(controlPage(true, false)), controlPage(true, false)))
	r = run(t, lu, n, oob, nil)
	if r.Sense[0] != 0x72 {
		t.Fatalf("descriptor sense expected: % x", r.SenseData())
	}
	expectSense(t, r, SenseIllegalRequest, ascLBAOutOfRange)
	r = run(t, lu, n, cdb6(opInquiry, 0, 1, 0, 255), nil)
	p := expectSense(t, r, SenseIllegalRequest, ascInvalidFieldInCDB)
	if r.Sense[0] != 0x72 || !p.sksv || p.field != 2 || r.SenseLen != 16 {
		t.Fatalf("descriptor field pointer: % x", r.SenseData())
	}
	bad := bytes.Repeat([]byte{0xEE}, 512)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, 0), make([]byte, 512)))
	r = run(t, lu, n, cdbRW(opVerify10, 0, 1, 0x02), bad)
	p = expectSense(t, r, SenseMiscompare, ascMiscompare)
	if !p.valid || p.info != 0 || r.SenseLen != 20 {
		t.Fatalf("descriptor information: % x", r.SenseData())
	}
}
