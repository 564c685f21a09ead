package scsi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// The persistent reservation state machine, step by step (SPC-4
// "persistent reservations"): registration rules, reservation ownership
// for each type, release, clear and preempt, with the generation and the
// unit attentions each transition produces.
func TestPRStep_SPC4(t *testing.T) {
	a, b, c := nexusKey{initiator: "a"}, nexusKey{initiator: "b"}, nexusKey{initiator: "c"}
	var s prState
	apply := func(req prOut) prOutcome {
		t.Helper()
		before := s.clone()
		n, out := s.step(req)
		// Every state survives the encoding a PRStore keeps.
		enc := encodePRState(&n)
		if back, err := decodePRState(enc); err != nil || back.differs(&n) || !bytes.Equal(encodePRState(&back), enc) {
			t.Fatalf("after %+v: the state does not survive encoding: %v", req, err)
		}
		if out.conflict || out.err.failed() {
			if n.generation != before.generation || len(n.regs) != len(before.regs) || n.held != before.held {
				t.Fatalf("refused %+v changed the state", req)
			}
		}
		s = n
		return out
	}
	ok := func(req prOut) []prUA {
		t.Helper()
		out := apply(req)
		if out.conflict || out.err.failed() {
			t.Fatalf("%+v: conflict %v, err %+v", req, out.conflict, out.err)
		}
		return out.uas
	}
	conflict := func(req prOut) {
		t.Helper()
		if out := apply(req); !out.conflict {
			t.Fatalf("%+v: want RESERVATION CONFLICT", req)
		}
	}

	// REGISTER: key 0 from an unregistered nexus; the registered key
	// afterwards. SA key 0 unregistered: nothing, no generation.
	conflict(prOut{sa: proutRegister, from: a, key: 5, saKey: 1})
	ok(prOut{sa: proutRegister, from: a, saKey: 0})
	if s.generation != 0 || len(s.regs) != 0 {
		t.Fatalf("empty REGISTER changed the state: %+v", s)
	}
	ok(prOut{sa: proutRegister, from: a, saKey: 1})
	conflict(prOut{sa: proutRegister, from: a, key: 2, saKey: 3})
	ok(prOut{sa: proutRegister, from: a, key: 1, saKey: 0x11})
	ok(prOut{sa: proutRegisterIgnore, from: b, key: 99, saKey: 2})
	ok(prOut{sa: proutRegisterIgnore, from: c, saKey: 3})
	if s.generation != 4 || len(s.regs) != 3 || s.regs[0].key != 0x11 {
		t.Fatalf("after registering: %+v", s)
	}

	// RESERVE needs a registration and its key; one holder; RESERVE of
	// the same type by the holder is a no-op.
	conflict(prOut{sa: proutReserve, from: nexusKey{initiator: "x"}, typ: prWriteExclusive})
	conflict(prOut{sa: proutReserve, from: a, key: 1, typ: prWriteExclusive})
	ok(prOut{sa: proutReserve, from: a, key: 0x11, typ: prWriteExclusive})
	ok(prOut{sa: proutReserve, from: a, key: 0x11, typ: prWriteExclusive})
	conflict(prOut{sa: proutReserve, from: a, key: 0x11, typ: prExclusiveAccess})
	conflict(prOut{sa: proutReserve, from: b, key: 2, typ: prWriteExclusive})
	if s.holderKey() != 0x11 || !s.isHolder(a) || s.isHolder(b) {
		t.Fatalf("holder: %+v", s)
	}
	// Access: Write Exclusive lets everyone read, only the holder write.
	if s.conflicts(b, prRead) || !s.conflicts(b, prWrite) || s.conflicts(a, prWrite) || s.conflicts(b, prAllowed) {
		t.Fatal("Write Exclusive access")
	}
	// RELEASE by a non-holder does nothing; a wrong type is an error.
	ok(prOut{sa: proutRelease, from: b, key: 2, typ: prWriteExclusive})
	if out := apply(prOut{sa: proutRelease, from: a, key: 0x11, typ: prExclusiveAccess}); out.err.asc != ascInvalidRelease {
		t.Fatalf("RELEASE of the wrong type: %+v", out)
	}
	if uas := ok(prOut{sa: proutRelease, from: a, key: 0x11, typ: prWriteExclusive}); len(uas) != 0 || s.held {
		t.Fatalf("RELEASE of Write Exclusive: held %v, UAs %v", s.held, uas)
	}

	// Registrants only: registrants have access; the holder leaving
	// releases it and the others get RESERVATIONS RELEASED.
	ok(prOut{sa: proutReserve, from: a, key: 0x11, typ: prExclusiveAccessRegs})
	if s.conflicts(b, prRead) || !s.conflicts(nexusKey{initiator: "x"}, prRead) {
		t.Fatal("Exclusive Access, Registrants Only access")
	}
	uas := ok(prOut{sa: proutRegister, from: a, key: 0x11})
	if s.held || len(uas) != 2 || uas[0] != (prUA{b, ascReservationsReleased}) {
		t.Fatalf("holder unregistered: held %v, UAs %v", s.held, uas)
	}
	ok(prOut{sa: proutRegister, from: a, saKey: 1})

	// All registrants: every registrant holds it, the key reported is 0,
	// and it lasts while any registrant is left.
	ok(prOut{sa: proutReserve, from: b, key: 2, typ: prWriteExclusiveAll})
	if !s.isHolder(a) || !s.isHolder(c) || s.holderKey() != 0 {
		t.Fatal("all registrants hold the reservation")
	}
	ok(prOut{sa: proutRegister, from: b, key: 2})
	if !s.held {
		t.Fatal("all-registrants reservation lost with one registrant")
	}
	ok(prOut{sa: proutRelease, from: c, key: 3, typ: prWriteExclusiveAll})
	if s.held {
		t.Fatal("all-registrants reservation not released by a registrant")
	}

	// PREEMPT: of registrations only (no reservation); of the holder,
	// taking its reservation with a new type.
	ok(prOut{sa: proutRegister, from: b, saKey: 2})
	gen := s.generation
	if out := apply(prOut{sa: proutPreempt, from: a, key: 1, typ: prWriteExclusive}); out.err.asc != ascInvalidFieldInParam {
		t.Fatalf("PREEMPT with key 0 and no reservation: %+v", out)
	}
	conflict(prOut{sa: proutPreempt, from: a, key: 1, saKey: 77, typ: prWriteExclusive})
	uas = ok(prOut{sa: proutPreempt, from: a, key: 1, saKey: 3, typ: prWriteExclusive})
	if s.reg(c) >= 0 || s.generation != gen+1 || len(uas) != 1 || uas[0] != (prUA{c, ascRegistrationsPreempted}) || s.held {
		t.Fatalf("PREEMPT of a registration: %+v, UAs %v", s, uas)
	}
	ok(prOut{sa: proutReserve, from: b, key: 2, typ: prWriteExclusive})
	uas = ok(prOut{sa: proutPreempt, from: a, key: 1, saKey: 2, typ: prExclusiveAccess})
	if !s.isHolder(a) || s.typ != prExclusiveAccess || s.reg(b) >= 0 || len(uas) != 1 || uas[0].nexus != b {
		t.Fatalf("PREEMPT of the holder: %+v, UAs %v", s, uas)
	}

	// CLEAR: everything goes; the others get RESERVATIONS PREEMPTED.
	ok(prOut{sa: proutRegister, from: b, saKey: 2})
	gen = s.generation
	uas = ok(prOut{sa: proutClear, from: a, key: 1})
	if !s.empty() || s.generation != gen+1 || len(uas) != 1 || uas[0] != (prUA{b, ascReservationsPreempted}) {
		t.Fatalf("CLEAR: %+v, UAs %v", s, uas)
	}
}

