package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// PERSISTENT RESERVE IN and OUT commands (pr.go has the state machine).

// prOutParamLen is the PERSISTENT RESERVE OUT parameter list length
// without SPEC_I_PT (SPC-4 "basic PERSISTENT RESERVE OUT parameter list").
const prOutParamLen = 24

// decodePRIn decodes SPC-4 "PERSISTENT RESERVE IN": SERVICE ACTION in byte
// 1, ALLOCATION LENGTH in bytes 7-8.
func decodePRIn(c Command, cdb []byte) Command {
	c.prSA = cdb[1] & 0x1F
	c.setDataIn(uint32(binary.BigEndian.Uint16(cdb[7:9])))
	return c
}

// decodePROut decodes SPC-4 "PERSISTENT RESERVE OUT": SERVICE ACTION in
// byte 1, SCOPE and TYPE in byte 2 (evaluated by RESERVE, RELEASE and
// PREEMPT; LU_SCOPE only), PARAMETER LIST LENGTH in bytes 5-8 (24 bytes:
// SPEC_I_PT is unsupported).
func decodePROut(c Command, cdb []byte) Command {
	c.prSA = cdb[1] & 0x1F
	switch c.prSA {
	case proutReserve, proutRelease, proutPreempt, proutPreemptAbort:
		if cdb[2]>>4 != 0 {
			return failedCmd(c.Op, invalidCDB(2, 7))
		}
		c.prType = prType(cdb[2] & 0x0F)
		if !c.prType.valid() {
			return failedCmd(c.Op, invalidCDB(2, 3))
		}
	}
	if binary.BigEndian.Uint32(cdb[5:9]) != prOutParamLen {
		return failedCmd(c.Op, errParamListLen)
	}
	c.DataLen, c.Dir = prOutParamLen, DirWrite
	return c
}

// execPROut runs PERSISTENT RESERVE OUT through prState.step, under lu.mu,
// and establishes the unit attentions the transition produced.
func (lu *LU) execPROut(n *Nexus, cmd *Command, data []byte) Response {
	if uint64(len(data)) > uint64(cmd.DataLen) {
		data = data[:cmd.DataLen]
	}
	if len(data) < prOutParamLen {
		return lu.fail(errParamListLen)
	}
	req := prOut{
		sa:    cmd.prSA,
		from:  resKey(n),
		typ:   cmd.prType,
		key:   binary.BigEndian.Uint64(data[0:8]),
		saKey: binary.BigEndian.Uint64(data[8:16]),
	}
	if n != nil {
		req.relPort = n.RelativeTargetPort
	}
	if req.sa == proutRegister || req.sa == proutRegisterIgnore {
		// SPEC_I_PT and ALL_TG_PT: unsupported (SIP_C and ATP_C are 0
		// in REPORT CAPABILITIES); APTPL where the store persists
		// (PTPL_C).
		switch f := data[20]; {
		case f&0x08 != 0:
			return lu.fail(invalidParam(20, 3))
		case f&0x04 != 0:
			return lu.fail(invalidParam(20, 2))
		case f&0x01 != 0 && !lu.ptplCapable():
			return lu.fail(invalidParam(20, 0))
		}
		req.aptpl = data[20]&0x01 != 0
	}
	if e := lu.prNotHere(); e.failed() {
		return lu.fail(e)
	}
	out, err := lu.transitionPR(func(cur prState) (prState, prOutcome) { return cur.step(req) })
	if err != nil {
		lu.log.Error("scsi: storing persistent reservations failed", "volume", lu.cfg.VolumeID, "err", err)
		if lu.medium != nil {
			if rerr := lu.medium.Ready(); rerr != nil {
				return lu.fail(mediumSense(rerr))
			}
		}
		return lu.fail(errInternal)
	}
	var abort []*Nexus
	if req.sa == proutPreemptAbort && len(out.preempted) > 0 {
		lu.mu.Lock()
		for an := range lu.mu.itls {
			if slices.Contains(out.preempted, an.key()) {
				abort = append(abort, an)
			}
		}
		lu.mu.Unlock()
	}
	switch {
	case out.conflict:
		return Response{Status: StatusReservationConflict}
	case out.err.failed():
		return lu.fail(out.err)
	}
	return Response{Status: StatusGood, Abort: abort}
}

// ptplCapable reports whether the LU can keep its persistent reservations
// through power loss (PTPL_C): its PRStore does.
func (lu *LU) ptplCapable() bool {
	return lu.prStore != nil && lu.prStore.PersistsThroughPowerLoss()
}

