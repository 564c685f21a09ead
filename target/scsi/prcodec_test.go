package scsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"hastor/blockdev"
)

// memPRStore is a PRStore in memory: what a replicated volume does with
// the state, without the peer.
type memPRStore struct {
	mu      sync.Mutex
	state   []byte
	saves   int
	fail    error
	epoch   atomic.Uint64
	durable bool // PersistsThroughPowerLoss
}

func (s *memPRStore) PersistsThroughPowerLoss() bool { return s.durable }

func (s *memPRStore) PREpoch() uint64 { return s.epoch.Load() }

func (s *memPRStore) LoadPR() ([]byte, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state), s.epoch.Load()
}

func (s *memPRStore) SavePR(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.state = slices.Clone(b)
	s.saves++
	return nil
}

// takeOver gives s the state of from, as a peer's promotion does.
func (s *memPRStore) takeOver(from []byte) {
	s.mu.Lock()
	s.state = slices.Clone(from)
	s.mu.Unlock()
	s.epoch.Add(1)
}

type prStoreDev struct {
	*blockdev.Mem
	*memPRStore
}

// Persistent reservations kept in a PRStore: every change is stored
// before GOOD, a store that fails fails the command and changes nothing,
// and the LU of the node that takes over the volume (a new store epoch)
// enforces the same registrations and reservation for the same I_T
// nexuses, before any command is checked.
func TestPersistentReservationsTakenOver(t *testing.T) {
	storeA, storeB := &memPRStore{}, &memPRStore{}
	luA := newTestLU(t, withDev(prStoreDev{blockdev.NewMem(1<<20, 512), storeA}))
	luB := newTestLU(t, withDev(prStoreDev{blockdev.NewMem(1<<20, 512), storeB}))
	a, b := newNexus(t, luA), newNexus(t, luA)
	prout := func(lu *LU, n *Nexus, sa byte, typ prType, key, saKey uint64) Response {
		c, p := cdbPROut(sa, typ, key, saKey)
		return run(t, lu, n, c, p)
	}
	expectGood(t, prout(luA, a, proutRegister, 0, 0, 0xA))
	expectGood(t, prout(luA, b, proutRegister, 0, 0, 0xB))
	expectGood(t, prout(luA, a, proutReserve, prWriteExclusiveRegs, 0xA, 0))
	expectGood(t, prout(luA, a, proutReserve, prWriteExclusiveRegs, 0xA, 0)) // no change: not stored again
	if storeA.saves != 3 {
		t.Fatalf("%d states stored, want 3", storeA.saves)
	}
	storeA.fail = errors.New("peer gone")
	expectSense(t, prout(luA, b, proutRegister, 0, 0xB, 0), SenseHardwareError, ascInternalTargetFailure)
	storeA.fail = nil

	// The other node takes over: the same nexuses (same initiator, ISID,
	// target and TPGT) log in there.
	storeB.takeOver(storeA.state)
	again := func(n *Nexus) *Nexus {
		m := &Nexus{InitiatorName: n.InitiatorName, ISID: n.ISID, TargetName: n.TargetName, TPGT: n.TPGT, RelativeTargetPort: n.RelativeTargetPort}
		luB.Attach(m)
		expectSense(t, run(t, luB, m, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
		return m
	}
	a2, b2, c := again(a), again(b), newNexus(t, luB)
	r, d := runData(t, luB, c, cdbPRIn(prinReadKeys, 100), nil)
	expectGood(t, r)
	if want := []byte{0, 0, 0, 2, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0xA, 0, 0, 0, 0, 0, 0, 0, 0xB}; !bytes.Equal(d, want) {
		t.Fatalf("READ KEYS after the takeover: % x", d)
	}
	r, d = runData(t, luB, c, cdbPRIn(prinReadReservation, 100), nil)
	expectGood(t, r)
	if len(d) != 24 || binary.BigEndian.Uint64(d[8:16]) != 0xA || d[21] != byte(prWriteExclusiveRegs) {
		t.Fatalf("READ RESERVATION after the takeover: % x", d)
	}
	w := cdbRW(opWrite10, 0, 1, 0)
	expectConflict(t, run(t, luB, c, w, pattern(512, 1)))
	expectGood(t, run(t, luB, a2, w, pattern(512, 1)))
	expectGood(t, run(t, luB, b2, w, pattern(512, 1)))
	expectGood(t, prout(luB, b2, proutRegister, 0, 0xB, 0))
	if storeB.saves != 1 {
		t.Fatalf("the new node stored %d states, want 1", storeB.saves)
	}

	// An unreadable state is dropped, not enforced.
	storeB.takeOver([]byte{prCodecVersion, 1})
	r, d = runData(t, luB, c, cdbPRIn(prinReadKeys, 100), nil)
	expectGood(t, r)
	if binary.BigEndian.Uint32(d[4:8]) != 0 {
		t.Fatalf("READ KEYS after an unreadable state: % x", d)
	}
}

// FuzzDecodePRState: decoding never panics, and a state that decodes
// encodes back to the same bytes.
func FuzzDecodePRState(f *testing.F) {
	s := prState{generation: 7, held: true, typ: prWriteExclusive,
		holder: nexusKey{initiator: "iqn.a", isid: [6]byte{1}, target: "iqn.t", tpgt: 1},
		regs: []prReg{{nexus: nexusKey{initiator: "iqn.a", isid: [6]byte{1}, target: "iqn.t", tpgt: 1}, key: 5, relPort: 1},
			{nexus: nexusKey{initiator: "iqn.b", target: "iqn.t"}, key: 6}}}
	f.Add(encodePRState(&s))
	f.Add(encodePRState(&prState{}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodePRState(b)
		if err != nil || len(b) == 0 {
			return
		}
		if !bytes.Equal(encodePRState(&s), b) {
			t.Fatalf("% x decodes to %+v, which encodes to % x", b, s, encodePRState(&s))
		}
	})
}

// APTPL with a store that persists through power loss (SPC-4 "persist
// through power loss"): REPORT CAPABILITIES says PTPL_C, and PTPL_A once a
// registration set APTPL; only states with APTPL set are stored, and
// clearing APTPL stores nil. Without such a store APTPL is refused.
func TestPersistThroughPowerLoss_SPC4(t *testing.T) {
	store := &memPRStore{durable: true}
	lu := newTestLU(t, withDev(blockdev.NewMem(1<<20, 512)), func(c *LUConfig) { c.PRStore = store })
	a, b := newNexus(t, lu), newNexus(t, lu)
	register := func(n *Nexus, sa byte, key, saKey uint64, aptpl bool) Response {
		c, p := cdbPROut(sa, 0, key, saKey)
		if aptpl {
			p[20] = 0x01
		}
		return run(t, lu, n, c, p)
	}
	caps := func() (ptplC, ptplA bool) {
		r, d := runData(t, lu, a, cdbPRIn(prinReportCaps, 8), nil)
		expectGood(t, r)
		if d[3]&0x80 == 0 {
			t.Fatalf("REPORT CAPABILITIES: TMV 0: % x", d)
		}
		return d[2]&0x01 != 0, d[3]&0x01 != 0
	}
	if c, a := caps(); !c || a {
		t.Fatalf("PTPL_C %v PTPL_A %v before any registration", c, a)
	}
	expectGood(t, register(a, proutRegister, 0, 0xA, false))
	if store.saves != 0 {
		t.Fatal("a state without APTPL was stored")
	}
	expectGood(t, register(b, proutRegisterIgnore, 0, 0xB, true))
	if _, a := caps(); !a || store.saves != 1 {
		t.Fatalf("after APTPL: PTPL_A %v, %d saves", a, store.saves)
	}
	if s, err := decodePRState(store.state); err != nil || !s.aptpl || len(s.regs) != 2 {
		t.Fatalf("stored state %+v, %v", s, err)
	}
	c, p := cdbPROut(proutReserve, prExclusiveAccess, 0xB, 0)
	expectGood(t, run(t, lu, b, c, p))
	if store.saves != 2 {
		t.Fatalf("reservation not stored: %d saves", store.saves)
	}
	expectGood(t, register(a, proutRegister, 0xA, 0xAA, false)) // clears APTPL
	if _, a := caps(); a || store.saves != 3 || store.state != nil {
		t.Fatalf("after clearing APTPL: PTPL_A %v, %d saves, state % x", a, store.saves, store.state)
	}

	// A store that does not persist (a replicated volume's): APTPL refused.
	mem := newTestLU(t, withDev(blockdev.NewMem(1<<20, 512)), func(c *LUConfig) { c.PRStore = &memPRStore{} })
	c, p = cdbPROut(proutRegister, 0, 0, 0xC)
	p[20] = 0x01
	expectInvalidParam(t, run(t, mem, newNexus(t, mem), c, p), 20, 0)
}

// An admin's ClearReservations: like PERSISTENT RESERVE OUT CLEAR from
// nobody, stored like a command's change; refused where the Medium is not
// ready (the state there may be stale).
func TestClearReservations(t *testing.T) {
	store := &memPRStore{}
	dev := &lockedDev{Mem: blockdev.NewMem(1<<20, 512)}
	dev.ready.Store(true)
	lu := newTestLU(t, withDev(dev), func(c *LUConfig) { c.PRStore = store })
	a, b := newNexus(t, lu), newNexus(t, lu)
	for _, n := range []*Nexus{a, b} {
		c, p := cdbPROut(proutRegisterIgnore, 0, 0, 0xA)
		expectGood(t, run(t, lu, n, c, p))
	}
	c, p := cdbPROut(proutReserve, prExclusiveAccessAll, 0xA, 0)
	expectGood(t, run(t, lu, a, c, p))
	if err := lu.ClearReservations(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Nexus{a, b} {
		expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascReservationsPreempted)
	}
	if _, ok := lu.Reservations(); ok || store.saves != 4 {
		t.Fatalf("after clearing: reservations left, or %d saves (want 4)", store.saves)
	}
	expectGood(t, run(t, lu, b, cdbRW(opWrite10, 0, 1, 0), pattern(512, 1)))
	if err := lu.ClearReservations(); err != nil || store.saves != 4 {
		t.Fatalf("clearing nothing: %v, %d saves", err, store.saves)
	}
	dev.ready.Store(false)
	if err := lu.ClearReservations(); !errors.Is(err, ErrNotServed) {
		t.Fatalf("on a Medium that is not ready: %v", err)
	}
}