// cdbPROut builds PERSISTENT RESERVE OUT with its parameter list.
func cdbPROut(sa byte, typ prType, key, saKey uint64) (cdb, params []byte) {
	cdb = make([]byte, 16)
	cdb[0], cdb[1], cdb[2] = opPROut, sa, byte(typ)
	binary.BigEndian.PutUint32(cdb[5:9], prOutParamLen)
	params = make([]byte, prOutParamLen)
	binary.BigEndian.PutUint64(params[0:8], key)
	binary.BigEndian.PutUint64(params[8:16], saKey)
	return cdb, params
}

func cdbPRIn(sa byte, alloc uint16) []byte {
	c := make([]byte, 16)
	c[0], c[1] = opPRIn, sa
	binary.BigEndian.PutUint16(c[7:9], alloc)
	return c
}

// PERSISTENT RESERVE IN/OUT through the LU: parameter data formats, CDB and
// parameter list checks, conflicts of READ and WRITE from other I_T
// nexuses, the unit attention a preempted nexus sees, registrations that
// survive the I_T nexus, and SPC-2 RESERVE refused while registrations
// exist.
func TestPersistentReserve_SPC4(t *testing.T) {
	lu := newTestLU(t)
	a, b := newNexus(t, lu), newNexus(t, lu)
	prout := func(n *Nexus, sa byte, typ prType, key, saKey uint64) Response {
		c, p := cdbPROut(sa, typ, key, saKey)
		return run(t, lu, n, c, p)
	}
	expectGood(t, prout(a, proutRegisterIgnore, 0, 0, 0xA))
	expectGood(t, prout(b, proutRegister, 0, 0, 0xB))
	r, d := runData(t, lu, a, cdbPRIn(prinReadKeys, 100), nil)
	expectGood(t, r)
	if want := []byte{0, 0, 0, 2, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0xA, 0, 0, 0, 0, 0, 0, 0, 0xB}; !bytes.Equal(d, want) {
		t.Fatalf("READ KEYS: % x", d)
	}
	if _, d = runData(t, lu, a, cdbPRIn(prinReadKeys, 12), nil); len(d) != 12 || d[7] != 16 {
		t.Fatalf("truncated READ KEYS: % x", d)
	}
	_, d = runData(t, lu, a, cdbPRIn(prinReportCaps, 8), nil)
	if !bytes.Equal(d, []byte{0, 8, 0, 0x80, 0xEA, 0x01, 0, 0}) {
		t.Fatalf("REPORT CAPABILITIES: % x", d)
	}

	expectGood(t, prout(a, proutReserve, prExclusiveAccess, 0xA, 0))
	_, d = runData(t, lu, b, cdbPRIn(prinReadReservation, 100), nil)
	if len(d) != 24 || binary.BigEndian.Uint32(d[4:8]) != 16 || binary.BigEndian.Uint64(d[8:16]) != 0xA || d[21] != byte(prExclusiveAccess) {
		t.Fatalf("READ RESERVATION: % x", d)
	}
	_, d = runData(t, lu, b, cdbPRIn(prinReadFullStatus, 1000), nil)
	if tid := fmt.Sprintf("%s,i,0x%x\x00", a.InitiatorName, a.ISID[:]); !bytes.Contains(d, []byte(tid)) || d[8+12] != 0x01 {
		t.Fatalf("READ FULL STATUS: % x", d)
	}
	// Exclusive Access: b can neither read nor write; INQUIRY, TEST UNIT
	// READY and PERSISTENT RESERVE IN still work.
	expectConflict(t, run(t, lu, b, cdbRW(opRead10, 0, 1, 0), nil))
	expectConflict(t, run(t, lu, b, cdbRW(opWrite10, 0, 1, 0), fill(512, 1)))
	expectGood(t, run(t, lu, b, cdb6(opTestUnitReady), nil))
	expectGood(t, run(t, lu, b, cdb6(opInquiry, 0, 0, 0, 96), nil))
	expectGood(t, run(t, lu, a, cdbRW(opWrite10, 0, 1, 0), fill(512, 1)))
	// SPC-2 RESERVE and RELEASE conflict while registrations exist.
	expectConflict(t, run(t, lu, a, cdb6(opReserve6), nil))
	expectConflict(t, run(t, lu, a, cdb6(opRelease6), nil))

	// CDB and parameter list checks.
	c, p := cdbPROut(proutReserve, 0x2, 0xA, 0)
	expectInvalidCDB(t, run(t, lu, a, c, p), 2, 3)
	c[2] = 0x10 | byte(prWriteExclusive)
	expectInvalidCDB(t, run(t, lu, a, c, p), 2, 7)
	c, p = cdbPROut(proutRegister, 0, 0xA, 0xC)
	c[8] = 23
	expectSense(t, run(t, lu, a, c, p[:23]), SenseIllegalRequest, ascParamListLength)
	for _, bit := range []uint8{3, 2, 0} { // SPEC_I_PT, ALL_TG_PT, APTPL
		c, p = cdbPROut(proutRegister, 0, 0xA, 0xC)
		p[20] = 1 << bit
		expectInvalidParam(t, run(t, lu, a, c, p), 20, bit)
	}
	expectInvalidCDB(t, run(t, lu, a, cdbPRIn(0x04, 100), nil), 1, 4)
	c, p = cdbPROut(0x07, 0, 0xA, 0xB) // REGISTER AND MOVE
	expectInvalidCDB(t, run(t, lu, a, c, p), 1, 4)

	// Preempted and aborted: b loses its registration and sees
	// REGISTRATIONS PREEMPTED, and the transport is told to abort b's
	// commands; registrations survive the loss of the I_T nexus.
	r = prout(a, proutPreemptAbort, prExclusiveAccess, 0xA, 0xB)
	expectGood(t, r)
	if len(r.Abort) != 1 || r.Abort[0] != b {
		t.Fatalf("PREEMPT AND ABORT: abort %v, want b's nexus", r.Abort)
	}
	expectSense(t, run(t, lu, b, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascRegistrationsPreempted)
	lu.Detach(a)
	lu.Reset(nil)
	a2 := &Nexus{InitiatorName: a.InitiatorName, ISID: a.ISID, TargetName: a.TargetName, TPGT: a.TPGT, RelativeTargetPort: a.RelativeTargetPort}
	lu.Attach(a2)
	expectSense(t, run(t, lu, a2, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascITNexusLoss)
	expectGood(t, run(t, lu, a2, cdbRW(opRead10, 0, 1, 0), nil))
	expectSense(t, run(t, lu, b, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascBusDeviceReset)
	expectConflict(t, run(t, lu, b, cdbRW(opRead10, 0, 1, 0), nil))
	expectGood(t, prout(a2, proutClear, 0, 0xA, 0))
	expectGood(t, run(t, lu, b, cdbRW(opRead10, 0, 1, 0), nil))
	expectGood(t, run(t, lu, b, cdb6(opReserve6), nil))
}

// SPC-4 "INSUFFICIENT REGISTRATION RESOURCES": the LU holds at most
// maxPRRegistrations registrations; one more is refused and changes
// nothing, and a registered nexus may still change its key.
func TestPRRegistrationLimit_SPC4(t *testing.T) {
	var s prState
	for i := range maxPRRegistrations {
		n, out := s.step(prOut{sa: proutRegister, from: nexusKey{initiator: fmt.Sprint("i", i)}, saKey: uint64(i + 1)})
		if out.conflict || out.err.failed() {
			t.Fatalf("registration %d refused", i)
		}
		s = n
	}
	n, out := s.step(prOut{sa: proutRegisterIgnore, from: nexusKey{initiator: "one-more"}, saKey: 7})
	if out.err.asc != ascInsufficientRegs || n.differs(&s) {
		t.Fatalf("registration %d: %+v", maxPRRegistrations+1, out)
	}
	if _, out = s.step(prOut{sa: proutRegister, from: nexusKey{initiator: "i0"}, key: 1, saKey: 9}); out.err.failed() || out.conflict {
		t.Fatalf("changing a key at the limit: %+v", out)
	}
	if b := encodePRState(&s); len(b) > 512<<10 {
		t.Fatalf("a full state encodes to %d bytes", len(b))
	}
}
