package scsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"hastor/blockdev"
)

// SPC-4 "TEST UNIT READY"; SAM-5 "unit attention condition": a new I_T nexus
// first sees POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
func TestTestUnitReady_SPC4_6_47(t *testing.T) {
	lu := newTestLU(t)
	n := &Nexus{InitiatorName: "iqn.a", TargetName: "iqn.t"}
	lu.Attach(n)
	expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
	expectGood(t, run(t, lu, n, cdb6(opTestUnitReady), nil))
	// Reserved bytes 1-4 must be zero.
	expectInvalidCDB(t, run(t, lu, n, cdb6(opTestUnitReady, 0, 0, 1), nil), 3, 0)
}

// SAM-5 "NACA bit": NACA=1 without ACA support is INVALID FIELD IN CDB.
func TestControlByteNACA_SAM5(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	expectInvalidCDB(t, run(t, lu, n, cdb6(opTestUnitReady, 0, 0, 0, 0, 0x04), nil), 5, 2)
	c := cdbRW(opRead10, 0, 1, 0)
	c[9] = 0x04
	expectInvalidCDB(t, run(t, lu, n, c, nil), 9, 2)
	// Vendor-specific control bits are ignored.
	expectGood(t, run(t, lu, n, cdb6(opTestUnitReady, 0, 0, 0, 0, 0xC0), nil))
}

// SAM-5 "unit attention condition" rules: reported before any
// command but INQUIRY, REPORT LUNS and REQUEST SENSE, and in precedence to
// CDB errors; REQUEST SENSE reports and clears it.
func TestUnitAttentionRules_SAM5_5_14(t *testing.T) {
	lu := newTestLU(t)
	n := &Nexus{InitiatorName: "iqn.a", TargetName: "iqn.t"}
	lu.Attach(n)
	// INQUIRY and REPORT LUNS: processed, UA kept.
	expectGood(t, run(t, lu, n, cdb6(opInquiry, 0, 0, 0, 96), nil))
	rl := make([]byte, 16)
	rl[0] = opReportLUNs
	binary.BigEndian.PutUint32(rl[6:10], 64)
	expectGood(t, run(t, lu, n, rl, nil))
	// A CDB error loses to the UA, which is then cleared.
	bad := cdb6(opTestUnitReady, 0xFF)
	expectSense(t, run(t, lu, n, bad, nil), SenseUnitAttention, ascPowerOnResetOccurred)
	expectInvalidCDB(t, run(t, lu, n, bad, nil), 1, 7)
	// Unsupported operation codes too.
	lu.Reset(nil)
	expectSense(t, run(t, lu, n, cdb6(0x48), nil), SenseUnitAttention, ascBusDeviceReset)
	expectSense(t, run(t, lu, n, cdb6(0x48), nil), SenseIllegalRequest, ascInvalidOpcode)
	// REQUEST SENSE reports and clears.
	lu.Reset(nil)
	r, d := runData(t, lu, n, cdb6(opRequestSense, 0, 0, 0, 252), nil)
	expectGood(t, r)
	if p := parseSense(t, d); p.key != SenseUnitAttention || p.asc != ascBusDeviceReset {
		t.Fatalf("REQUEST SENSE returned %#x/%04x", p.key, uint16(p.asc))
	}
	expectGood(t, run(t, lu, n, cdb6(opTestUnitReady), nil))
}

// SPC-4 "REQUEST SENSE": NO SENSE when nothing is pending; DESC=1
// gives descriptor format; allocation length truncates.
func TestRequestSense_SPC4_6_39(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	r, d := runData(t, lu, n, cdb6(opRequestSense, 0, 0, 0, 252), nil)
	expectGood(t, r)
	if len(d) != 18 || d[0] != 0x70 || d[2] != 0 || d[12] != 0 || d[13] != 0 {
		t.Fatalf("fixed NO SENSE: % x", d)
	}
	r, d = runData(t, lu, n, cdb6(opRequestSense, 1, 0, 0, 252), nil)
	expectGood(t, r)
	if len(d) != 8 || d[0] != 0x72 || d[1] != 0 || d[7] != 0 {
		t.Fatalf("descriptor NO SENSE: % x", d)
	}
	r, d = runData(t, lu, n, cdb6(opRequestSense, 0, 0, 0, 4), nil)
	expectGood(t, r)
	if len(d) != 4 {
		t.Fatalf("allocation length 4 returned %d bytes", len(d))
	}
}

