package genid

import (
	"errors"
	"math/rand/v2"
	"testing"
)

var (
	consistent = Flags{Consistent: true}
	fresh      = Flags{}
)

// TestDecideRules checks each rule of DRBD UG-GI "How DRBD uses
// generation identifiers" on hand-made tuples, plus the disk-state and
// role checks after it.
func TestDecideRules(t *testing.T) {
	X, Y, Z, R, H := UUID(0x10), UUID(0x20), UUID(0x30), UUID(0x40), UUID(0x50)
	primary := Flags{Primary: true, Consistent: true}
	crashed := Flags{CrashedPrimary: true, Consistent: true}
	tests := []struct {
		name        string
		local, peer Set
		lf, pf      Flags
		want        Action
		rule        int
	}{
		{"both empty", Set{}, Set{}, fresh, fresh, NoSync, 1},
		{"peer empty", Set{Current: X}, Set{}, consistent, fresh, FullSyncSource, 2},
		{"local empty", Set{History: [2]UUID{X}}, Set{Current: X}, fresh, consistent, FullSyncTarget, 2},
		{"equal", Set{Current: X, History: [2]UUID{H}}, Set{Current: X, History: [2]UUID{H}}, consistent, consistent, NoSync, 3},
		{"equal, local crashed primary", Set{Current: X}, Set{Current: X}, crashed, consistent, SyncSource, 3},
		{"equal, peer crashed primary", Set{Current: X}, Set{Current: X}, consistent, crashed, SyncTarget, 3},
		{"equal, both crashed, local tiebreak", Set{Current: X}, Set{Current: X}, Flags{CrashedPrimary: true, Consistent: true, Tiebreak: true}, crashed, SyncSource, 3},
		{"equal, both crashed, peer tiebreak", Set{Current: X}, Set{Current: X}, crashed, Flags{CrashedPrimary: true, Consistent: true, Tiebreak: true}, SyncTarget, 3},
		{"equal, missed resync end", Set{Current: X, Bitmap: R}, Set{Current: X, History: [2]UUID{R}}, primary, consistent, SyncSource, 3},
		{"equal, both bitmaps", Set{Current: X, Bitmap: R}, Set{Current: X, Bitmap: Y}, consistent, consistent, SplitBrain, 3},
		{"bitmap is peer's current", Set{Current: Y, Bitmap: X}, Set{Current: X}, primary, consistent, SyncSource, 4},
		{"peer's bitmap is current", Set{Current: X}, Set{Current: Y, Bitmap: X}, consistent, primary, SyncTarget, 4},
		{"resume interrupted resync", Set{Current: Y, Bitmap: R, History: [2]UUID{X}}, Set{Current: R}, primary, fresh, SyncSource, 4},
		{"current in peer's history", Set{Current: X}, Set{Current: Y, History: [2]UUID{Z, X}}, consistent, consistent, FullSyncTarget, 5},
		{"peer's current in history", Set{Current: Y, History: [2]UUID{X}}, Set{Current: X, Bitmap: Z}, consistent, consistent, FullSyncSource, 5},
		{"bitmaps match", Set{Current: Y, Bitmap: X}, Set{Current: Z, Bitmap: X}, consistent, consistent, SplitBrain, 6},
		{"only history matches", Set{Current: Y, Bitmap: R, History: [2]UUID{H}}, Set{Current: Z, Bitmap: X, History: [2]UUID{H}}, consistent, consistent, SplitBrain, 7},
		{"nothing matches", Set{Current: Y, Bitmap: X}, Set{Current: Z, Bitmap: R}, consistent, consistent, Unrelated, 8},
		{"nothing matches, one inconsistent", Set{Current: Y}, Set{Current: Z}, consistent, fresh, Unrelated, 8},
		{"disk states: split brain, peer inconsistent", Set{Current: Y, Bitmap: X}, Set{Current: Z, Bitmap: X}, consistent, fresh, FullSyncSource, 9},
		{"disk states: equal, local inconsistent", Set{Current: X}, Set{Current: X}, fresh, consistent, FullSyncTarget, 9},
		{"source inconsistent", Set{Current: Y, Bitmap: X}, Set{Current: X}, fresh, fresh, Refused, 10},
		{"primary would be target", Set{Current: X}, Set{Current: X}, primary, crashed, Refused, 11},
		{"peer primary would be target", Set{Current: X}, Set{Current: X}, crashed, primary, Refused, 11},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.local, tc.peer, tc.lf, tc.pf)
			if d.Action != tc.want || d.Rule != tc.rule {
				t.Errorf("Decide = %v (%s), want %v rule %d", d, d.Reason, tc.want, tc.rule)
			}
			if d.Reason == "" {
				t.Error("empty reason")
			}
			if m := Decide(tc.peer, tc.local, tc.pf, tc.lf); !mirrored(d, m) {
				t.Errorf("peer decides %v, want the mirror of %v", m, d)
			}
		})
	}
}

