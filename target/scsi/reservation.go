package scsi

// SPC-2 reservations (RESERVE(6)/(10), RELEASE(6)/(10); SPC-2 "reservations",
// "RESERVE(10)", "RELEASE(10)"). SPC-3 and later describe only persistent
// reservations and refer to SPC-2 for these, which some initiators (older
// cluster software, some backup tools) still use.
//
// A logical unit is either unreserved or reserved by one I_T nexus. While it
// is reserved, commands from every other I_T nexus end with RESERVATION
// CONFLICT status, except those SPC-2 lets through (opInfo.resOK: INQUIRY,
// REQUEST SENSE, REPORT LUNS, REPORT SUPPORTED OPERATION CODES, RELEASE,
// and PREVENT ALLOW MEDIUM REMOVAL with PREVENT=00b). Unit attentions are
// still reported first (SAM-5 "unit attention condition").
//
// The reservation is released by a RELEASE from the holder, a logical unit
// reset, a target (hard) reset, and the loss of the holder's I_T nexus
// (logout, connection failure, session reinstatement). Third-party and
// extent reservations are obsolete and not supported.

// resState is the reservation state of a logical unit: like modeState, a
// small immutable value replaced through the pure transition function next, so
// that it can be replicated to a peer node and applied there verbatim. The
// LU publishes it through an atomic pointer (nil when unreserved) that every
// command reads without locking.
type resState struct {
	// held reports whether the LU is reserved; holder is then the I_T
	// nexus holding the reservation.
	held   bool
	holder nexusKey
}

// resEvent is an input to the reservation state machine.
type resEvent struct {
	kind resEventKind
	// from is the I_T nexus that sent RESERVE or RELEASE, or whose loss
	// is reported.
	from nexusKey
}

type resEventKind uint8

const (
	// resReserve: a RESERVE(6)/(10) from ev.from (SPC-2 "RESERVE(10)").
	resReserve resEventKind = iota + 1
	// resRelease: a RELEASE(6)/(10) from ev.from (SPC-2 "RELEASE(10)").
	resRelease
	// resReset: a logical unit reset or hard reset (SAM-5 "logical unit
	// reset", "hard reset").
	resReset
	// resNexusLoss: the I_T nexus ev.from ended (SAM-5 "I_T nexus loss").
	resNexusLoss
)

// conflicts reports whether a command from I_T nexus k, other than those
// SPC-2 always allows, must end with RESERVATION CONFLICT.
func (s resState) conflicts(k nexusKey) bool {
	return s.held && s.holder != k
}

// next is the transition function: it returns the state after ev and
// whether ev is refused with RESERVATION CONFLICT. It is pure; the caller
// serializes transitions.
//
//   - RESERVE from the holder, or of an unreserved LU, makes ev.from the
//     holder (a repeated RESERVE from the holder is not an error).
//   - RESERVE from another I_T nexus is a conflict and changes nothing.
//   - RELEASE from the holder releases; from anyone else it does nothing
//     and is not an error.
//   - A reset releases; the loss of the holder's I_T nexus releases.
func (s resState) next(ev resEvent) (resState, bool) {
	switch ev.kind {
	case resReserve:
		if s.conflicts(ev.from) {
			return s, true
		}
		return resState{held: true, holder: ev.from}, false
	case resRelease, resNexusLoss:
		if s.held && s.holder == ev.from {
			return resState{}, false
		}
		return s, false
	case resReset:
		return resState{}, false
	}
	return s, false
}

// resKey returns the identity reservations use for n; a nil Nexus (only
// used by tests and internal callers) is one anonymous I_T nexus.
func resKey(n *Nexus) nexusKey {
	if n == nil {
		return nexusKey{}
	}
	return n.key()
}

// stepReservationLocked applies ev, publishes the new state and reports
// whether ev was refused. lu.mu must be held.
func (lu *LU) stepReservationLocked(ev resEvent) bool {
	var cur resState
	if p := lu.res.Load(); p != nil {
		cur = *p
	}
	nxt, conflict := cur.next(ev)
	if nxt != cur {
		if nxt.held {
			lu.res.Store(&nxt)
		} else {
			lu.res.Store(nil)
		}
	}
	return conflict
}

// reservationConflict reports whether cmd from n must end with RESERVATION
// CONFLICT. It is one atomic load when the LU is not reserved.
// The persistent reservation, if any, is checked the same way (pr.go).
func (lu *LU) reservationConflict(n *Nexus, cmd *Command) bool {
	if cmd.resOK {
		return false
	}
	if p := lu.res.Load(); p != nil && p.conflicts(resKey(n)) {
		return true
	}
	q := lu.pr.Load()
	return q != nil && q.held && q.conflicts(resKey(n), cmd.kind.prAccess())
}

// prRegistered reports whether persistent reservation registrations (or a
// persistent reservation) exist: SPC-2 RESERVE and RELEASE then conflict
// (CRH=0, SPC-4 "exceptions to SPC-2 RESERVE and RELEASE behavior").
func (lu *LU) prRegistered() bool {
	p := lu.pr.Load()
	return p != nil && !p.empty()
}

// execReserve runs SPC-2 "RESERVE(6)" and "RESERVE(10)".
func (lu *LU) execReserve(n *Nexus) Response {
	if lu.prRegistered() {
		return Response{Status: StatusReservationConflict}
	}
	lu.mu.Lock()
	conflict := lu.stepReservationLocked(resEvent{kind: resReserve, from: resKey(n)})
	lu.mu.Unlock()
	if conflict {
		return Response{Status: StatusReservationConflict}
	}
	return Response{Status: StatusGood}
}

// execRelease runs SPC-2 "RELEASE(6)" and "RELEASE(10)".
func (lu *LU) execRelease(n *Nexus) Response {
	if lu.prRegistered() {
		return Response{Status: StatusReservationConflict}
	}
	lu.mu.Lock()
	lu.stepReservationLocked(resEvent{kind: resRelease, from: resKey(n)})
	lu.mu.Unlock()
	return Response{Status: StatusGood}
}