// SPC-4 "standard INQUIRY data".
func TestInquiryStandard_SPC4_6_4_2(t *testing.T) {
	lu := newTestLU(t, func(c *LUConfig) { c.Vendor, c.Product, c.Revision = "ACME", "Volume", "42" })
	n := newNexus(t, lu)
	r, d := runData(t, lu, n, cdb6(opInquiry, 0, 0, 1, 4), nil) // 260 bytes
	expectGood(t, r)
	if len(d) != 96 || int(d[4]) != len(d)-5 {
		t.Fatalf("length %d, additional length %d", len(d), d[4])
	}
	if d[0] != 0 || d[1] != 0 || d[2] != 6 || d[3] != 0x12 || d[5] != 0x08 || d[7] != 0x02 {
		t.Fatalf("bytes 0-7: % x", d[:8])
	}
	if string(d[8:16]) != "ACME    " || string(d[16:32]) != "Volume          " || string(d[32:36]) != "42  " {
		t.Fatalf("identification %q %q %q", d[8:16], d[16:32], d[32:36])
	}
	want := []uint16{0x00A0, 0x0960, 0x0460, 0x04C0}
	for i, v := range want {
		if got := binary.BigEndian.Uint16(d[58+2*i:]); got != v {
			t.Fatalf("version descriptor %d = %#04x, want %#04x", i, got, v)
		}
	}
	// Allocation length truncates without error (SPC-4 "allocation length").
	for _, alloc := range []int{0, 1, 5, 36, 95} {
		r, d := runData(t, lu, n, cdb6(opInquiry, 0, 0, 0, byte(alloc)), nil)
		expectGood(t, r)
		if len(d) != alloc {
			t.Fatalf("alloc %d: got %d bytes", alloc, len(d))
		}
	}
}

// SPC-4 "INQUIRY": EVPD=0 with PAGE CODE ≠ 0 is INVALID FIELD IN CDB, and so
// is an unsupported VPD page; CMDDT (obsolete) is treated as reserved.
func TestInquiryInvalid_SPC4_6_4_1(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	expectInvalidCDB(t, run(t, lu, n, cdb6(opInquiry, 0, 0x80, 0, 255), nil), 2, 7)
	expectInvalidCDB(t, run(t, lu, n, cdb6(opInquiry, 1, 0x81, 0, 255), nil), 2, 7)
	expectInvalidCDB(t, run(t, lu, n, cdb6(opInquiry, 2, 0, 0, 255), nil), 1, 1)
}

func vpd(t *testing.T, lu *LU, n *Nexus, page byte) []byte {
	t.Helper()
	r, d := runData(t, lu, n, cdb6(opInquiry, 1, page, 0x10, 0), nil)
	expectGood(t, r)
	if len(d) < 4 || d[1] != page || int(binary.BigEndian.Uint16(d[2:4]))+4 != len(d) {
		t.Fatalf("VPD %02xh: bad header or length: % x", page, d)
	}
	return d
}