// TestDecideSymmetric checks on random tuples drawn from a small pool of
// UUIDs (so that they collide often) that the two nodes always take
// mirrored decisions, whatever the tuples: otherwise both could become
// sync source, or target.
func TestDecideSymmetric(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	u := func() UUID {
		if r.IntN(3) == 0 {
			return 0
		}
		return UUID(1 + r.IntN(5))
	}
	set := func() Set { return Set{Current: u(), Bitmap: u(), History: [2]UUID{u(), u()}} }
	flags := func() Flags {
		return Flags{Primary: r.IntN(3) == 0, CrashedPrimary: r.IntN(3) == 0, Consistent: r.IntN(4) != 0}
	}
	for i := 0; i < 200000; i++ {
		l, p, lf, pf := set(), set(), flags(), flags()
		lf.Tiebreak = r.IntN(2) == 0
		pf.Tiebreak = !lf.Tiebreak
		d, m := Decide(l, p, lf, pf), Decide(p, l, pf, lf)
		if !mirrored(d, m) {
			t.Fatalf("local %v %+v, peer %v %+v: local %v, peer %v", l, lf, p, pf, d, m)
		}
		if d.Action.IsSync() {
			src := lf
			if !d.Action.IsSource() {
				src = pf
			}
			if !src.Consistent {
				t.Fatalf("local %v %+v, peer %v %+v: %v from an inconsistent source", l, lf, p, pf, d)
			}
		}
		ls, ps := SplitSide{Changed: uint64(r.IntN(2)), Primary: lf.Primary, PrimaryAtSplit: r.IntN(2) == 0, Tiebreak: lf.Tiebreak},
			SplitSide{Changed: uint64(r.IntN(2)), Primary: pf.Primary, PrimaryAtSplit: r.IntN(2) == 0, Tiebreak: pf.Tiebreak}
		for _, pol := range []Policy{PolicyDisconnect, PolicyDiscardZeroChanges, PolicyDiscardYoungerPrimary} {
			if a, b := Recover(pol, d, ls, ps), Recover(pol, m, ps, ls); !mirrored(a, b) {
				t.Fatalf("Recover(%v) on %v: local %v, peer %v", pol, d, a, b)
			}
		}
	}
}

func TestTransitions(t *testing.T) {
	X, Y, R, R2 := UUID(0x10), UUID(0x20), UUID(0x30), UUID(0x40)
	s := Set{}.ForcePrimary(X)
	if s != (Set{Current: X}) {
		t.Fatalf("ForcePrimary on new: %v", s)
	}
	// UG-GI "Start of a new data generation".
	if got := s.LosePeer(Y, true); got != (Set{Current: Y, Bitmap: X}) {
		t.Errorf("primary LosePeer: %v", got)
	}
	if got := s.LosePeer(Y, false); got != s {
		t.Errorf("secondary LosePeer changed the tuple: %v", got)
	}
	if got := s.Promote(Y, true); got != s {
		t.Errorf("connected Promote changed the tuple: %v", got)
	}
	p := s.Promote(Y, false)
	if p != (Set{Current: Y, Bitmap: X}) {
		t.Errorf("disconnected Promote: %v", p)
	}
	if got := p.Promote(R, false); got != p {
		t.Errorf("Promote with a bitmap UUID changed the tuple: %v", got)
	}
	if got := p.ForcePrimary(R); got != (Set{Current: R, Bitmap: X, History: [2]UUID{Y}}) {
		t.Errorf("ForcePrimary with a bitmap UUID: %v", got)
	}
	// UG-GI "Start of re-synchronization" and "Completion".
	src := p.StartSyncSource(R)
	if src != (Set{Current: Y, Bitmap: R, History: [2]UUID{X}}) || src.SyncUUID() != R {
		t.Errorf("StartSyncSource: %v", src)
	}
	tgt := Set{Current: X, Bitmap: R2}.StartSyncTarget(src.SyncUUID())
	if tgt != (Set{Current: R}) {
		t.Errorf("StartSyncTarget: %v", tgt)
	}
	fin := src.FinishSyncSource()
	if fin != (Set{Current: Y, History: [2]UUID{R, X}}) {
		t.Errorf("FinishSyncSource: %v", fin)
	}
	if FinishSyncTarget(fin) != fin {
		t.Error("FinishSyncTarget does not adopt the source's tuple")
	}
	if got := fin.Invalidate(); got != (Set{History: [2]UUID{Y, R}}) {
		t.Errorf("Invalidate: %v", got)
	}
}

