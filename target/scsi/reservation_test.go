package scsi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func expectConflict(t testing.TB, r Response) {
	t.Helper()
	if r.Status != StatusReservationConflict || r.SenseLen != 0 || r.DataLen != 0 {
		t.Fatalf("status %#x sense %d data %d, want RESERVATION CONFLICT without sense or data",
			r.Status, r.SenseLen, r.DataLen)
	}
}

func reportLUNsCDB() []byte {
	c := make([]byte, 16)
	c[0] = opReportLUNs
	binary.BigEndian.PutUint32(c[6:10], 64)
	return c
}

// The transition function alone (SPC-2 "RESERVE(10)", "RELEASE(10)").
func TestResStateNext_SPC2(t *testing.T) {
	a := nexusKey{initiator: "iqn.a", isid: [6]byte{1}}
	b := nexusKey{initiator: "iqn.a", isid: [6]byte{2}} // same name, other port
	free := resState{}
	byA := resState{held: true, holder: a}
	for _, c := range []struct {
		name     string
		s        resState
		ev       resEvent
		want     resState
		conflict bool
	}{
		{"reserve free", free, resEvent{resReserve, a}, byA, false},
		{"reserve again", byA, resEvent{resReserve, a}, byA, false},
		{"reserve other", byA, resEvent{resReserve, b}, byA, true},
		{"release holder", byA, resEvent{resRelease, a}, free, false},
		{"release other", byA, resEvent{resRelease, b}, byA, false},
		{"release free", free, resEvent{resRelease, a}, free, false},
		{"reset", byA, resEvent{kind: resReset}, free, false},
		{"loss holder", byA, resEvent{resNexusLoss, a}, free, false},
		{"loss other", byA, resEvent{resNexusLoss, b}, byA, false},
	} {
		got, conflict := c.s.next(c.ev)
		if got != c.want || conflict != c.conflict {
			t.Errorf("%s: got %+v conflict %v, want %+v %v", c.name, got, conflict, c.want, c.conflict)
		}
	}
	if byA.conflicts(a) || !byA.conflicts(b) || free.conflicts(a) {
		t.Fatal("conflicts")
	}
}

// SPC-2 reservations between two I_T nexuses (libiscsi
// Reserve6.Simple/2Initiators): a repeated RESERVE by the holder is GOOD, the
// other's RESERVE is RESERVATION CONFLICT, its RELEASE a GOOD no-op; the
// other nexus gets RESERVATION CONFLICT for MODE SENSE, TEST UNIT READY,
// READ, WRITE (which writes nothing), ... but INQUIRY, REPORT LUNS, REQUEST
// SENSE, REPORT SUPPORTED OPERATION CODES and PREVENT ALLOW MEDIUM REMOVAL
// with PREVENT=0 go through; after the holder's RELEASE the other can
// reserve. RESERVE(6)/(10) and RELEASE(6)/(10) are interchangeable.
func TestReserveRelease_SPC2(t *testing.T) {
	for _, ops := range [][2]byte{{opReserve6, opRelease6}, {opReserve10, opRelease10}, {opReserve6, opRelease10}} {
		lu := newTestLU(t)
		// Same initiator name, different ISIDs: two I_T nexuses.
		a, b := newNexus(t, lu), newNexus(t, lu)
		reserve, release := cdb6(ops[0]), cdb6(ops[1])
		expectGood(t, run(t, lu, a, reserve, nil))
		expectGood(t, run(t, lu, a, reserve, nil))
		expectConflict(t, run(t, lu, b, reserve, nil))
		expectGood(t, run(t, lu, b, release, nil))
		expectGood(t, run(t, lu, a, modeSense6(0, pageAllPages, pcCurrent, 255), nil))
		expectGood(t, run(t, lu, a, cdbRW(opWrite10, 1, 1, 0), pattern(512, 1)))

		for _, c := range [][]byte{
			modeSense6(0, pageAllPages, pcCurrent, 255), cdb6(opTestUnitReady), cdbRW(opRead10, 1, 1, 0),
			cdbRW(opRead16, 1, 1, 0), cdbRW(opVerify10, 1, 1, 0), cdbRW(opSyncCache10, 0, 0, 0),
			cdb6(opStartStopUnit, 0, 0, 0, 1), cdb6(opPreventAllow, 0, 0, 0, 1), cdb6(opReadCapacity10),
			cdbPreFetch(opPreFetch10, 0, 1, false, 0), cdbGetLBAStatus(0, 24),
			cdbReadDefect(false, false, false, 0, 0, 32),
		} {
			expectConflict(t, run(t, lu, b, c, nil))
		}
		for _, c := range []struct {
			cdb  []byte
			data []byte
		}{{cdbRW(opWrite10, 1, 1, 0), pattern(512, 2)}, {cdbRW(opWriteVerify10, 1, 1, 0x02), pattern(512, 2)},
			{cdbORWrite(1, 1, 0), pattern(512, 2)}, {modeSelect6(cachingPage(true)), cachingPage(true)}} {
			expectConflict(t, run(t, lu, b, c.cdb, c.data))
		}
		r, d := runData(t, lu, a, cdbRW(opRead10, 1, 1, 0), nil)
		expectGood(t, r)
		if !bytes.Equal(d, pattern(512, 1)) {
			t.Fatal("a conflicting WRITE changed the medium")
		}
		for _, c := range [][]byte{cdb6(opInquiry, 0, 0, 0, 96), cdb6(opInquiry, 1, vpdDeviceID, 0, 255),
			reportLUNsCDB(), cdb6(opRequestSense, 0, 0, 0, 18), rsoc(false, 0, 0, 0, 4096),
			cdb6(opPreventAllow, 0, 0, 0, 0)} {
			expectGood(t, run(t, lu, b, c, nil))
		}

		expectGood(t, run(t, lu, a, release, nil))
		expectGood(t, run(t, lu, b, cdb6(opTestUnitReady), nil))
		expectGood(t, run(t, lu, b, reserve, nil))
		expectConflict(t, run(t, lu, a, cdb6(opTestUnitReady), nil))
		expectGood(t, run(t, lu, b, release, nil))
		expectGood(t, run(t, lu, a, cdb6(opTestUnitReady), nil))
	}
}