// SPC-4 "Supported VPD Pages": every page listed in page 00h can be read, in
// ascending order, and the page lengths match (libiscsi Inquiry.SupportedVPD).
func TestInquiryVPDPages_SPC4_7_8(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	sup := vpd(t, lu, n, vpdSupported)[4:]
	if !bytes.Equal(sup, []byte{0x00, 0x80, 0x83, 0x86, 0x8F, 0xB0, 0xB1, 0xB2}) {
		t.Fatalf("supported pages % x", sup)
	}
	for _, p := range sup {
		vpd(t, lu, n, p)
	}
	if s := vpd(t, lu, n, vpdSerial)[4:]; string(s) != lu.Identity().Serial {
		t.Fatalf("serial %q, want %q", s, lu.Identity().Serial)
	}
	ext := vpd(t, lu, n, vpdExtendedInquiry)
	if len(ext) != 64 || ext[5] != 0x01 || ext[6] != 0x01 || ext[13] != SenseMax {
		t.Fatalf("extended INQUIRY: % x", ext[:16])
	}
	bdc := vpd(t, lu, n, vpdBlockDevChars)
	if len(bdc) != 64 || binary.BigEndian.Uint16(bdc[4:6]) != 1 {
		t.Fatalf("block device characteristics: % x", bdc[:8])
	}
	lbp := vpd(t, lu, n, vpdLBProvisioning)
	if len(lbp) != 8 || lbp[5] != 0xC4 || lbp[6] != 0x02 { // thin: LBPU LBPWS LBPRZ
		t.Fatalf("logical block provisioning: % x", lbp)
	}
}

// SBC-3 "Block Limits VPD page": page length 3Ch, MAXIMUM TRANSFER LENGTH from
// MaxTransferBytes, the COMPARE AND WRITE, UNMAP and WRITE SAME limits.
func TestInquiryBlockLimits_SBC3_6_5_3(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		lu := newTestLU(t, withBlockSize(bs), withMaxTransfer(1<<20))
		n := newNexus(t, lu)
		b := vpd(t, lu, n, vpdBlockLimits)
		if len(b) != 64 {
			t.Fatalf("bs %d: length %d", bs, len(b))
		}
		if g := binary.BigEndian.Uint16(b[6:8]); int(g) != 4096/bs {
			t.Fatalf("bs %d: OPTIMAL TRANSFER LENGTH GRANULARITY %d", bs, g)
		}
		if m := binary.BigEndian.Uint32(b[8:12]); int(m) != (1<<20)/bs {
			t.Fatalf("bs %d: MAXIMUM TRANSFER LENGTH %d", bs, m)
		}
		// MAXIMUM COMPARE AND WRITE LENGTH: 255, or half MAXIMUM
		// TRANSFER LENGTH (256 blocks of 4096 bytes).
		if wantCAW := map[int]byte{512: 255, 4096: 128}[bs]; b[5] != wantCAW {
			t.Fatalf("bs %d: MAXIMUM COMPARE AND WRITE LENGTH %d, want %d", bs, b[5], wantCAW)
		}
		want := []uint64{
			uint64(binary.BigEndian.Uint32(b[20:24])), uint64(binary.BigEndian.Uint32(b[24:28])),
			uint64(binary.BigEndian.Uint32(b[28:32])), binary.BigEndian.Uint64(b[36:44]),
		}
		if !slices.Equal(want, []uint64{512 << 20 / uint64(bs), 256, 4096 / uint64(bs), 16 << 20 / uint64(bs)}) {
			t.Fatalf("bs %d: unmap/write same fields % x", bs, b[20:44])
		}
	}
}