// prToStore returns what to hand the PRStore when the state changes from
// cur to nxt, and whether to hand anything: every new state to a store
// that does not persist through power loss (it keeps the state for a
// failover); to one that does, the states with APTPL set, and nil once
// APTPL is cleared.
func (lu *LU) prToStore(cur, nxt *prState) ([]byte, bool) {
	switch {
	case lu.prStore == nil || !nxt.differs(cur):
		return nil, false
	case !lu.ptplCapable() || nxt.aptpl:
		return encodePRState(nxt), true
	case cur.aptpl:
		return nil, true
	}
	return nil, false
}

// prNotHere returns the Medium's NOT READY sense when the persistent
// reservation state lives in a PRStore and the Medium is not ready: on a
// replicated volume's secondary node the state this LU holds may be stale,
// and changes must be made where the volume is primary.
func (lu *LU) prNotHere() senseErr {
	if lu.prStore == nil || lu.medium == nil {
		return senseErr{}
	}
	if err := lu.medium.Ready(); err != nil {
		return mediumSense(err)
	}
	return senseErr{}
}

// establishForLocked establishes unit attention a for the I_T nexus k, on
// its current session or, if it has none, for its next one. lu.mu must be
// held.
func (lu *LU) establishForLocked(k nexusKey, a ascCode) {
	found := false
	for n, it := range lu.mu.itls {
		if n.key() == k {
			it.establish(a)
			found = true
		}
	}
	if q, ok := lu.mu.departed[k]; ok && !found {
		q.add(a)
		lu.mu.departed[k] = q
	}
}

// prSnapshot returns the current persistent reservation state.
func (lu *LU) prSnapshot() prState {
	if p := lu.pr.Load(); p != nil {
		return *p
	}
	return prState{}
}

// execPRIn runs PERSISTENT RESERVE IN.
func (lu *LU) execPRIn(cmd *Command, data []byte) Response {
	if e := lu.prNotHere(); e.failed() {
		return lu.fail(e)
	}
	s := lu.prSnapshot()
	var b []byte
	switch cmd.prSA {
	case prinReadKeys:
		b = make([]byte, 8, 8+8*len(s.regs))
		for _, r := range s.regs {
			b = binary.BigEndian.AppendUint64(b, r.key)
		}
	case prinReadReservation:
		b = make([]byte, 8, 24)
		if s.held {
			var d [16]byte
			binary.BigEndian.PutUint64(d[0:8], s.holderKey())
			d[13] = byte(s.typ) // SCOPE 0h: LU_SCOPE
			b = append(b, d[:]...)
		}
	case prinReportCaps:
		b = make([]byte, 8)
		binary.BigEndian.PutUint16(b[0:2], 8) // LENGTH
		// CRH, SIP_C and ATP_C 0; PTPL_C where the store persists,
		// PTPL_A when the state does; TMV: the type mask is valid,
		// ALLOW COMMANDS 000b.
		if lu.ptplCapable() {
			b[2] |= 0x01
		}
		b[3] = 0x80
		if s.aptpl {
			b[3] |= 0x01
		}
		// PERSISTENT RESERVATION TYPE MASK: every type.
		b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02 // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
		b[5] = 0x01                             // EX_AC_AR
		return dataIn(cmd, b, data)
	case prinReadFullStatus:
		b = make([]byte, 8)
		for _, r := range s.regs {
			b = appendFullStatus(b, &s, r)
		}
	default:
		return lu.fail(invalidCDB(1, 4))
	}
	binary.BigEndian.PutUint32(b[0:4], s.generation)
	binary.BigEndian.PutUint32(b[4:8], uint32(len(b)-8)) // ADDITIONAL LENGTH
	return dataIn(cmd, b, data)
}

// appendFullStatus appends the full status descriptor of registration r
// (SPC-4 "PERSISTENT RESERVE IN READ FULL STATUS parameter data").
func appendFullStatus(b []byte, s *prState, r prReg) []byte {
	var d [24]byte
	binary.BigEndian.PutUint64(d[0:8], r.key)
	if s.isHolder(r.nexus) {
		d[12] = 0x01 // R_HOLDER (ALL_TG_PT 0)
		d[13] = byte(s.typ)
	}
	binary.BigEndian.PutUint16(d[18:20], max(r.relPort, 1))
	tid := iscsiTransportID(r.nexus)
	binary.BigEndian.PutUint32(d[20:24], uint32(len(tid)))
	return append(append(b, d[:]...), tid...)
}

