package scsi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

func rsoc(rctd bool, opts, op byte, sa uint16, alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1], c[2], c[3] = opMaintenanceIn, saReportSupportOps, opts, op
	if rctd {
		c[2] |= 0x80
	}
	binary.BigEndian.PutUint16(c[4:6], sa)
	binary.BigEndian.PutUint32(c[6:10], alloc)
	return c
}

type rsocDesc struct {
	op       byte
	sa       uint16
	servactv bool
	ctdp     bool
	cdbLen   int
}

func parseAllCommands(t *testing.T, d []byte, rctd bool) []rsocDesc {
	t.Helper()
	if int(binary.BigEndian.Uint32(d[0:4])) != len(d)-4 {
		t.Fatalf("COMMAND DATA LENGTH %d, have %d", binary.BigEndian.Uint32(d[0:4]), len(d)-4)
	}
	var out []rsocDesc
	for b := d[4:]; len(b) > 0; {
		e := rsocDesc{op: b[0], sa: binary.BigEndian.Uint16(b[2:4]), servactv: b[5]&1 != 0, ctdp: b[5]&2 != 0,
			cdbLen: int(binary.BigEndian.Uint16(b[6:8]))}
		if e.ctdp != rctd {
			t.Fatalf("op %#x: CTDP %v with RCTD %v", e.op, e.ctdp, rctd)
		}
		b = b[8:]
		if e.ctdp {
			if binary.BigEndian.Uint16(b[0:2]) != 0x0A {
				t.Fatalf("op %#x: timeouts descriptor length %#x", e.op, binary.BigEndian.Uint16(b[0:2]))
			}
			b = b[12:]
		}
		out = append(out, e)
	}
	return out
}

// SPC-4 "REPORT SUPPORTED OPERATION CODES": all-commands and
// one-command formats, RCTD, SERVACTV (libiscsi ReportSupportedOpcodes.*).
func TestReportSupportedOpcodes_SPC4_6_35(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	for _, rctd := range []bool{false, true} {
		r, d := runData(t, lu, n, rsoc(rctd, 0, 0, 0, 65535), nil)
		expectGood(t, r)
		all := parseAllCommands(t, d, rctd)
		if len(all) != len(opTable) {
			t.Fatalf("%d commands, want %d", len(all), len(opTable))
		}
		for i, e := range all {
			if i > 0 && (e.op < all[i-1].op || e.op == all[i-1].op && e.sa <= all[i-1].sa) {
				t.Fatalf("not sorted at %d", i)
			}
			if !e.servactv && e.sa != 0 {
				t.Fatalf("op %#x: SA without SERVACTV", e.op)
			}
			opts := byte(1)
			if e.servactv {
				opts = 2
			}
			r, one := runData(t, lu, n, rsoc(rctd, opts, e.op, e.sa, 65535), nil)
			expectGood(t, r)
			size := int(binary.BigEndian.Uint16(one[2:4]))
			if one[1]&0x07 != 0x03 || size != e.cdbLen || one[4] != e.op || (one[1]&0x80 != 0) != rctd {
				t.Fatalf("op %#x: one-command % x", e.op, one)
			}
			if e.servactv && one[5]&0x1F != byte(e.sa) {
				t.Fatalf("op %#x: service action not in usage data", e.op)
			}
			if rctd && len(one) != 4+size+12 || !rctd && len(one) != 4+size {
				t.Fatalf("op %#x: length %d", e.op, len(one))
			}
			// 001b with a service-action opcode and 002b without
			// one are INVALID FIELD IN CDB.
			wrong := byte(3) - opts
			expectInvalidCDB(t, run(t, lu, n, rsoc(false, wrong, e.op, e.sa, 65535), nil), 2, 2)
		}
	}
	// Unsupported commands: SUPPORT 001b.
	for _, q := range []struct {
		opts byte
		op   byte
		sa   uint16
	}{{3, 0x83, 0x01}, {2, opServiceActionIn, 0x13}, {3, 0x84, 0x04}, {2, opMaintenanceIn, 0x0A}, {1, 0x48, 0}} {
		r, d := runData(t, lu, n, rsoc(false, q.opts, q.op, q.sa, 64), nil)
		expectGood(t, r)
		if len(d) != 4 || d[1] != 0x01 {
			t.Fatalf("op %#x/%#x: % x", q.op, q.sa, d)
		}
	}
	expectInvalidCDB(t, run(t, lu, n, rsoc(false, 4, 0, 0, 64), nil), 2, 2)
}