// SPC-4 "Device Identification VPD page": NAA and T10 vendor ID designators
// from the VolumeID only; relative target port and SCSI name strings for
// the target port (PIV=1, iSCSI) and target device.
func TestInquiryDeviceID_SPC4_7_8_6(t *testing.T) {
	lu := newTestLU(t)
	tgt, err := NewTarget("iqn.2024-01.test:tgt", []*LU{lu})
	if err != nil {
		t.Fatal(err)
	}
	n := &Nexus{InitiatorName: "iqn.a", TargetName: tgt.Name(), RelativeTargetPort: 3, TPGT: 2}
	tgt.Attach(n)
	d := vpd(t, lu, n, vpdDeviceID)[4:]
	type desig struct {
		b0, b1 byte
		val    []byte
	}
	var got []desig
	for len(d) > 0 {
		if len(d) < 4 || len(d) < 4+int(d[3]) {
			t.Fatalf("truncated designator: % x", d)
		}
		got = append(got, desig{d[0], d[1], d[4 : 4+d[3]]})
		d = d[4+d[3]:]
	}
	id := lu.Identity()
	want := []desig{
		{0x01, 0x03, id.NAA[:]},
		{0x02, 0x01, []byte("HASTOR  " + id.Serial)},
		{0x51, 0x94, []byte{0, 0, 0, 3}},
		{0x53, 0x98, []byte("iqn.2024-01.test:tgt,t,0x0002\x00\x00\x00")},
		{0x53, 0xA8, []byte("iqn.2024-01.test:tgt\x00\x00\x00\x00")},
	}
	if len(got) != len(want) {
		t.Fatalf("%d designators, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].b0 != want[i].b0 || got[i].b1 != want[i].b1 || !bytes.Equal(got[i].val, want[i].val) {
			t.Fatalf("designator %d = %02x %02x %q, want %02x %02x %q", i,
				got[i].b0, got[i].b1, got[i].val, want[i].b0, want[i].b1, want[i].val)
		}
		if len(got[i].val)%4 != 0 && got[i].b1&0x0F == desigSCSIName {
			t.Fatalf("SCSI name string not padded to 4: %d", len(got[i].val))
		}
	}
	// Long target names: the page stays within 255 bytes and keeps the LU
	// designators.
	for _, l := range []int{80, 100, 150, 223} {
		name := "iqn.2024-01.test:" + strings.Repeat("x", l-17)
		lx := newTestLU(t)
		if _, err := NewTarget(name, []*LU{lx}); err != nil {
			t.Fatal(err)
		}
		d := vpd(t, lx, &Nexus{TargetName: name, TPGT: 1}, vpdDeviceID)
		if len(d) > 255 || !bytes.Equal(d[8:24], id.NAA[:]) {
			t.Fatalf("name length %d: page of %d bytes", l, len(d))
		}
	}
	// Another LU with the same VolumeID (e.g. on the peer node) reports
	// the same LU designators.
	lu2 := newTestLU(t)
	d2 := vpd(t, lu2, newNexus(t, lu2), vpdDeviceID)
	if !bytes.Equal(d2[4:4+20+28], vpd(t, lu, n, vpdDeviceID)[4:4+20+28]) {
		t.Fatal("LU designators differ between LUs of the same volume")
	}
}

// DeriveIdentity: NAA 6 with the CID-shaped company ID, deterministic,
// distinct per volume.
func TestDeriveIdentity(t *testing.T) {
	a := DeriveIdentity("vol-a")
	if a != DeriveIdentity("vol-a") {
		t.Fatal("not deterministic")
	}
	if a == DeriveIdentity("vol-b") || a.NAA == DeriveIdentity("vol-b").NAA {
		t.Fatal("different volumes share an identity")
	}
	if a.NAA[0]>>4 != 6 {
		t.Fatalf("NAA %x", a.NAA[0]>>4)
	}
	cid := uint32(a.NAA[0]&0x0F)<<20 | uint32(a.NAA[1])<<12 | uint32(a.NAA[2])<<4 | uint32(a.NAA[3]>>4)
	if cid != 0x0AC0DE {
		t.Fatalf("company ID %06x", cid)
	}
	if len(a.Serial) != 16 || strings.ToUpper(a.Serial) != a.Serial || strings.Trim(a.Serial, "0123456789ABCDEF") != "" {
		t.Fatalf("serial %q", a.Serial)
	}
	// Golden value: the identity must never change across releases, or
	// initiators would see a different disk after an upgrade.
	if got := fmt.Sprintf("%X/%s", a.NAA, a.Serial); got != goldenIdentityVolA {
		t.Fatalf("DeriveIdentity(vol-a) = %s, want %s", got, goldenIdentityVolA)
	}
}

