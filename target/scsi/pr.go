package scsi

import (
	"fmt"
	"slices"
)

// Persistent reservations (SPC-4 "persistent reservations", "PERSISTENT
// RESERVE IN", "PERSISTENT RESERVE OUT"): what VMware, Windows failover
// clusters and Pacemaker's fence_scsi use to share a LUN safely.
//
// Like the mode and SPC-2 reservation states, the persistent reservation
// state of an LU is a small immutable value (prState) replaced through the
// pure transition function step, so that it can later be replicated to a
// peer node and applied there verbatim. The LU publishes it through an atomic
// pointer, nil while there is neither a registration nor a reservation, so
// the I/O path pays one atomic load.
//
// Supported: READ KEYS, READ RESERVATION, REPORT CAPABILITIES and READ FULL
// STATUS; REGISTER, REGISTER AND IGNORE EXISTING KEY, RESERVE, RELEASE,
// CLEAR, PREEMPT and PREEMPT AND ABORT (fence_scsi's fencing: the
// transport aborts the preempted nexuses' commands before the status, see
// Response.Abort); the six reservation types, LU scope only. Not supported
// (REPORT CAPABILITIES says so): registration of other or all target ports
// (SPEC_I_PT, ALL_TG_PT), REGISTER AND MOVE and REPLACE LOST RESERVATION.
// Registrations survive I_T nexus loss and resets, as SPC-4 requires.
//
// The state lives in memory. An LU with a PRStore (prcodec.go) stores
// changes there before GOOD and loads the stored state when the store's
// epoch moves: a replicated volume's store hands every state to the peer,
// so the reservations follow the volume on a failover; a store that
// persists through power loss (a file) gets the states registered with
// APTPL (PTPL_C=1).
//
// While registrations exist, SPC-2 RESERVE and RELEASE end with RESERVATION
// CONFLICT (CRH=0).

// prType is a persistent reservation TYPE (SPC-4 "persistent reservation
// type codes").
type prType uint8

const (
	prWriteExclusive      prType = 0x1
	prExclusiveAccess     prType = 0x3
	prWriteExclusiveRegs  prType = 0x5 // registrants only
	prExclusiveAccessRegs prType = 0x6 // registrants only
	prWriteExclusiveAll   prType = 0x7 // all registrants
	prExclusiveAccessAll  prType = 0x8 // all registrants
)

// String returns the SPC-4 name of the type.
func (t prType) String() string {
	switch t {
	case prWriteExclusive:
		return "Write Exclusive"
	case prExclusiveAccess:
		return "Exclusive Access"
	case prWriteExclusiveRegs:
		return "Write Exclusive, Registrants Only"
	case prExclusiveAccessRegs:
		return "Exclusive Access, Registrants Only"
	case prWriteExclusiveAll:
		return "Write Exclusive, All Registrants"
	case prExclusiveAccessAll:
		return "Exclusive Access, All Registrants"
	}
	return fmt.Sprintf("type %#x", uint8(t))
}

// valid reports whether t is a type code this LU supports.
func (t prType) valid() bool {
	switch t {
	case prWriteExclusive, prExclusiveAccess, prWriteExclusiveRegs,
		prExclusiveAccessRegs, prWriteExclusiveAll, prExclusiveAccessAll:
		return true
	}
	return false
}

// allRegistrants reports whether every registrant holds a reservation of
// type t.
func (t prType) allRegistrants() bool {
	return t == prWriteExclusiveAll || t == prExclusiveAccessAll
}

// exclusiveAccess reports whether t also restricts reads.
func (t prType) exclusiveAccess() bool {
	return t == prExclusiveAccess || t == prExclusiveAccessRegs || t == prExclusiveAccessAll
}

// registrantsOnly reports whether registrants that do not hold the
// reservation still have access (the "registrants only" and "all
// registrants" types).
func (t prType) registrantsOnly() bool { return t != prWriteExclusive && t != prExclusiveAccess }

// prReg is one registration: an I_T nexus and its reservation key.
type prReg struct {
	nexus   nexusKey
	key     uint64
	relPort uint16 // relative target port identifier, for READ FULL STATUS
}

// prState is the persistent reservation state of an LU. Its zero value has
// no registrations and no reservation. Values are never modified once
// published: step returns a new one.
type prState struct {
	// generation is the PRgeneration: incremented by every successful
	// REGISTER, REGISTER AND IGNORE EXISTING KEY, CLEAR and PREEMPT.
	generation uint32
	regs       []prReg // in registration order
	held       bool
	typ        prType
	// holder is the reservation holder for the types other than "all
	// registrants" (for those, every registrant holds it).
	holder nexusKey
	// aptpl: the state persists through power loss (the APTPL bit of the
	// latest registration), where the LU's PRStore can keep it so.
	aptpl bool
}

// empty reports whether s has neither a registration nor a reservation.
func (s *prState) empty() bool { return len(s.regs) == 0 && !s.held }

// reg returns the index of k's registration, or -1.
func (s *prState) reg(k nexusKey) int {
	for i := range s.regs {
		if s.regs[i].nexus == k {
			return i
		}
	}
	return -1
}