// DPO/FUA usage bits agree with DPOFUA=1 in the mode parameter header
// (libiscsi Read10.DpoFua, Write10.DpoFua, Verify10.Dpo).
func TestUsageDPOFUA_SBC3(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	_, ms := runData(t, lu, n, modeSense6(0, pageAllPages, pcCurrent, 255), nil)
	if ms[2]&0x10 == 0 {
		t.Fatal("DPOFUA not set")
	}
	for op, want := range map[byte]byte{opRead10: 0x18, opWrite10: 0x18, opRead16: 0x18, opWrite12: 0x18,
		opVerify10: 0x10, opWriteVerify10: 0x10, opVerify16: 0x10} {
		_, one := runData(t, lu, n, rsoc(false, 1, op, 0, 64), nil)
		if one[5]&0x18 != want {
			t.Fatalf("op %#x: usage byte 1 %#x", op, one[5])
		}
	}
}

// The CDB usage data is exact (SPC-4 "one_command parameter data"): for every
// supported command, every bit that the usage data and ignore mask leave clear
// is rejected with a field pointer at that byte and at the most significant bit
// of its reserved field, and no other bit is.
func TestUsageDataMatchesDecoder_SPC4_6_35_3(t *testing.T) {
	for i := range opTable {
		e := &opTable[i]
		base := make([]byte, e.cdbLen)
		base[0] = e.op
		if e.hasSA {
			base[1] = e.sa
		}
		if err := checkReserved(base, e); err.failed() {
			t.Fatalf("%s: zero CDB rejected", e.name)
		}
		for by := 1; by < int(e.cdbLen); by++ {
			for bit := uint8(0); bit < 8; bit++ {
				if e.hasSA && by == 1 && bit < 5 {
					continue // the service action
				}
				c := append([]byte(nil), base...)
				c[by] |= 1 << bit
				mask := e.usage[by] | e.ignore[by]
				err := checkReserved(c, e)
				if mask&(1<<bit) != 0 {
					if err.failed() {
						t.Errorf("%s byte %d bit %d: in usage/ignore mask but rejected", e.name, by, bit)
					}
					continue
				}
				if err.asc != ascInvalidFieldInCDB || err.sks[1] != 0 || int(err.sks[2]) != by {
					t.Errorf("%s byte %d bit %d: not rejected at that byte: %+v", e.name, by, bit, err)
					continue
				}
				want := bit
				for want < 7 && e.cont[by]&(1<<want) != 0 {
					want++
				}
				if top := err.sks[0] & 7; top != want || mask&(1<<want) != 0 {
					t.Errorf("%s byte %d bit %d: bit pointer %d, want %d", e.name, by, bit, top, want)
				}
			}
		}
	}
	// And Decode applies it.
	lu := newTestLU(t)
	c := cdbRW(opRead10, 0, 1, 0)
	c[1] = 0x20
	if cmd := lu.Decode(c); cmd.err != invalidCDB(1, 7) {
		t.Fatalf("RDPROTECT=001b: %+v", cmd.err)
	}
}

// Deliberately unimplemented commands fail with INVALID COMMAND OPERATION
// CODE so that conformance suites skip them: EXTENDED COPY (LID4), RECEIVE
// COPY RESULTS (FAILED SEGMENT DETAILS), SANITIZE, WRITE ATOMIC (16), FORMAT
// UNIT, ... (UNMAP on a fully provisioned LU: TestProvisioningOpcodes).
func TestUnsupportedCommands_SPC4_4_2_5(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	for _, c := range [][]byte{
		{0x83, 0x01}, {0x84, 0x04},
		{0x48}, {0x9E, 0x13}, {0x9C}, {0x04}, {0xA3, 0x0A}, {0xA3, 0x0D},
		{0x1D}, {0x4D}, {0xFF},
	} {
		cdb := make([]byte, 16)
		copy(cdb, c)
		cmd := lu.Decode(cdb)
		if cmd.Valid() || cmd.Dir != DirNone || cmd.DataLen != 0 {
			t.Fatalf("% x decoded %+v", c, cmd)
		}
		expectSense(t, run(t, lu, n, cdb, nil), SenseIllegalRequest, ascInvalidOpcode)
	}
	// Short CDB slices and the zero Command.
	expectSense(t, run(t, lu, n, []byte{opRead16, 0, 0}, nil), SenseIllegalRequest, ascInvalidOpcode)
	expectSense(t, run(t, lu, n, nil, nil), SenseIllegalRequest, ascInvalidOpcode)
	var zero Command
	expectSense(t, lu.Execute(t.Context(), n, &zero, nil), SenseIllegalRequest, ascInvalidOpcode)
}