const goldenIdentityVolA = "60AC0DEFC79706A3182388CDB4A84DE1/ED1F814FC83530C6"

// SPC-4 "REPORT LUNS": SELECT REPORT, ALLOCATION LENGTH ≥ 16, LUN
// encoding (peripheral below 256, flat space above).
func TestReportLUNs_SPC4_6_33(t *testing.T) {
	lus := make([]*LU, 300)
	lus[0], lus[5], lus[299] = newTestLU(t), newTestLU(t), newTestLU(t)
	tgt, err := NewTarget("iqn.2024-01.test:tgt", lus)
	if err != nil {
		t.Fatal(err)
	}
	n := &Nexus{InitiatorName: "iqn.a", TargetName: tgt.Name()}
	tgt.Attach(n)
	rl := func(sel byte, alloc uint32) []byte {
		c := make([]byte, 16)
		c[0], c[2] = opReportLUNs, sel
		binary.BigEndian.PutUint32(c[6:10], alloc)
		return c
	}
	want := []byte{0, 0, 0, 24, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 5, 0, 0, 0, 0, 0, 0,
		0x41, 0x2B, 0, 0, 0, 0, 0, 0}
	for _, sel := range []byte{0, 2} {
		for _, lu := range []*LU{tgt.LU(0), tgt.LU(299), tgt.LU(7)} {
			r, d := runData(t, lu, n, rl(sel, 512), nil)
			expectGood(t, r)
			if !bytes.Equal(d, want) {
				t.Fatalf("select %d: % x", sel, d)
			}
		}
	}
	r, d := runData(t, tgt.LU(0), n, rl(1, 512), nil)
	expectGood(t, r)
	if !bytes.Equal(d, make([]byte, 8)) {
		t.Fatalf("select 1 (well-known only): % x", d)
	}
	expectInvalidCDB(t, run(t, tgt.LU(0), n, rl(3, 512), nil), 2, 7)
	expectInvalidCDB(t, run(t, tgt.LU(0), n, rl(0, 15), nil), 6, 7)
	// Truncation.
	r, d = runData(t, tgt.LU(0), n, rl(0, 16), nil)
	expectGood(t, r)
	if len(d) != 16 || d[3] != 24 {
		t.Fatalf("truncated: % x", d)
	}
	for lun, field := range map[uint64][8]byte{0: {}, 5: {0, 5}, 299: {0x41, 0x2B}, 16383: {0x7F, 0xFF}} {
		if EncodeLUN(lun) != field {
			t.Fatalf("EncodeLUN(%d) = % x", lun, EncodeLUN(lun))
		}
		if got, ok := DecodeLUN(field); !ok || got != lun {
			t.Fatalf("DecodeLUN(% x) = %d %v", field, got, ok)
		}
	}
	if _, ok := DecodeLUN([8]byte{0, 1, 0, 1}); ok {
		t.Fatal("DecodeLUN accepted a second-level LUN")
	}
	if _, ok := DecodeLUN([8]byte{0x01, 1}); ok {
		t.Fatal("DecodeLUN accepted a bus identifier")
	}
}