func TestRecover(t *testing.T) {
	sb := Decision{Action: SplitBrain, Rule: RuleBitmaps}
	old := Decision{Action: SplitBrain, Rule: RuleSomeMatch}
	tests := []struct {
		name        string
		p           Policy
		d           Decision
		local, peer SplitSide
		want        Action
	}{
		{"disconnect", PolicyDisconnect, sb, SplitSide{}, SplitSide{Changed: 1}, SplitBrain},
		{"zero: local unchanged", PolicyDiscardZeroChanges, sb, SplitSide{}, SplitSide{Changed: 3}, SyncTarget},
		{"zero: peer unchanged", PolicyDiscardZeroChanges, sb, SplitSide{Changed: 3}, SplitSide{}, SyncSource},
		{"zero: both changed", PolicyDiscardZeroChanges, sb, SplitSide{Changed: 1}, SplitSide{Changed: 1}, SplitBrain},
		{"zero: neither changed, local tiebreak", PolicyDiscardZeroChanges, sb, SplitSide{Tiebreak: true}, SplitSide{}, SyncSource},
		{"zero: victim primary", PolicyDiscardZeroChanges, sb, SplitSide{Primary: true}, SplitSide{Changed: 3}, SplitBrain},
		{"zero: old ancestor", PolicyDiscardZeroChanges, old, SplitSide{}, SplitSide{Changed: 3}, SplitBrain},
		{"younger: peer younger", PolicyDiscardYoungerPrimary, sb, SplitSide{Changed: 2, PrimaryAtSplit: true}, SplitSide{Changed: 5}, SyncSource},
		{"younger: local younger", PolicyDiscardYoungerPrimary, sb, SplitSide{Changed: 2}, SplitSide{Changed: 5, PrimaryAtSplit: true}, SyncTarget},
		{"younger: both promoted while disconnected", PolicyDiscardYoungerPrimary, sb, SplitSide{Changed: 2}, SplitSide{Changed: 5}, SplitBrain},
		{"not a split brain", PolicyDiscardZeroChanges, Decision{Action: NoSync, Rule: 3}, SplitSide{}, SplitSide{}, NoSync},
	}
	for _, tc := range tests {
		got := Recover(tc.p, tc.d, tc.local, tc.peer)
		if got.Action != tc.want {
			t.Errorf("%s: %v (%s), want %v", tc.name, got, got.Reason, tc.want)
		}
	}
	if d := Discard(sb, true, consistent, consistent); d.Action != SyncTarget {
		t.Errorf("Discard local, rule 6: %v", d)
	}
	if d := Discard(old, false, consistent, consistent); d.Action != FullSyncSource {
		t.Errorf("Discard peer, rule 7: %v", d)
	}
	if d := Discard(sb, true, Flags{Primary: true, Consistent: true}, consistent); d.Action != Refused {
		t.Errorf("Discard of a primary: %v", d)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{PolicyDisconnect, PolicyDiscardZeroChanges, PolicyDiscardYoungerPrimary} {
		got, err := ParsePolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParsePolicy("discard-least-changes"); !errors.Is(err, ErrUnknownPolicy) {
		t.Errorf("unknown policy: %v", err)
	}
	if Action(99).String() != "Action(99)" || SplitBrain.String() != "SplitBrain" {
		t.Error("Action.String")
	}
}

// FuzzDecide checks symmetry on arbitrary tuples.
func FuzzDecide(f *testing.F) {
	f.Add(uint64(1), uint64(0), uint64(0), uint64(0), uint64(1), uint64(0), uint64(0), uint64(0), uint8(0))
	f.Fuzz(func(t *testing.T, lc, lb, lh0, lh1, pc, pb, ph0, ph1 uint64, fl uint8) {
		l := Set{UUID(lc), UUID(lb), [2]UUID{UUID(lh0), UUID(lh1)}}
		p := Set{UUID(pc), UUID(pb), [2]UUID{UUID(ph0), UUID(ph1)}}
		lf := Flags{Primary: fl&1 != 0, CrashedPrimary: fl&2 != 0, Consistent: fl&4 != 0, Tiebreak: fl&64 != 0}
		pf := Flags{Primary: fl&8 != 0, CrashedPrimary: fl&16 != 0, Consistent: fl&32 != 0, Tiebreak: fl&64 == 0}
		if d, m := Decide(l, p, lf, pf), Decide(p, l, pf, lf); !mirrored(d, m) {
			t.Fatalf("local %v, peer %v: %v vs %v", d, m, l, p)
		}
	})
}