// Unit attentions are reported before RESERVATION CONFLICT (SAM-5 "unit
// attention condition"); CDB errors too.
func TestReservationConflictOrder_SPC2(t *testing.T) {
	lu := newTestLU(t)
	a, b := newNexus(t, lu), newNexus(t, lu)
	expectGood(t, run(t, lu, a, cdb6(opReserve6), nil))
	expectGood(t, run(t, lu, a, modeSelect6(cachingPage(true)), cachingPage(true))) // UA 2Ah/01h for b
	expectSense(t, run(t, lu, b, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascModeParamsChanged)
	expectConflict(t, run(t, lu, b, cdb6(opTestUnitReady), nil))
	expectSense(t, run(t, lu, b, cdbRW(opRead10, lu.Capacity(), 1, 0), nil), SenseIllegalRequest, ascLBAOutOfRange)
	expectSense(t, run(t, lu, b, cdb6(0x48), nil), SenseIllegalRequest, ascInvalidOpcode)
}

// Reserved and unsupported fields: extent and third-party reservations
// (obsolete in SPC-2) are refused with INVALID FIELD IN CDB.
func TestReserveFields_SPC2(t *testing.T) {
	lu := newTestLU(t)
	n := newNexus(t, lu)
	expectInvalidCDB(t, run(t, lu, n, cdb6(opReserve6, 0x01), nil), 1, 0)
	expectInvalidCDB(t, run(t, lu, n, cdb6(opRelease6, 0, 0, 0, 1), nil), 4, 0)
	expectInvalidCDB(t, run(t, lu, n, cdb6(opReserve10, 0x10), nil), 1, 4) // 3RDPTY
	expectInvalidCDB(t, run(t, lu, n, cdb6(opRelease10, 0x02), nil), 1, 1) // LONGID
	expectInvalidCDB(t, run(t, lu, n, cdb6(opReserve10, 0, 0, 0, 0, 0, 0, 0, 8), nil), 8, 3)
	if cmd := lu.Decode(cdb6(opReserve10)); cmd.Dir != DirNone || cmd.DataLen != 0 {
		t.Fatalf("RESERVE(10): %+v", cmd)
	}
	if res := lu.res.Load(); res != nil {
		t.Fatal("a refused RESERVE reserved the LU")
	}
}

// The reservation is released by a logical unit reset, a target warm or cold
// reset, and the loss of the holder's I_T nexus, but not by the loss of
// another I_T nexus (libiscsi Reserve6.LUNReset, TargetWarmReset,
// TargetColdReset, Logout, ITNexusLoss).
func TestReservationReleased_SPC2(t *testing.T) {
	tgtLU := newTestLU(t)
	tgt, err := NewTarget("iqn.2024-01.test:tgt", []*LU{tgtLU})
	if err != nil {
		t.Fatal(err)
	}
	newN := func(isid byte) *Nexus {
		n := &Nexus{InitiatorName: "iqn.2024-01.test:init", ISID: [6]byte{isid}, TargetName: tgt.Name(), TPGT: 1}
		tgt.Attach(n)
		return n
	}
	// drain clears unit attentions until TEST UNIT READY is GOOD or a
	// conflict.
	drain := func(n *Nexus) Response {
		for {
			r := run(t, tgtLU, n, cdb6(opTestUnitReady), nil)
			if r.Status == StatusCheckCondition && parseSense(t, r.SenseData()).key == SenseUnitAttention {
				continue
			}
			return r
		}
	}
	for _, c := range []struct {
		name    string
		release func(holder, other *Nexus) *Nexus // returns the holder's nexus afterwards
	}{
		{"LU reset", func(h, o *Nexus) *Nexus { tgtLU.Reset(o); return h }},
		{"warm reset", func(h, o *Nexus) *Nexus { tgt.Reset(ResetTargetWarm, h); return h }},
		{"cold reset", func(h, o *Nexus) *Nexus { tgt.Reset(ResetTargetCold, h); return h }},
		{"logout", func(h, o *Nexus) *Nexus { tgt.Detach(h); return newN(1) }},
		{"LU detach", func(h, o *Nexus) *Nexus { tgtLU.Detach(h); return h }},
	} {
		holder, other := newN(1), newN(2)
		drain(holder)
		drain(other)
		expectGood(t, run(t, tgtLU, holder, cdb6(opReserve6), nil))
		expectConflict(t, drain(other))
		// The loss of a non-holder changes nothing.
		third := newN(3)
		tgt.Detach(third)
		expectConflict(t, drain(other))
		holder = c.release(holder, other)
		if r := drain(other); r.Status != StatusGood {
			t.Fatalf("%s: not released (status %#x)", c.name, r.Status)
		}
		expectGood(t, run(t, tgtLU, other, cdb6(opReserve6), nil))
		expectConflict(t, drain(holder))
		expectGood(t, run(t, tgtLU, other, cdb6(opRelease6), nil))
		tgt.Detach(holder)
		tgt.Detach(other)
	}
}