// SPC-4 "standard INQUIRY data" (PERIPHERAL QUALIFIER 011b) and "REQUEST
// SENSE": an absent LUN answers INQUIRY and REQUEST SENSE, fails the rest with
// LOGICAL UNIT NOT SUPPORTED.
func TestAbsentLUN_SPC4(t *testing.T) {
	tgt, err := NewTarget("iqn.2024-01.test:tgt", []*LU{newTestLU(t)})
	if err != nil {
		t.Fatal(err)
	}
	n := &Nexus{InitiatorName: "iqn.a", TargetName: tgt.Name()}
	tgt.Attach(n)
	lu := tgt.LU(1)
	if lu != tgt.LU(NoLUN) || lu == tgt.LU(0) {
		t.Fatal("stand-in LU not shared or not distinct")
	}
	r, d := runData(t, lu, n, cdb6(opInquiry, 0, 0, 0, 96), nil)
	expectGood(t, r)
	if d[0] != 0x7F {
		t.Fatalf("peripheral byte %#x", d[0])
	}
	r, d = runData(t, lu, n, cdb6(opRequestSense, 0, 0, 0, 18), nil)
	expectGood(t, r)
	if p := parseSense(t, d); p.key != SenseIllegalRequest || p.asc != ascLUNotSupported {
		t.Fatalf("REQUEST SENSE: %#x/%04x", p.key, uint16(p.asc))
	}
	for _, c := range [][]byte{cdb6(opTestUnitReady), cdbRW(opRead10, 0, 1, 0), cdb6(0xFF)} {
		cmd := lu.Decode(c)
		if cmd.Dir != DirNone || cmd.DataLen != 0 || cmd.Valid() {
			t.Fatalf("op %#x decoded as %+v", c[0], cmd)
		}
		expectSense(t, run(t, lu, n, c, nil), SenseIllegalRequest, ascLUNotSupported)
	}
}

// NewTarget: an LU belongs to one target only.
func TestNewTargetErrors(t *testing.T) {
	lu := newTestLU(t)
	if _, err := NewTarget("iqn.x", []*LU{lu, lu}); !errors.Is(err, ErrLUInUse) {
		t.Fatalf("duplicate LU: %v", err)
	}
	if _, err := NewTarget("iqn.x", []*LU{lu}); err != nil {
		t.Fatalf("LU released after failed NewTarget: %v", err)
	}
	if _, err := NewTarget("iqn.y", []*LU{lu}); !errors.Is(err, ErrLUInUse) {
		t.Fatalf("LU in two targets: %v", err)
	}
	if _, err := NewTarget("", nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("empty name: %v", err)
	}
}

// NewLU validation names every bad field.
func TestNewLUConfig(t *testing.T) {
	_, err := NewLU(LUConfig{BlockSize: 1000, Vendor: "TOO LONG VENDOR", MaxTransferBytes: 100})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err %v", err)
	}
	for _, f := range []string{"Dev", "BlockSize", "VolumeID", "Vendor", "MaxTransferBytes"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not name %s: %v", f, err)
		}
	}
	_, err = NewLU(LUConfig{Dev: blockdev.NewMem(1<<20, 4096), BlockSize: 512, VolumeID: "v"})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("block size below device's: %v", err)
	}
}

// SAM-5 "logical unit reset": 29h/03h on every nexus, including the
// one that asked, and mode parameters back to their defaults.
func TestLUReset_SAM5_6_3_3(t *testing.T) {
	lu := newTestLU(t)
	a, b := newNexus(t, lu), newNexus(t, lu)
	expectGood(t, run(t, lu, a, modeSelect6(cachingPage(true)), cachingPage(true)))
	if !lu.mode.Load().WCE {
		t.Fatal("WCE not set")
	}
	expectSense(t, run(t, lu, b, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascModeParamsChanged)
	lu.Reset(a)
	if lu.mode.Load().WCE {
		t.Fatal("WCE not reset to default")
	}
	for _, n := range []*Nexus{a, b} {
		expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascBusDeviceReset)
		expectGood(t, run(t, lu, n, cdb6(opTestUnitReady), nil))
	}
}

// SAM-5 "hard reset" via TARGET WARM/COLD RESET (RFC 7143 §11.5.1).
func TestTargetReset_SAM5_6_3_2(t *testing.T) {
	lu0, lu1 := newTestLU(t), newTestLU(t)
	tgt, err := NewTarget("iqn.t", []*LU{lu0, lu1})
	if err != nil {
		t.Fatal(err)
	}
	n := &Nexus{InitiatorName: "iqn.a", TargetName: "iqn.t"}
	tgt.Attach(n)
	for _, lu := range []*LU{lu0, lu1} {
		expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
	}
	for kind, ua := range map[ResetKind]ascCode{ResetTargetWarm: ascBusDeviceReset, ResetTargetCold: ascPowerOnOccurred} {
		tgt.Reset(kind, n)
		for _, lu := range []*LU{lu0, lu1} {
			expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ua)
			expectGood(t, run(t, lu, n, cdb6(opTestUnitReady), nil))
		}
	}
}