// isHolder reports whether k holds the reservation.
func (s *prState) isHolder(k nexusKey) bool {
	if !s.held {
		return false
	}
	if s.typ.allRegistrants() {
		return s.reg(k) >= 0
	}
	return s.holder == k
}

// holderKey returns the RESERVATION KEY READ RESERVATION reports: the
// holder's key, or 0 for the "all registrants" types.
func (s *prState) holderKey() uint64 {
	if !s.held || s.typ.allRegistrants() {
		return 0
	}
	if i := s.reg(s.holder); i >= 0 {
		return s.regs[i].key
	}
	return 0
}

// prAccess classifies commands for reservation conflicts (SPC-4 "SPC
// commands that are allowed in the presence of various reservations", SBC-3
// for the block commands).
type prAccess uint8

const (
	prAllowed prAccess = iota // never conflicts
	prRead                    // conflicts with the exclusive access types
	prWrite                   // conflicts with every type
)

// prAccess returns the class of commands of kind k.
func (k opKind) prAccess() prAccess {
	switch k {
	case kRead, kVerify, kPreFetch, kGetLBAStatus, kReadDefect, kModeSense:
		return prRead
	case kWrite, kWriteVerify, kORWrite, kCompareAndWrite, kWriteSame, kUnmap,
		kSyncCache, kModeSelect, kReserve, kRelease:
		return prWrite
	}
	return prAllowed
}

// conflicts reports whether a command of class a from I_T nexus k must end
// with RESERVATION CONFLICT.
func (s *prState) conflicts(k nexusKey, a prAccess) bool {
	if a == prAllowed || !s.held || s.isHolder(k) {
		return false
	}
	if a == prRead && !s.typ.exclusiveAccess() {
		return false
	}
	return !s.typ.registrantsOnly() || s.reg(k) < 0
}

// Service actions of PERSISTENT RESERVE OUT (SPC-4 "PERSISTENT RESERVE OUT
// service action codes") and IN.
const (
	proutRegister       = 0x00
	proutReserve        = 0x01
	proutRelease        = 0x02
	proutClear          = 0x03
	proutPreempt        = 0x04
	proutPreemptAbort   = 0x05
	proutRegisterIgnore = 0x06

	prinReadKeys        = 0x00
	prinReadReservation = 0x01
	prinReportCaps      = 0x02
	prinReadFullStatus  = 0x03
)

// prOut is a PERSISTENT RESERVE OUT request, the input of step.
type prOut struct {
	sa      uint8
	from    nexusKey
	relPort uint16
	typ     prType // RESERVE, RELEASE, PREEMPT
	key     uint64 // RESERVATION KEY
	saKey   uint64 // SERVICE ACTION RESERVATION KEY
	aptpl   bool   // REGISTER: APTPL, persist through power loss
}

// prUA is a unit attention that a transition establishes for an I_T nexus.
type prUA struct {
	nexus nexusKey
	asc   ascCode
}

// prOutcome is the result of step besides the new state.
type prOutcome struct {
	conflict bool     // RESERVATION CONFLICT
	err      senseErr // CHECK CONDITION (when set)
	uas      []prUA
	// preempted lists the I_T nexuses whose registrations PREEMPT (AND
	// ABORT) removed.
	preempted []nexusKey
}

// Unit attentions of persistent reservations (SPC-4 "PERSISTENT RESERVE OUT
// service actions").
const (
	ascReservationsPreempted  ascCode = 0x2A03 // RESERVATIONS PREEMPTED
	ascReservationsReleased   ascCode = 0x2A04 // RESERVATIONS RELEASED
	ascRegistrationsPreempted ascCode = 0x2A05 // REGISTRATIONS PREEMPTED
	ascInvalidRelease         ascCode = 0x2604 // INVALID RELEASE OF PERSISTENT RESERVATION
	ascInsufficientRegs       ascCode = 0x5504 // INSUFFICIENT REGISTRATION RESOURCES
)

