package genid

import "fmt"

// Flags are the per-node facts besides the tuple that Decide needs. Both
// nodes keep them in their metadata and exchange them on connect.
type Flags struct {
	// Primary: the node is primary now.
	Primary bool
	// CrashedPrimary: the node was primary when it last went down without
	// a clean demotion. Its activity-log extents may hold writes its peer
	// never received. Cleared once a resync with the peer has finished
	// or the two nodes were found in sync.
	CrashedPrimary bool
	// Consistent: the node's data is a consistent image of some generation
	// (DRBD's UpToDate, Consistent or Outdated disk states). False while it
	// is a sync target, after Invalidate, and on a new resource before its
	// first full sync or primary --force.
	Consistent bool
	// Tiebreak: set on exactly one of the two nodes (say, the one listed
	// first in the configuration). It breaks the ties the tuples cannot,
	// as DRBD's "resolve conflicts" bit does, so that the two nodes'
	// decisions stay mirror images.
	Tiebreak bool
}

// Action is what the local node does after connecting.
type Action int

// The actions. Source and target are from the local node's point of view.
const (
	// NoSync: both nodes have the same data; connect with nothing to
	// resync.
	NoSync Action = iota
	// SyncSource: the local node sends the blocks set in the union of the
	// two dirty bitmaps.
	SyncSource
	// SyncTarget: the local node receives the blocks set in the union of
	// the two dirty bitmaps.
	SyncTarget
	// FullSyncSource: the local node sends every block.
	FullSyncSource
	// FullSyncTarget: the local node receives every block.
	FullSyncTarget
	// SplitBrain: both nodes have data the other lacks. Do not connect;
	// report it; see Recover and Discard.
	SplitBrain
	// Unrelated: the tuples share no generation: the peer holds some
	// other resource's data. Do not connect.
	Unrelated
	// Refused: the tuples give a direction, but the disk states or roles
	// forbid it (the source would be Inconsistent, or a primary with
	// consistent data would be overwritten). Do not connect.
	Refused
)

var actionNames = [...]string{"NoSync", "SyncSource", "SyncTarget", "FullSyncSource", "FullSyncTarget", "SplitBrain", "Unrelated", "Refused"}

func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// IsSync reports whether a starts a resync.
func (a Action) IsSync() bool { return a >= SyncSource && a <= FullSyncTarget }

// IsSource reports whether the local node sends data under a.
func (a Action) IsSource() bool { return a == SyncSource || a == FullSyncSource }

// IsFull reports whether a resyncs every block.
func (a Action) IsFull() bool { return a == FullSyncSource || a == FullSyncTarget }

// Mirror returns the action the peer takes when the local node takes a.
func (a Action) Mirror() Action {
	switch a {
	case SyncSource:
		return SyncTarget
	case SyncTarget:
		return SyncSource
	case FullSyncSource:
		return FullSyncTarget
	case FullSyncTarget:
		return FullSyncSource
	}
	return a
}

// The rules, numbered in the order of UG-GI "How DRBD uses generation
// identifiers" (1 to 8), then the checks on disk states and roles that
// DRBD's sync handshake applies after comparing the tuples (9 to 11).
const (
	RuleBothEmpty          = 1  // Current UUIDs empty on both nodes
	RuleOneEmpty           = 2  // Current UUID empty on one node
	RuleEqual              = 3  // equal Current UUIDs
	RuleBitmapCurrent      = 4  // Bitmap UUID matches the peer's Current UUID
	RuleCurrentHistory     = 5  // Current UUID matches a History UUID of the peer
	RuleBitmaps            = 6  // Bitmap UUIDs match, Current UUIDs do not
	RuleSomeMatch          = 7  // neither Current nor Bitmap UUIDs match, but some other element does
	RuleNoMatch            = 8  // no UUIDs match
	RuleDiskStates         = 9  // exactly one node is Consistent: it is the source
	RuleSourceInconsistent = 10 // the source would be Inconsistent
	RulePrimaryTarget      = 11 // a consistent primary would become sync target
)

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	// Rule is the rule that fired (Rule... constants).
	Rule int
	// Reason says why, for logs and status.
	Reason string
	// LocalAL and PeerAL: the local node (peer) crashed as primary, and
	// this is a bitmap-based resync: its activity-log extents, which may
	// hold writes only it has, must be set in its bitmap (DRBD applies the
	// activity log to the bitmap on attach) so that the union of the two
	// bitmaps covers them. On the source they are thereby sent to the
	// target; on the target they are overwritten with the source's data.
	LocalAL, PeerAL bool
}