// SAM-5 "I_T nexus loss": the initiator port sees I_T NEXUS LOSS
// OCCURRED when it logs in again with the same ISID; a new ISID sees the
// power-on UA.
func TestITNexusLoss_SAM5_6_3_4(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	lu.Detach(n)
	again := &Nexus{InitiatorName: n.InitiatorName, ISID: n.ISID, TargetName: n.TargetName, TPGT: n.TPGT}
	lu.Attach(again)
	expectSense(t, run(t, lu, again, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascITNexusLoss)
	expectGood(t, run(t, lu, again, cdb6(opTestUnitReady), nil))
	// Session reinstatement: the new session attaches before the old one
	// detaches. It sees one reset-class UA (the older one, 29h/00h, which
	// covers the nexus loss), then nothing.
	re := &Nexus{InitiatorName: n.InitiatorName, ISID: n.ISID, TargetName: n.TargetName, TPGT: n.TPGT}
	lu.Attach(re)
	lu.Detach(again)
	expectSense(t, run(t, lu, re, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
	expectGood(t, run(t, lu, re, cdb6(opTestUnitReady), nil))
	// Execute on a nexus that was never attached attaches it.
	lazy := &Nexus{InitiatorName: "iqn.lazy"}
	expectSense(t, run(t, lu, lazy, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
}

// The departed-nexus table is bounded.
func TestDepartedBounded(t *testing.T) {
	lu := newTestLU(t)
	for i := 0; i < maxDeparted+10; i++ {
		n := &Nexus{InitiatorName: fmt.Sprintf("iqn.%d", i)}
		lu.Attach(n)
		lu.Detach(n)
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if len(lu.mu.departed) != maxDeparted || len(lu.mu.departedOrder) != maxDeparted {
		t.Fatalf("departed %d/%d", len(lu.mu.departed), len(lu.mu.departedOrder))
	}
}

// Unit attention queue: deduplication and reset precedence.
func TestUAQueue(t *testing.T) {
	var q uaQueue
	q.add(ascModeParamsChanged)
	q.add(ascModeParamsChanged)
	if q.n != 1 {
		t.Fatalf("duplicate queued: %d", q.n)
	}
	q.add(ascBusDeviceReset)
	q.add(ascITNexusLoss)
	q.add(ascModeParamsChanged)
	var got []ascCode
	for a, ok := q.pop(); ok; a, ok = q.pop() {
		got = append(got, a)
	}
	if fmt.Sprint(got) != fmt.Sprint([]ascCode{ascBusDeviceReset, ascModeParamsChanged}) {
		t.Fatalf("got %04x", got)
	}
	for i := 0; i < 2*maxUA; i++ {
		q.add(ascCode(0x3F00 + i))
	}
	if q.n != maxUA {
		t.Fatalf("queue grew to %d", q.n)
	}
}

// A target with every LUN attaches and detaches a nexus in one pass.
func TestTargetManyLUNs(t *testing.T) {
	lus := make([]*LU, MaxLUNs)
	for i := range lus {
		lus[i] = newTestLU(t, withSize(4096, 512))
	}
	tgt, err := NewTarget("iqn.many", lus)
	if err != nil {
		t.Fatal(err)
	}
	n := &Nexus{InitiatorName: "iqn.a"}
	tgt.Attach(n)
	if m := n.itls.Load(); m == nil || len(*m) != MaxLUNs {
		t.Fatal("not attached to every LU")
	}
	expectSense(t, run(t, tgt.LU(MaxLUNs-1), n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
	tgt.Detach(n)
	if m := n.itls.Load(); len(*m) != 0 {
		t.Fatalf("%d LUs still attached", len(*m))
	}
}
