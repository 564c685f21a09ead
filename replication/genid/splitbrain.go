package genid

import "fmt"

// Policy is a resource's split-brain auto-recovery policy (DRBD's
// after-sb-0pri). Issue 4: refuse by default; the others are opt-in.
type Policy int

const (
	// PolicyDisconnect: never recover automatically; the admin decides
	// with Discard. The default.
	PolicyDisconnect Policy = iota
	// PolicyDiscardZeroChanges: if one node wrote nothing since the
	// split, it takes the other's changes. If neither wrote, the node
	// without Tiebreak takes the other's (nothing is lost either way).
	PolicyDiscardZeroChanges
	// PolicyDiscardYoungerPrimary: the node that became primary later
	// (promoted while disconnected, as opposed to the one that was
	// primary when the connection was lost) discards its changes.
	PolicyDiscardYoungerPrimary
)

var policyNames = [...]string{"disconnect", "discard-zero-changes", "discard-younger-primary"}

func (p Policy) String() string {
	if p >= 0 && int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy parses the configuration spelling of a policy.
func ParsePolicy(s string) (Policy, error) {
	for i, n := range policyNames {
		if n == s {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownPolicy, s)
}

// SplitSide is what Recover needs to know about one node after a split
// brain.
type SplitSide struct {
	// Changed is the number of blocks set in the node's dirty bitmap: the
	// blocks it wrote since the split, its activity-log extents included
	// if it crashed as primary.
	Changed uint64
	// Primary: the node is primary now.
	Primary bool
	// PrimaryAtSplit: the node was primary when the connection was lost
	// (its generation started in LosePeer), rather than promoted while
	// disconnected (Promote). DRBD keeps this in the lowest bit of the
	// bitmap UUID; hastor keeps it as a metadata flag.
	PrimaryAtSplit bool
	// Tiebreak: as in Flags.
	Tiebreak bool
}

// Recover applies policy p to a split-brain decision d (from Decide on the
// local node) and returns the decision to carry out: a bitmap-based
// SyncTarget if the local node discards its changes, SyncSource if the
// peer does, or d itself (still SplitBrain, with the reason extended) if
// the policy does not decide. Any other d is returned unchanged.
//
// Rules, stricter than DRBD's where DRBD could lose data silently:
//   - only a rule-6 split brain (same parent generation, so the union of
//     the two bitmaps covers every block either side changed) is
//     recoverable; UG-GI says auto-recovery is moot for the others;
//   - the data of a node that is primary now is never discarded (DRBD's
//     after-sb-1pri "consensus"/"discard-secondary" spirit): its
//     application would see its data change underneath it;
//   - discard-younger-primary with no younger primary (both, or neither,
//     were primary at the split) refuses instead of falling back to
//     discard-least-changes as DRBD does.
//
// Recover is symmetric like Decide when exactly one side has Tiebreak.
func Recover(p Policy, d Decision, local, peer SplitSide) Decision {
	if d.Action != SplitBrain {
		return d
	}
	refuse := func(why string) Decision {
		d.Reason += "; policy " + p.String() + " does not recover: " + why
		return d
	}
	if d.Rule != RuleBitmaps {
		return refuse("the nodes do not share the parent generation, so their bitmaps do not cover the changes")
	}
	var discardLocal bool
	switch p {
	case PolicyDisconnect:
		return refuse("resolve by hand")
	case PolicyDiscardZeroChanges:
		switch {
		case local.Changed == 0 && peer.Changed == 0:
			discardLocal = !local.Tiebreak
		case local.Changed == 0:
			discardLocal = true
		case peer.Changed == 0:
			discardLocal = false
		default:
			return refuse(fmt.Sprintf("both nodes changed data (local %d blocks, peer %d)", local.Changed, peer.Changed))
		}
	case PolicyDiscardYoungerPrimary:
		if local.PrimaryAtSplit == peer.PrimaryAtSplit {
			return refuse("no single younger primary")
		}
		discardLocal = peer.PrimaryAtSplit
	default:
		return refuse("unknown policy")
	}
	victim, victimName := local, "local node"
	if !discardLocal {
		victim, victimName = peer, "peer"
	}
	if victim.Primary {
		return refuse("it would discard the data of the " + victimName + ", which is primary")
	}
	out := Decision{Action: SyncTarget, Rule: d.Rule,
		Reason: fmt.Sprintf("split brain recovered by policy %v: the %s discards its changes (%d blocks), bitmap-based resync", p, victimName, victim.Changed)}
	if !discardLocal {
		out.Action = SyncSource
	}
	return out
}

// Discard applies the admin's resolution of a split brain d (hastorctl,
// like drbdadm connect --discard-my-data): the node named by discardLocal
// (true: the local node) throws its changes away and becomes sync target.
// After a rule-6 split brain that is a bitmap-based resync; after any other
// split brain, a full one. The discarding node must not be primary
// (Refused otherwise). Any d but SplitBrain is returned unchanged.
func Discard(d Decision, discardLocal bool, lf, pf Flags) Decision {
	if d.Action != SplitBrain {
		return d
	}
	if discardLocal && lf.Primary || !discardLocal && pf.Primary {
		d.Action = Refused
		d.Reason += "; cannot discard the data of a primary: demote it first"
		return d
	}
	a := SyncTarget
	if d.Rule != RuleBitmaps {
		a = FullSyncTarget
	}
	who := "local node"
	if !discardLocal {
		a = a.Mirror()
		who = "peer"
	}
	return Decision{Action: a, Rule: d.Rule, Reason: "split brain resolved by hand: the " + who + " discards its changes"}
}
