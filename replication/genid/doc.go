// Package genid holds DRBD-style generation identifiers for a replicated
// resource and the decision, taken when two nodes connect, whether and in
// which direction to resynchronize, or whether they have split brain or
// unrelated data.
//
// It is pure logic: no I/O, no clock, no randomness of its own (callers
// pass fresh random UUIDs in), no goroutines. The replication state
// machine calls it; the meta package persists the Set it returns.
//
// The semantics follow the DRBD User's Guide (8.4 and 9.x), chapter "DRBD
// Internals", section "Generation Identifiers" (below: UG-GI), with its
// subsections "Data generations", "The generation identifier tuple", "How
// generation identifiers change" and "How DRBD uses generation
// identifiers". Where the guide is silent or ambiguous the choice made here
// is documented on the function concerned.
//
// # Callers' duties
//
//   - Persist the Set returned by a transition (with two checksummed copies,
//     see the meta package) before acting on it: before the first write of
//     a new generation is acknowledged, before resync starts sending
//     blocks, before the sync target reports itself UpToDate.
//   - Call the transition that matches each event: Promote on a role
//     change to primary, LosePeer when the connection to the peer goes
//     away, ForcePrimary for "hastorctl primary --force",
//     StartSyncSource/StartSyncTarget when a resync begins,
//     FinishSyncSource/FinishSyncTarget when it ends, Invalidate for
//     "hastorctl invalidate". UUIDs passed in must be random and non-zero.
//   - Keep the Flags that Decide needs (Primary, CrashedPrimary, Consistent,
//     Tiebreak) in the metadata too, and exchange Set and Flags with the
//     peer on connect. Decide(local, peer, lf, pf) on one node and
//     Decide(peer, local, pf, lf) on the other give mirrored answers.
//   - For a bitmap-based resync, exchange the two dirty bitmaps and resync
//     their union. A node that crashed as primary must have marked its
//     activity-log extents in its bitmap on attach (Decision.LocalAL and
//     Decision.PeerAL say when this matters).
//   - A SplitBrain decision means: do not connect, report it. Recover
//     applies an opt-in automatic policy; Discard applies the admin's
//     choice.
package genid