func (d Decision) String() string {
	s := fmt.Sprintf("%v rule %d", d.Action, d.Rule)
	if d.LocalAL {
		s += " local-al"
	}
	if d.PeerAL {
		s += " peer-al"
	}
	return s
}

// Mirror returns the decision the peer takes when the local node takes d.
func (d Decision) Mirror() Decision {
	d.Action = d.Action.Mirror()
	d.LocalAL, d.PeerAL = d.PeerAL, d.LocalAL
	return d
}

// Decide compares the local and the peer tuples and flags when the two
// nodes connect and says what the local node does. It is symmetric:
// Decide(peer, local, pf, lf) is Decide(local, peer, lf, pf).Mirror(),
// provided exactly one of lf, pf has Tiebreak set.
//
// Rules 1 to 8 follow UG-GI "How DRBD uses generation identifiers", in
// its order; the first that matches fires. Rule 3 is refined with what
// DRBD does (documented under the activity log, not in UG-GI) for a node
// that crashed as primary, and for a resync whose completion only one node
// recorded. After the tuples, rules 9 to 11 check disk states and roles.
func Decide(local, peer Set, lf, pf Flags) Decision {
	d := compare(local, peer, lf, pf)
	if d.Action == Unrelated {
		return d
	}
	// Rule 9: disk states override. An Inconsistent node has no data to
	// give; if exactly one node is Consistent it is the source. The
	// tuples' bitmap-based direction is kept if it agrees; anything else
	// becomes a full sync, since the bitmaps do not describe how the
	// Inconsistent side differs.
	if lf.Consistent != pf.Consistent {
		want := SyncSource
		if !lf.Consistent {
			want = SyncTarget
		}
		if d.Action != want && d.Action != want+2 { // +2: the Full variant
			return Decision{Action: want + 2, Rule: RuleDiskStates,
				Reason: fmt.Sprintf("disk states: only the %s node is consistent (tuples said %v by rule %d)", side(lf.Consistent), d.Action, d.Rule)}
		}
	}
	if !d.Action.IsSync() {
		return d
	}
	// Rule 10: the source must have consistent data.
	if d.Action.IsSource() && !lf.Consistent || !d.Action.IsSource() && !pf.Consistent {
		return Decision{Action: Refused, Rule: RuleSourceInconsistent,
			Reason: fmt.Sprintf("would become %v by rule %d, but the source is inconsistent", d.Action, d.Rule)}
	}
	// Rule 11: DRBD's rr-conflict default: a primary whose data is
	// consistent is not overwritten under its running application.
	if !d.Action.IsSource() && lf.Primary && lf.Consistent || d.Action.IsSource() && pf.Primary && pf.Consistent {
		return Decision{Action: Refused, Rule: RulePrimaryTarget,
			Reason: fmt.Sprintf("would become %v by rule %d, but the sync target is primary", d.Action, d.Rule)}
	}
	return d
}

func side(localConsistent bool) string {
	if localConsistent {
		return "local"
	}
	return "peer"
}

// compare applies rules 1 to 8 to the tuples.
func compare(l, p Set, lf, pf Flags) Decision {
	switch {
	case l.Current == 0 && p.Current == 0:
		// A new resource that never had its initial full sync: nothing
		// happens until the admin runs primary --force on one node.
		return Decision{Action: NoSync, Rule: RuleBothEmpty, Reason: "both current UUIDs empty: new resource, start the initial sync by hand (primary --force)"}
	case p.Current == 0:
		return Decision{Action: FullSyncSource, Rule: RuleOneEmpty, Reason: "peer's current UUID empty: initial full sync, local node is source"}
	case l.Current == 0:
		return Decision{Action: FullSyncTarget, Rule: RuleOneEmpty, Reason: "local current UUID empty: initial full sync, local node is target"}
	case l.Current == p.Current:
		return equalCurrent(l, p, lf, pf)
	case l.Bitmap == p.Current && p.Bitmap == 0:
		// Typically the local node was primary and the peer failed (or
		// the link did); the peer never became primary meanwhile.
		d := Decision{Action: SyncSource, Rule: RuleBitmapCurrent, Reason: "local bitmap UUID is the peer's current UUID: local node wrote alone since, bitmap-based resync as source"}
		return withAL(d, lf, pf)
	case p.Bitmap == l.Current && l.Bitmap == 0:
		// Typically the local node failed (or was primary and crashed)
		// and the peer went on as primary.
		d := Decision{Action: SyncTarget, Rule: RuleBitmapCurrent, Reason: "peer's bitmap UUID is the local current UUID: peer wrote alone since, bitmap-based resync as target"}
		return withAL(d, lf, pf)
	case p.inHistory(l.Current) && l.inHistory(p.Current):
		// Cannot happen with fresh random UUIDs; without this case the
		// two nodes would both decide FullSyncTarget.
		return Decision{Action: SplitBrain, Rule: RuleSomeMatch, Reason: "each current UUID is in the other node's history: no direction can be trusted; resolve by hand (full sync)"}
	case p.inHistory(l.Current):
		return Decision{Action: FullSyncTarget, Rule: RuleCurrentHistory, Reason: "local current UUID is in the peer's history: the peer is newer but its bitmap does not reach back to the local generation, full resync as target"}
	case l.inHistory(p.Current):
		return Decision{Action: FullSyncSource, Rule: RuleCurrentHistory, Reason: "peer's current UUID is in the local history: the local node is newer but its bitmap does not reach back to the peer's generation, full resync as source"}
	case l.Bitmap != 0 && l.Bitmap == p.Bitmap:
		return Decision{Action: SplitBrain, Rule: RuleBitmaps, Reason: "split brain: both nodes started a generation of their own from the same parent (bitmap UUIDs match); auto-recovery possible"}
	case anyMatch(l, p):
		return Decision{Action: SplitBrain, Rule: RuleSomeMatch, Reason: "split brain with unrelated ancestor generations: the nodes share an older generation only; resolve by hand (full sync)"}
	default:
		return Decision{Action: Unrelated, Rule: RuleNoMatch, Reason: "unrelated data: no generation in common"}
	}
}