// iscsiTransportID returns the TransportID of an iSCSI initiator port
// (SPC-4 "TransportID for initiator ports using SCSI over iSCSI", FORMAT
// CODE 01b): "name,i,0x" and the ISID in hexadecimal, NUL-terminated and
// padded to a multiple of 4 bytes.
func iscsiTransportID(k nexusKey) []byte {
	name := fmt.Sprintf("%s,i,0x%012x", k.initiator, k.isid[:])
	n := (len(name) + 1 + 3) &^ 3
	if n < 20 {
		n = 20
	}
	b := make([]byte, 4+n)
	b[0] = 0x40 | protoISCSI
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	copy(b[4:], name)
	return b
}

// ErrNotServed is returned by admin operations on an LU whose Medium is
// not ready (a replicated volume's secondary: act where it is primary).
var ErrNotServed = errors.New("scsi: the logical unit is not served here")

// ClearReservations removes every persistent reservation registration and
// the reservation, as PERSISTENT RESERVE OUT CLEAR from an initiator would
// (the registrants get UNIT ATTENTION RESERVATIONS PREEMPTED): for an
// admin to remove what a cluster left behind. It stores the change like a
// command does, and fails with ErrNotServed where the state may be stale.
func (lu *LU) ClearReservations() error {
	if lu.absent {
		return ErrNotServed
	}
	if e := lu.prNotHere(); e.failed() {
		return ErrNotServed
	}
	var cleared prState
	_, err := lu.transitionPR(func(cur prState) (prState, prOutcome) {
		cleared = cur
		if cur.empty() {
			return cur, prOutcome{}
		}
		return prState{generation: cur.generation + 1}, prOutcome{uas: cur.uaAllBut(nexusKey{}, ascReservationsPreempted, nil)}
	})
	if err != nil {
		return fmt.Errorf("storing persistent reservations: %w", err)
	}
	if !cleared.empty() {
		lu.log.Info("scsi: persistent reservations cleared by an admin", "volume", lu.cfg.VolumeID,
			"registrations", len(cleared.regs), "reserved", cleared.held)
	}
	return nil
}

// transitionPR changes the persistent reservation state under prMu: it
// brings the state up to date with the PRStore (the volume may have been
// taken over since Execute looked), f computes the next state from it, and
// unless f refuses (conflict or error) the new state is stored and then
// published with the unit attentions f produced. An error is the store's:
// nothing changed.
func (lu *LU) transitionPR(f func(cur prState) (prState, prOutcome)) (prOutcome, error) {
	lu.prMu.Lock()
	defer lu.prMu.Unlock()
	if lu.prStore != nil && lu.prStore.PREpoch() != lu.prEpoch.Load() {
		lu.syncPRLocked()
	}
	cur := lu.prSnapshot()
	nxt, out := f(cur)
	if out.conflict || out.err.failed() {
		return out, nil
	}
	if state, save := lu.prToStore(&cur, &nxt); save {
		if err := lu.prStore.SavePR(state); err != nil {
			return out, err
		}
	}
	lu.mu.Lock()
	lu.pr.Store(&nxt)
	for _, ua := range out.uas {
		lu.establishForLocked(ua.nexus, ua.asc)
	}
	lu.mu.Unlock()
	return out, nil
}

// Reservations is an LU's persistent reservation state as an admin sees
// it (hastorctl status).
type Reservations struct {
	Generation    uint32
	Registrations []Registration
	// Type names the reservation type ("" when nothing is reserved).
	Type string
	// Holder is the holding registration, nil when nothing is reserved
	// or for the "all registrants" types, where every registrant holds it.
	Holder *Registration
}

// Registration is one registered I_T nexus.
type Registration struct {
	Initiator string
	ISID      [6]byte
	Key       uint64
}

// Reservations returns the LU's persistent reservation state, ok false
// when there are neither registrations nor a reservation.
func (lu *LU) Reservations() (r Reservations, ok bool) {
	if lu.prStore != nil {
		lu.syncPR()
	}
	s := lu.prSnapshot()
	if s.empty() {
		return Reservations{}, false
	}
	r.Generation = s.generation
	for _, g := range s.regs {
		r.Registrations = append(r.Registrations, Registration{Initiator: g.nexus.initiator, ISID: g.nexus.isid, Key: g.key})
	}
	if s.held {
		r.Type = s.typ.String()
		if i := s.reg(s.holder); i >= 0 && !s.typ.allRegistrants() {
			r.Holder = &r.Registrations[i]
		}
	}
	return r, true
}
