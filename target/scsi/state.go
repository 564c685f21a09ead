package scsi

// modeState is the changeable, shared state of a logical unit: the current
// values of the changeable mode parameters (SPC-4 "mode parameters", SBC-3
// "mode parameters"). It is kept apart from the rest of the LU, as an immutable
// value replaced by explicit transitions, so that it can later be replicated to
// a peer node (together with reservation state) and applied there verbatim.
//
// Every field is the current value of one changeable bit; the default
// values come from the LU's configuration. Nothing is savable (MODE SELECT
// with SP=1 and MODE SENSE of saved values are refused).
type modeState struct {
	// WCE is the Caching mode page's write cache enable bit (SBC-3
	// "Caching mode page"). When false, every write is durable before GOOD.
	WCE bool
	// DSense is the Control mode page's D_SENSE bit (SPC-4 "Control mode
	// page"): report sense data in descriptor format.
	DSense bool
	// SWP (software write protect) is deliberately not changeable: a
	// write-protect switch flipped by one initiator would be runtime state
	// that must survive failover, and libiscsi's conformance run expects
	// it fixed at 0.
}

// modeEvent is an input to the mode-state machine.
type modeEvent struct {
	kind modeEventKind
	// sel holds the new values of a MODE SELECT (modeSelected).
	sel modeState
}

type modeEventKind uint8

const (
	// modeSelected: a MODE SELECT command supplied new current values
	// (SPC-4 "MODE SELECT(6)"). Unit attention MODE PARAMETERS CHANGED goes
	// to every other I_T nexus if anything changed.
	modeSelected modeEventKind = iota + 1
	// modeReset: a logical unit reset or hard reset (SAM-5 "events") restored
	// the default values (there are no saved values).
	modeReset
)

// next is the transition function: the state after ev, given the defaults.
// It is pure; the caller serializes transitions and performs their side
// effects (unit attentions, flushing the write cache when WCE drops).
func (s modeState) next(ev modeEvent, def modeState) modeState {
	switch ev.kind {
	case modeSelected:
		return ev.sel
	case modeReset:
		return def
	}
	return s
}
