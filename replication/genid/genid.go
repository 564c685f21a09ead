package genid

import "fmt"

// UUID identifies one data generation. Zero means "empty": no generation.
type UUID uint64

// String formats u as 16 hex digits, like DRBD's logs.
func (u UUID) String() string { return fmt.Sprintf("%016X", uint64(u)) }

// Set is a node's generation identifier tuple (UG-GI "The generation
// identifier tuple").
//
//   - Current identifies the node's current data generation. Two nodes
//     that are connected and both UpToDate have the same Current.
//   - Bitmap identifies the generation against which the node's on-disk
//     dirty bitmap tracks changes. It is empty while the node is connected
//     and in sync.
//   - History holds the two generations before the current one, most
//     recent first.
type Set struct {
	Current, Bitmap UUID
	History         [2]UUID
}

// String formats s as DRBD does: current:bitmap:history0:history1.
func (s Set) String() string {
	return fmt.Sprintf("%v:%v:%v:%v", s.Current, s.Bitmap, s.History[0], s.History[1])
}

// pushHistory rotates u into History[0], dropping History[1]. An empty u
// is not rotated in: it carries nothing and would push out a real
// ancestor.
func (s Set) pushHistory(u UUID) Set {
	if u != 0 {
		s.History[1] = s.History[0]
		s.History[0] = u
	}
	return s
}

// contains reports whether the non-empty u is in History.
func (s Set) inHistory(u UUID) bool {
	return u != 0 && (s.History[0] == u || s.History[1] == u)
}

// NewCurrent starts a new data generation identified by rnd (UG-GI "Start
// of a new data generation"): rnd becomes Current, and the previous
// Current becomes Bitmap, the generation the dirty bitmap now tracks
// changes against (the one the peer still has).
//
// If Bitmap is already set, the bitmap is already tracking changes against
// an older generation, which covers every change since; Bitmap is kept and
// the previous Current goes to History instead. (The guide only describes
// the case of an empty Bitmap; Promote and LosePeer never start a new
// generation with a non-empty Bitmap, only ForcePrimary does.)
//
// rnd must be random and non-zero.
func (s Set) NewCurrent(rnd UUID) Set {
	if s.Bitmap == 0 {
		s.Bitmap = s.Current
	} else {
		s = s.pushHistory(s.Current)
	}
	s.Current = rnd
	return s
}

// Promote returns s after the node becomes primary. UG-GI "Data
// generations": a disconnected resource switching to the primary role
// starts a new data generation. It does so only if Bitmap is empty (no
// generation was started since the last time the node was in sync with
// its peer): otherwise the node's data already forms a generation of its
// own, tracked by the bitmap, and nothing changes. connected means
// connected to a peer whose disk is UpToDate: then writes are replicated
// and no new generation starts.
func (s Set) Promote(rnd UUID, connected bool) Set {
	if connected || s.Bitmap != 0 {
		return s
	}
	return s.NewCurrent(rnd)
}

// LosePeer returns s after the node lost its connection to the peer
// (network failure, disconnect, or the peer's crash). UG-GI "Start of a new
// data generation": a primary starts a new generation (the old Current
// becomes Bitmap); a secondary's tuple is unchanged. As in Promote, a
// primary whose Bitmap is already set (it was a sync source) keeps its
// generation: its bitmap already tracks everything the peer lacks.
func (s Set) LosePeer(rnd UUID, primary bool) Set {
	if !primary || s.Bitmap != 0 {
		return s
	}
	return s.NewCurrent(rnd)
}

// ForcePrimary returns s after "hastorctl primary --force" (drbdadm
// primary --force): the admin declares this node's data authoritative. On
// a new resource (Current empty) rnd becomes the first generation, which
// the peer will then receive by full sync (UG-GI "Data generations": the
// initial device full sync starts a generation). Otherwise a new
// generation starts unconditionally (NewCurrent), so that the forced data
// can never be mistaken for the generation it came from.
func (s Set) ForcePrimary(rnd UUID) Set {
	if s.Current == 0 {
		s.Current = rnd
		return s
	}
	return s.NewCurrent(rnd)
}

// StartSyncSource returns the sync source's tuple when a resync begins
// (UG-GI "Start of re-synchronization"): Current is unchanged, the old
// Bitmap rotates into History, and rnd, a new UUID, becomes Bitmap. The
// source sends rnd (SyncUUID) to the target, for StartSyncTarget.
//
// If the resync is interrupted, the source's Bitmap still equals the
// target's Current, so the next connect decides SyncSource again (rule 4)
// and the resync resumes from the bits still set.
func (s Set) StartSyncSource(rnd UUID) Set {
	s = s.pushHistory(s.Bitmap)
	s.Bitmap = rnd
	return s
}

// SyncUUID is the UUID a sync source sends its target at the start of a
// resync: its Bitmap after StartSyncSource.
func (s Set) SyncUUID() UUID { return s.Bitmap }

// StartSyncTarget returns the sync target's tuple when a resync begins:
// the source's SyncUUID becomes Current (UG-GI "Start of
// re-synchronization"); the old Current is not kept, since the target's
// data is becoming a copy of the source's and is Inconsistent until the
// resync ends.
//
// The guide says the target's Bitmap and History stay unchanged. Bitmap is
// cleared here instead (as DRBD's implementation does): the target's
// bitmap now holds the union received from the source, tracked against
// the source's generation, and a stale Bitmap would make the documented
// rule 4 ("the peer's Bitmap is empty") fail when an interrupted resync
// reconnects, turning a resumable resync into a false split brain.
func (s Set) StartSyncTarget(syncUUID UUID) Set {
	s.Current = syncUUID
	s.Bitmap = 0
	return s
}

// FinishSyncSource returns the sync source's tuple when a resync completes
// (UG-GI "Completion of re-synchronization"): Current is unchanged, Bitmap
// rotates into History (History[0] moving to History[1]), and Bitmap
// becomes empty. Send the result to the target for FinishSyncTarget.
func (s Set) FinishSyncSource() Set {
	s = s.pushHistory(s.Bitmap)
	s.Bitmap = 0
	return s
}

// FinishSyncTarget returns the sync target's tuple when a resync
// completes: it adopts the source's whole tuple (UG-GI "Completion of
// re-synchronization"). source is the tuple after FinishSyncSource.
func FinishSyncTarget(source Set) Set { return source }

// Invalidate returns s after "hastorctl invalidate": the admin declares
// the local data out of date, to be replaced by a full sync from the peer.
// Current becomes empty (kept in History), so that the next connect
// decides rule 2 (FullSyncTarget). The guide does not say how drbdadm
// invalidate changes the tuple; emptying Current makes the decision
// explicit instead of relying on a fully set bitmap. The caller also marks
// the disk Inconsistent (Flags.Consistent false).
func (s Set) Invalidate() Set {
	s = s.pushHistory(s.Current)
	s.Current = 0
	s.Bitmap = 0
	return s
}
