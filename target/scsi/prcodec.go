package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PRStore is implemented by devices that keep an LU's persistent
// reservation state beyond the LU, as a replicated volume does: it hands
// the state to its peer, so that registrations and reservations survive a
// failover. The state is opaque bytes to the store (encodePRState).
type PRStore interface {
	// PREpoch changes whenever the stored state may have been replaced
	// from elsewhere, such as when this node became primary. The LU calls
	// it before every command, so it must be cheap.
	PREpoch() uint64
	// LoadPR returns the stored state (nil: none) and its epoch.
	LoadPR() ([]byte, uint64)
	// SavePR stores state (nil: none). It returns once the state is as
	// durable as the store keeps it (on the peer too, when it is
	// connected); PERSISTENT RESERVE OUT reports GOOD only after that.
	SavePR(state []byte) error
	// PersistsThroughPowerLoss reports whether the store keeps the state
	// through a power loss of every node. Then the LU stores only states
	// whose APTPL bit is set (nil otherwise), and accepts APTPL (PTPL_C);
	// otherwise it stores every state and refuses APTPL.
	PersistsThroughPowerLoss() bool
}

// syncPR loads the persistent reservation state from the store when the
// store's epoch has moved (this node took over the volume), before any
// command is checked against it. A state that does not decode is logged
// and replaced by the empty state.
//
// A Medium that is ready must already show the new epoch: a PRStore that
// is also the LU's Medium moves its epoch before it becomes ready (as the
// replicated Device does), and Execute calls syncPR only after Ready.
func (lu *LU) syncPR() {
	if lu.prStore.PREpoch() == lu.prEpoch.Load() {
		return
	}
	lu.prMu.Lock()
	defer lu.prMu.Unlock()
	lu.syncPRLocked()
}

// syncPRLocked is syncPR with lu.prMu held.
func (lu *LU) syncPRLocked() {
	b, epoch := lu.prStore.LoadPR()
	if epoch == lu.prEpoch.Load() {
		return
	}
	s, err := decodePRState(b)
	if err != nil {
		lu.log.Error("scsi: stored persistent reservations are unreadable; starting without any", "volume", lu.cfg.VolumeID, "err", err)
		s = prState{}
	}
	lu.mu.Lock()
	if s.empty() {
		lu.pr.Store(nil)
	} else {
		lu.pr.Store(&s)
	}
	lu.mu.Unlock()
	lu.prEpoch.Store(epoch)
	if !s.empty() {
		lu.log.Info("scsi: persistent reservations taken over", "volume", lu.cfg.VolumeID,
			"registrations", len(s.regs), "reserved", s.held, "generation", s.generation)
	}
}

// prCodecVersion is the version byte of the encoding.
const prCodecVersion = 1

// Bits of the encoding's flags byte.
const (
	prFlagHeld  = 1 << iota // a reservation is held
	prFlagAPTPL             // persist through power loss
)

// maxPRRegistrations bounds the registrations of an LU (step refuses more
// with INSUFFICIENT REGISTRATION RESOURCES) and of a decoded state. With
// iSCSI names of at most 223 bytes a state then encodes to under 512 KiB,
// which a replicated volume's peer accepts (replication.maxPRState).
const maxPRRegistrations = 1024

var errPRCodec = errors.New("scsi: malformed persistent reservation state")

// encodePRState returns s in the form PRStore keeps: a version byte, then
// little-endian fields: PRgeneration, flags (held, APTPL), type, holder,
// the registrations (nexus, key, relative port).
func encodePRState(s *prState) []byte {
	b := []byte{prCodecVersion}
	b = binary.LittleEndian.AppendUint32(b, s.generation)
	var flags byte
	if s.held {
		flags |= prFlagHeld
	}
	if s.aptpl {
		flags |= prFlagAPTPL
	}
	b = append(b, flags, byte(s.typ))
	b = appendNexusKey(b, s.holder)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.regs)))
	for _, r := range s.regs {
		b = appendNexusKey(b, r.nexus)
		b = binary.LittleEndian.AppendUint64(b, r.key)
		b = binary.LittleEndian.AppendUint16(b, r.relPort)
	}
	return b
}

func appendNexusKey(b []byte, k nexusKey) []byte {
	b = appendString(b, k.initiator)
	b = append(b, k.isid[:]...)
	b = appendString(b, k.target)
	return binary.LittleEndian.AppendUint16(b, k.tpgt)
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// prDecoder reads an encoded state; the first error sticks.
type prDecoder struct {
	b   []byte
	err error
}

func (d *prDecoder) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated", errPRCodec)
		return make([]byte, n)
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *prDecoder) u16() uint16 { return binary.LittleEndian.Uint16(d.take(2)) }
func (d *prDecoder) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *prDecoder) u64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }

func (d *prDecoder) nexusKey() nexusKey {
	var k nexusKey
	k.initiator = string(d.take(int(d.u16())))
	copy(k.isid[:], d.take(6))
	k.target = string(d.take(int(d.u16())))
	k.tpgt = d.u16()
	return k
}

// decodePRState parses what encodePRState returned and checks that it is
// a state step could have produced. nil or empty input is the empty state.
func decodePRState(b []byte) (prState, error) {
	if len(b) == 0 {
		return prState{}, nil
	}
	if b[0] != prCodecVersion {
		return prState{}, fmt.Errorf("%w: version %d", errPRCodec, b[0])
	}
	d := &prDecoder{b: b[1:]}
	var s prState
	s.generation = d.u32()
	flags := d.take(1)[0]
	s.typ = prType(d.take(1)[0])
	s.holder = d.nexusKey()
	n := d.u32()
	if n > maxPRRegistrations {
		return prState{}, fmt.Errorf("%w: %d registrations", errPRCodec, n)
	}
	for range n {
		r := prReg{nexus: d.nexusKey(), key: d.u64(), relPort: d.u16()}
		if d.err != nil {
			break
		}
		if r.key == 0 || s.reg(r.nexus) >= 0 {
			return prState{}, fmt.Errorf("%w: registration key 0 or I_T nexus registered twice", errPRCodec)
		}
		s.regs = append(s.regs, r)
	}
	switch {
	case d.err != nil:
		return prState{}, d.err
	case len(d.b) != 0:
		return prState{}, fmt.Errorf("%w: %d bytes left over", errPRCodec, len(d.b))
	case flags&^(prFlagHeld|prFlagAPTPL) != 0:
		return prState{}, fmt.Errorf("%w: flags %#x", errPRCodec, flags)
	}
	s.held, s.aptpl = flags&prFlagHeld != 0, flags&prFlagAPTPL != 0
	if s.held && (!s.typ.valid() || !s.typ.allRegistrants() && s.reg(s.holder) < 0 || len(s.regs) == 0) {
		return prState{}, fmt.Errorf("%w: reservation of type %d held by an unregistered I_T nexus", errPRCodec, s.typ)
	}
	if !s.held && (s.typ != 0 || s.holder != (nexusKey{})) {
		return prState{}, fmt.Errorf("%w: type or holder without a reservation", errPRCodec)
	}
	return s, nil
}