// step is the transition function of PERSISTENT RESERVE OUT: it returns the
// state after req and the outcome. It is pure: s is not modified.
func (s prState) step(req prOut) (prState, prOutcome) {
	i := s.reg(req.from)
	switch req.sa {
	case proutRegister, proutRegisterIgnore:
		if req.sa == proutRegister {
			// An unregistered nexus must send key 0, a registered one
			// its key.
			if (i < 0 && req.key != 0) || (i >= 0 && req.key != s.regs[i].key) {
				return s, prOutcome{conflict: true}
			}
		}
		// The APTPL bit of the latest successful registration decides
		// whether the state persists through power loss.
		switch {
		case i < 0 && req.saKey == 0:
			return s, prOutcome{}
		case i < 0 && len(s.regs) >= maxPRRegistrations:
			return s, prOutcome{err: illegal(ascInsufficientRegs)}
		case i < 0:
			n := s.clone()
			n.regs = append(n.regs, prReg{nexus: req.from, key: req.saKey, relPort: req.relPort})
			n.generation++
			n.aptpl = req.aptpl
			return n, prOutcome{}
		case req.saKey == 0:
			n, uas := s.unregister(i)
			n.generation++
			n.aptpl = req.aptpl
			return n, prOutcome{uas: uas}
		default:
			n := s.clone()
			n.regs[i].key = req.saKey
			n.generation++
			n.aptpl = req.aptpl
			return n, prOutcome{}
		}
	}
	// Every other service action needs a registered nexus and its key.
	if i < 0 || req.key != s.regs[i].key {
		return s, prOutcome{conflict: true}
	}
	switch req.sa {
	case proutReserve:
		if s.held {
			if s.isHolder(req.from) && s.typ == req.typ {
				return s, prOutcome{}
			}
			return s, prOutcome{conflict: true}
		}
		n := s.clone()
		n.held, n.typ, n.holder = true, req.typ, req.from
		return n, prOutcome{}
	case proutRelease:
		if !s.held || !s.isHolder(req.from) {
			return s, prOutcome{}
		}
		if s.typ != req.typ {
			return s, prOutcome{err: illegal(ascInvalidRelease)}
		}
		n := s.clone()
		n.release()
		var uas []prUA
		if s.typ.registrantsOnly() {
			uas = s.uaAllBut(req.from, ascReservationsReleased, nil)
		}
		return n, prOutcome{uas: uas}
	case proutClear:
		n := prState{generation: s.generation + 1}
		return n, prOutcome{uas: s.uaAllBut(req.from, ascReservationsPreempted, nil)}
	case proutPreempt, proutPreemptAbort:
		return s.preempt(req)
	}
	return s, prOutcome{err: invalidCDB(1, 4)}
}

// preempt runs PREEMPT (SPC-4 "preempting persistent reservations and
// registration handling").
func (s prState) preempt(req prOut) (prState, prOutcome) {
	n := s.clone()
	n.generation++
	var removed []nexusKey
	remove := func(match func(r prReg) bool) {
		kept := n.regs[:0]
		for _, r := range n.regs {
			if match(r) {
				removed = append(removed, r.nexus)
			} else {
				kept = append(kept, r)
			}
		}
		n.regs = kept
	}
	out := prOutcome{}
	switch {
	case s.held && s.typ.allRegistrants() && req.saKey == 0:
		// Every other registration goes; the preempting nexus gets
		// the reservation, with the new type.
		remove(func(r prReg) bool { return r.nexus != req.from })
		n.typ, n.holder = req.typ, req.from
	case s.held && !s.typ.allRegistrants() && req.saKey == s.holderKey():
		remove(func(r prReg) bool { return r.key == req.saKey && r.nexus != req.from })
		n.typ, n.holder = req.typ, req.from
		if req.typ != s.typ {
			out.uas = n.uaAllBut(req.from, ascReservationsReleased, nil)
		}
	default:
		// Only registrations are preempted; the reservation, if any,
		// stays.
		if req.saKey == 0 {
			return s, prOutcome{err: invalidParam(8, 7)}
		}
		remove(func(r prReg) bool { return r.key == req.saKey })
		if len(removed) == 0 {
			return s, prOutcome{conflict: true}
		}
		if n.held && !n.typ.allRegistrants() && n.reg(n.holder) < 0 {
			n.release()
		}
		if n.held && len(n.regs) == 0 {
			n.release()
		}
	}
	for _, k := range removed {
		out.uas = append(out.uas, prUA{nexus: k, asc: ascRegistrationsPreempted})
	}
	out.preempted = removed
	return n, out
}

// unregister removes registration i. A reservation that no registration
// holds any more is released; for the "registrants only" types the other
// registrants then get RESERVATIONS RELEASED (SPC-4 "releasing persistent
// reservations and removing registrations").
func (s prState) unregister(i int) (prState, []prUA) {
	n := s.clone()
	k := n.regs[i].nexus
	n.regs = slices.Delete(n.regs, i, i+1)
	var uas []prUA
	switch {
	case !n.held:
	case n.typ.allRegistrants():
		if len(n.regs) == 0 {
			n.release()
		}
	case n.holder == k:
		if n.typ.registrantsOnly() { // "registrants only": the others keep access
			uas = n.uaAllBut(k, ascReservationsReleased, nil)
		}
		n.release()
	}
	return n, uas
}

// release drops the reservation, keeping the registrations.
func (s *prState) release() {
	s.held, s.typ, s.holder = false, 0, nexusKey{}
}

// differs reports whether t is another state than s: every transition
// changes the PRgeneration, the reservation or the number of
// registrations.
func (s *prState) differs(t *prState) bool {
	return s.generation != t.generation || s.held != t.held || s.typ != t.typ ||
		s.holder != t.holder || len(s.regs) != len(t.regs) || s.aptpl != t.aptpl
}

// clone returns a copy of s that shares nothing with it.
func (s prState) clone() prState {
	s.regs = slices.Clone(s.regs)
	return s
}

// uaAllBut appends a unit attention a for every registrant but skip.
func (s *prState) uaAllBut(skip nexusKey, a ascCode, uas []prUA) []prUA {
	for _, r := range s.regs {
		if r.nexus != skip {
			uas = append(uas, prUA{nexus: r.nexus, asc: a})
		}
	}
	return uas
}