// The VPD pages agree with the supported commands (libiscsi checks several
// of these pairs), on a thin provisioned LU (its device can deallocate) and
// a fully provisioned one: Block Limits MAXIMUM COMPARE AND WRITE LENGTH and
// MAXIMUM WRITE SAME LENGTH are set (both commands are always supported), the
// UNMAP fields only while UNMAP is, the atomic fields stay 0 while WRITE
// ATOMIC (16) is unsupported (SBC-3 "Block Limits VPD page"); MAXIMUM
// PREFETCH LENGTH is 0 (no limit) with PRE-FETCH supported; and the Logical
// Block Provisioning page and READ CAPACITY (16) claim unmapping (LBPU,
// LBPWS, LBPME, LBPRZ; never LBPWS10) exactly when UNMAP is supported.
func TestVPDMatchesOpcodes_SBC3(t *testing.T) {
	for _, thin := range []bool{true, false} {
		t.Run(fmt.Sprintf("thin=%v", thin), func(t *testing.T) {
			var opts []luOpt
			if !thin {
				opts = append(opts, fullyProvisioned(1<<20, 512))
			}
			lu := newTestLU(t, opts...)
			n := newNexus(t, lu)
			supported := func(op byte, sa uint16) bool {
				opts := byte(1)
				if _, _, ok := serviceActionField(op); ok {
					opts = 2
				}
				_, d := runData(t, lu, n, rsoc(false, opts, op, sa, 64), nil)
				return d[1]&0x07 == 0x03
			}
			bl := vpd(t, lu, n, vpdBlockLimits)
			zero := func(name string, b []byte) {
				t.Helper()
				if !bytes.Equal(b, make([]byte, len(b))) {
					t.Errorf("%s not zero: % x", name, b)
				}
			}
			if !supported(opCompareAndWrite, 0) || bl[5] == 0 {
				t.Fatalf("COMPARE AND WRITE supported %v, MAXIMUM COMPARE AND WRITE LENGTH %d", supported(opCompareAndWrite, 0), bl[5])
			}
			if supported(opUnmap, 0) != thin {
				t.Fatalf("UNMAP supported %v", !thin)
			}
			if thin {
				if binary.BigEndian.Uint32(bl[20:24]) == 0 || binary.BigEndian.Uint32(bl[24:28]) == 0 {
					t.Fatalf("UNMAP limits % x", bl[20:28])
				}
			} else {
				zero("UNMAP limits", bl[20:28])
				zero("UNMAP granularity", bl[28:36])
			}
			if !supported(opWriteSame10, 0) || !supported(opWriteSame16, 0) || binary.BigEndian.Uint64(bl[36:44]) == 0 {
				t.Fatalf("WRITE SAME: MAXIMUM WRITE SAME LENGTH % x", bl[36:44])
			}
			if supported(0x9C, 0) {
				t.Fatal("WRITE ATOMIC (16) supported: update this test")
			}
			zero("atomic fields", bl[44:64])
			if !supported(opPreFetch10, 0) || !supported(opPreFetch16, 0) {
				t.Fatal("PRE-FETCH not supported")
			}
			zero("MAXIMUM PREFETCH LENGTH", bl[16:20])
			if !supported(opServiceActionIn, saGetLBAStatus) {
				t.Fatal("GET LBA STATUS not supported")
			}
			lbp := vpd(t, lu, n, vpdLBProvisioning)
			if got := lbp[5] == 0xC4; got != thin || (!thin && lbp[5] != 0) { // LBPU, LBPWS, LBPRZ
				t.Fatalf("LBP page: % x", lbp)
			}
			rc16 := make([]byte, 16)
			rc16[0], rc16[1], rc16[13] = opServiceActionIn, saReadCapacity16, 32
			_, rc := runData(t, lu, n, rc16, nil)
			if got := rc[14]&0xC0 == 0xC0; got != thin || (!thin && rc[14] != 0) {
				t.Fatalf("READ CAPACITY (16) LBPME/LBPRZ: % x", rc)
			}
		})
	}
}
