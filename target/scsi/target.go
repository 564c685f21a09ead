package scsi

import (
	"fmt"
	"unicode/utf8"
)

// MaxLUNs is the number of LUN numbers a Target supports (0..16383, the
// flat space addressing range).
const MaxLUNs = 1 << 14

// Target is one SCSI target device: the logical units behind one iSCSI
// target name. Its LU set is fixed at creation. All methods are safe for
// concurrent use.
type Target struct {
	name   string
	lus    []*LU    // indexed by LUN; nil entries are absent
	luns   []uint64 // present LUNs, ascending
	absent *LU      // stand-in for every absent LUN
}

// NewTarget returns the target named name (the target's iSCSI name, e.g.
// an IQN) with lus[i] as LUN i; nil entries leave LUN numbers unused. An LU
// can belong to one target only. len(lus) must not exceed MaxLUNs.
func NewTarget(name string, lus []*LU) (*Target, error) {
	if name == "" || len(name) > 223 || !utf8.ValidString(name) {
		return nil, fmt.Errorf("%w: target name %q: must be 1-223 bytes of UTF-8 (RFC 7143 iSCSI names)", ErrInvalidConfig, name)
	}
	if len(lus) > MaxLUNs {
		return nil, fmt.Errorf("%w: %d LUs: at most %d", ErrInvalidConfig, len(lus), MaxLUNs)
	}
	t := &Target{name: name, lus: make([]*LU, len(lus))}
	for i, lu := range lus {
		if lu == nil {
			continue
		}
		if lu.absent || !lu.tgt.CompareAndSwap(nil, t) {
			for _, done := range t.lus[:i] {
				if done != nil {
					done.tgt.Store(nil)
				}
			}
			return nil, fmt.Errorf("%w: LUN %d", ErrLUInUse, i)
		}
		t.lus[i] = lu
		t.luns = append(t.luns, uint64(i))
	}
	t.absent = newAbsentLU(t)
	return t, nil
}

// Name returns the target's iSCSI name.
func (t *Target) Name() string { return t.name }

// LUNs returns the LUN numbers of the target's logical units, ascending.
func (t *Target) LUNs() []uint64 { return append([]uint64(nil), t.luns...) }

// LU returns the logical unit with number lun (see DecodeLUN). It never
// returns nil: for a LUN the target does not have, it returns a shared
// stand-in whose Execute answers INQUIRY (peripheral qualifier 011b, device
// type 1Fh), REPORT LUNS (the target's list) and REQUEST SENSE, and fails
// every other command with ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
func (t *Target) LU(lun uint64) *LU {
	if lun < uint64(len(t.lus)) {
		if lu := t.lus[lun]; lu != nil {
			return lu
		}
	}
	return t.absent
}

// Attach attaches the I_T nexus n to every LU of t (see LU.Attach). The
// transport calls it once per session at login.
func (t *Target) Attach(n *Nexus) {
	batch := make(map[*LU]*itl, len(t.luns))
	for _, l := range t.luns {
		if it := t.lus[l].register(n); it != nil {
			batch[t.lus[l]] = it
		}
	}
	if n != nil {
		n.updateITLs(batch)
	}
}

// Detach ends the I_T nexus n on every LU of t (see LU.Detach). The
// transport calls it when the session ends, after its last command.
func (t *Target) Detach(n *Nexus) {
	batch := make(map[*LU]*itl, len(t.luns))
	for _, l := range t.luns {
		if t.lus[l].unregister(n) {
			batch[t.lus[l]] = nil
		}
	}
	if n != nil {
		n.updateITLs(batch)
	}
}

// Reset performs the LU-state effects of a target reset on every LU (SAM-5
// "hard reset"): mode parameters return to their defaults and every
// attached I_T nexus, including from, gets a unit attention (29h/03h for
// ResetTargetWarm, 29h/01h for ResetTargetCold). Aborting tasks and, for a
// cold reset, closing connections are the transport's job. from may be nil.
func (t *Target) Reset(kind ResetKind, from *Nexus) {
	ua := ascBusDeviceReset
	if kind == ResetTargetCold {
		ua = ascPowerOnOccurred
	}
	for _, l := range t.luns {
		t.lus[l].reset(ua)
	}
}