// equalCurrent refines rule 3. In UG-GI equal Current UUIDs mean no sync.
// Two cases need more, as DRBD's implementation does:
//   - a node that crashed as primary may have written blocks (those in
//     its activity log) that never reached the peer before the crash, so
//     it resyncs them as source; both crashed: Tiebreak picks;
//   - if only one node has a Bitmap UUID, a resync finished on the other
//     node (which adopted the source's tuple) but this node did not record
//     it before the connection broke; it may have written since, into its
//     bitmap, without starting a new generation (LosePeer keeps a set
//     Bitmap), so it is the source of a bitmap-based resync.
func equalCurrent(l, p Set, lf, pf Flags) Decision {
	switch {
	case l.Bitmap != 0 && p.Bitmap == 0:
		return Decision{Action: SyncSource, Rule: RuleEqual, Reason: "equal current UUIDs, only the local node has a bitmap UUID: the peer finished a resync the local node did not record, bitmap-based resync as source", LocalAL: lf.CrashedPrimary, PeerAL: pf.CrashedPrimary}
	case p.Bitmap != 0 && l.Bitmap == 0:
		return Decision{Action: SyncTarget, Rule: RuleEqual, Reason: "equal current UUIDs, only the peer has a bitmap UUID: the local node finished a resync the peer did not record, bitmap-based resync as target", LocalAL: lf.CrashedPrimary, PeerAL: pf.CrashedPrimary}
	case p.Bitmap != 0:
		return Decision{Action: SplitBrain, Rule: RuleEqual, Reason: "equal current UUIDs but both nodes have a bitmap UUID: cannot tell which side wrote; resolve by hand (full sync)"}
	}
	src := lf.CrashedPrimary
	switch {
	case lf.CrashedPrimary && pf.CrashedPrimary:
		src = lf.Tiebreak
	case !lf.CrashedPrimary && !pf.CrashedPrimary:
		return Decision{Action: NoSync, Rule: RuleEqual, Reason: "equal current UUIDs: in sync"}
	}
	if src {
		return Decision{Action: SyncSource, Rule: RuleEqual, Reason: "equal current UUIDs, local node crashed as primary: resync its activity-log extents as source", LocalAL: lf.CrashedPrimary, PeerAL: pf.CrashedPrimary}
	}
	return Decision{Action: SyncTarget, Rule: RuleEqual, Reason: "equal current UUIDs, peer crashed as primary: resync its activity-log extents as target", LocalAL: lf.CrashedPrimary, PeerAL: pf.CrashedPrimary}
}

// withAL notes the crashed primaries on a bitmap-based decision.
func withAL(d Decision, lf, pf Flags) Decision {
	d.LocalAL = lf.CrashedPrimary
	d.PeerAL = pf.CrashedPrimary
	return d
}

// anyMatch reports whether any non-empty UUID of l equals any of p.
func anyMatch(l, p Set) bool {
	lu := [4]UUID{l.Current, l.Bitmap, l.History[0], l.History[1]}
	pu := [4]UUID{p.Current, p.Bitmap, p.History[0], p.History[1]}
	for _, a := range lu {
		if a == 0 {
			continue
		}
		for _, b := range pu {
			if a == b {
				return true
			}
		}
	}
	return false
}
