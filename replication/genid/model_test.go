package genid

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// errViolation marks a broken invariant, as opposed to a refused command.
var errViolation = errors.New("invariant violated")

// This file holds a two-node model of a replicated resource, shared by the
// scenario tests and the randomized test. It drives the genid transitions
// the way the replication state machine will, and keeps beside them a
// model of the data: each node's block contents (write ids), its dirty
// bitmap, and which writes were acknowledged. Its checks compare every
// decision against that data.

const nBlocks = 8

type node struct {
	name           string
	set            Set
	flags          Flags
	primaryAtSplit bool
	up             bool
	data           [nBlocks]int  // write id per block; 0 = initial zeros
	bm             [nBlocks]bool // dirty bitmap
}

type resync struct {
	src, tgt int
	pending  [nBlocks]bool
}

type cluster struct {
	n         [2]*node
	connected bool
	sync      *resync // nil when not resyncing
	nextUUID  UUID
	nextWrite int
	prev      map[int]int  // write id → the value it overwrote on the writer
	blockOf   map[int]int  // write id → its block
	related   bool         // the nodes share a lineage: Unrelated is a violation
	acked     map[int]bool // acknowledged to the initiator
	discarded map[int]bool // thrown away by an admin's decision (invalidate, discard, younger primary)
	policy    Policy
	last      [2]Decision // last decisions from connect, per node
	counts    map[string]int
}

func newCluster() *cluster {
	c := &cluster{nextUUID: 0x10, prev: map[int]int{}, blockOf: map[int]int{}, acked: map[int]bool{}, discarded: map[int]bool{}, counts: map[string]int{}}
	for i, name := range []string{"a", "b"} {
		c.n[i] = &node{name: name, up: true}
	}
	c.n[0].flags.Tiebreak = true
	return c
}

func (c *cluster) idx(name string) (int, error) {
	for i, n := range c.n {
		if n.name == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("no node %q", name)
}

func (c *cluster) uuid() UUID {
	u := c.nextUUID
	c.nextUUID++
	return u
}

func short(s Set) string {
	return fmt.Sprintf("%X:%X:%X:%X", uint64(s.Current), uint64(s.Bitmap), uint64(s.History[0]), uint64(s.History[1]))
}

func (n *node) String() string {
	var fl []string
	if n.flags.Primary {
		fl = append(fl, "primary")
	} else {
		fl = append(fl, "secondary")
	}
	if !n.up {
		fl = append(fl, "down")
	}
	if n.flags.Consistent {
		fl = append(fl, "consistent")
	} else {
		fl = append(fl, "inconsistent")
	}
	if n.flags.CrashedPrimary {
		fl = append(fl, "crashed-primary")
	}
	bits := 0
	for _, b := range n.bm {
		if b {
			bits++
		}
	}
	return fmt.Sprintf("%s %s %s bits=%d", n.name, short(n.set), strings.Join(fl, " "), bits)
}

// ---- events ----

// force: hastorctl primary --force.
func (c *cluster) force(i int) error {
	n := c.n[i]
	if !n.up || n.flags.Primary || c.connected {
		return fmt.Errorf("force %s: must be up, secondary, disconnected", n.name)
	}
	n.set = n.set.ForcePrimary(c.uuid())
	n.flags.Consistent = true
	n.flags.Primary = true
	n.primaryAtSplit = false
	return nil
}

// promote: hastorctl primary.
func (c *cluster) promote(i int) error {
	n, p := c.n[i], c.n[1-i]
	switch {
	case !n.up || n.flags.Primary:
		return fmt.Errorf("promote %s: down or already primary", n.name)
	case !n.flags.Consistent:
		return fmt.Errorf("promote %s: data inconsistent", n.name)
	case c.connected && p.flags.Primary:
		return fmt.Errorf("promote %s: peer is primary", n.name)
	}
	n.set = n.set.Promote(c.uuid(), c.connected && p.flags.Consistent)
	n.flags.Primary = true
	return nil
}

func (c *cluster) demote(i int) error {
	n := c.n[i]
	if !n.up || !n.flags.Primary {
		return fmt.Errorf("demote %s: not primary", n.name)
	}
	n.flags.Primary = false
	return nil
}

// write: the primary writes block b (acknowledged under protocol C once
// on the local disk and, if connected, the peer's).
func (c *cluster) write(i, b int) error {
	n, p := c.n[i], c.n[1-i]
	if !n.up || !n.flags.Primary {
		return fmt.Errorf("write %s: not primary", n.name)
	}
	c.nextWrite++
	w := c.nextWrite
	c.prev[w] = n.data[b]
	c.blockOf[w] = b
	n.data[b] = w
	c.acked[w] = true
	if c.connected {
		p.data[b] = w
		n.bm[b], p.bm[b] = false, false
		if c.sync != nil {
			c.sync.pending[b] = false
		}
	} else {
		n.bm[b] = true
	}
	return nil
}

// crash: node i goes down. A primary keeps CrashedPrimary; if inflight,
// it had written block b locally but not yet on the peer, so the write
// was never acknowledged; its activity log covers b, applied to its
// bitmap on attach.
func (c *cluster) crash(i int, inflight bool, b int) error {
	n := c.n[i]
	if !n.up {
		return fmt.Errorf("crash %s: already down", n.name)
	}
	if n.flags.Primary {
		n.flags.CrashedPrimary = true
		if inflight {
			c.nextWrite++
			w := c.nextWrite
			c.prev[w] = n.data[b]
			c.blockOf[w] = b
			n.data[b] = w
			n.bm[b] = true // AL extent applied to the bitmap on attach
		}
	}
	if c.connected {
		// Only the survivor sees the connection go.
		c.drop(1 - i)
	}
	n.up = false
	n.flags.Primary = false
	return nil
}

func (c *cluster) restart(i int) error {
	n := c.n[i]
	if n.up {
		return fmt.Errorf("restart %s: is up", n.name)
	}
	n.up = true
	return nil
}

// drop ends the connection; the nodes in `who` run LosePeer.
func (c *cluster) drop(who ...int) {
	for _, i := range who {
		n := c.n[i]
		if n.flags.Primary && n.set.Bitmap == 0 {
			n.primaryAtSplit = true
		}
		n.set = n.set.LosePeer(c.uuid(), n.flags.Primary)
	}
	c.connected = false
	c.sync = nil
}

func (c *cluster) disconnect() error {
	if !c.connected {
		return fmt.Errorf("disconnect: not connected")
	}
	c.drop(0, 1)
	return nil
}

// invalidate: hastorctl invalidate, on a disconnected secondary whose peer
// has consistent data.
func (c *cluster) invalidate(i int) error {
	n := c.n[i]
	if !n.up || n.flags.Primary || c.connected {
		return fmt.Errorf("invalidate %s: must be up, secondary, disconnected", n.name)
	}
	for b := range n.data {
		c.discardChain(i, b)
	}
	n.set = n.set.Invalidate()
	n.flags.Consistent = false
	n.bm = [nBlocks]bool{}
	return nil
}

// discardChain marks node i's acknowledged writes to block b as thrown
// away by the admin.
func (c *cluster) discardChain(i, b int) {
	for w := c.n[i].data[b]; w != 0; w = c.prev[w] {
		c.discarded[w] = true
	}
}

// connect performs the handshake: Decide on both nodes, checks, and
// starts what was decided. resolve is "", "discard-a", "discard-b" for a
// manual split-brain resolution. It returns the two decisions.
func (c *cluster) connect(resolve string) ([2]Decision, error) {
	a, b := c.n[0], c.n[1]
	if c.connected || !a.up || !b.up {
		return [2]Decision{}, fmt.Errorf("connect: already connected or a node is down")
	}
	d := [2]Decision{
		Decide(a.set, b.set, a.flags, b.flags),
		Decide(b.set, a.set, b.flags, a.flags),
	}
	if !mirrored(d[0], d[1]) {
		return d, fmt.Errorf("%w: asymmetric decisions: a %v, b %v", errViolation, d[0], d[1])
	}
	if d[0].Action == SplitBrain {
		switch resolve {
		case "discard-a", "discard-b":
			v := 0
			if resolve == "discard-b" {
				v = 1
			}
			for blk := range c.n[v].data {
				c.discardChain(v, blk)
			}
			d[0] = Discard(d[0], v == 0, a.flags, b.flags)
			d[1] = Discard(d[1], v == 1, b.flags, a.flags)
		default:
			sides := [2]SplitSide{}
			for i, n := range c.n {
				sides[i] = SplitSide{Changed: count(n.bm), Primary: n.flags.Primary, PrimaryAtSplit: n.primaryAtSplit, Tiebreak: n.flags.Tiebreak}
			}
			d[0] = Recover(c.policy, d[0], sides[0], sides[1])
			d[1] = Recover(c.policy, d[1], sides[1], sides[0])
			if d[0].Action.IsSync() && c.policy == PolicyDiscardYoungerPrimary {
				v := 0
				if d[0].Action.IsSource() {
					v = 1
				}
				for blk := range c.n[v].data {
					c.discardChain(v, blk)
				}
			}
		}
		if !mirrored(d[0], d[1]) {
			return d, fmt.Errorf("%w: asymmetric split-brain resolution: a %v, b %v", errViolation, d[0], d[1])
		}
	}
	c.last = d
	c.counts[fmt.Sprintf("%v/%d", d[0].Action, d[0].Rule)]++
	if err := c.check(d[0]); err != nil {
		return d, err
	}
	switch act := d[0].Action; {
	case act == NoSync:
		c.connected = true
		if d[0].Rule != RuleBothEmpty {
			a.flags.CrashedPrimary, b.flags.CrashedPrimary = false, false
			a.primaryAtSplit, b.primaryAtSplit = false, false
			a.bm, b.bm = [nBlocks]bool{}, [nBlocks]bool{}
		}
	case act.IsSync():
		src := 0
		if !act.IsSource() {
			src = 1
		}
		tgt := 1 - src
		s := &resync{src: src, tgt: tgt}
		for blk := range s.pending {
			s.pending[blk] = act.IsFull() || a.bm[blk] || b.bm[blk]
		}
		a.bm, b.bm = s.pending, s.pending
		c.n[src].set = c.n[src].set.StartSyncSource(c.uuid())
		c.n[tgt].set = c.n[tgt].set.StartSyncTarget(c.n[src].set.SyncUUID())
		c.n[tgt].flags.Consistent = false
		c.connected = true
		c.sync = s
	}
	return d, nil
}

// step copies up to k pending blocks from source to target.
func (c *cluster) step(k int) error {
	s := c.sync
	if s == nil {
		return fmt.Errorf("step: no resync")
	}
	for blk := range s.pending {
		if k == 0 {
			break
		}
		if s.pending[blk] {
			c.n[s.tgt].data[blk] = c.n[s.src].data[blk]
			s.pending[blk] = false
			c.n[s.src].bm[blk], c.n[s.tgt].bm[blk] = false, false
			k--
		}
	}
	return nil
}

// finish completes a resync whose blocks were all copied. race: "" both
// record it; "source" only the source records it, then the link drops;
// "target" only the target does (it adopted the source's tuple, but the
// source did not persist its own), then the link drops.
func (c *cluster) finish(race string) error {
	s := c.sync
	if s == nil || count(s.pending) != 0 {
		return fmt.Errorf("finish: no resync, or blocks still pending")
	}
	src, tgt := c.n[s.src], c.n[s.tgt]
	fin := src.set.FinishSyncSource()
	switch race {
	case "":
		src.set = fin
		tgt.set = FinishSyncTarget(fin)
		tgt.flags.Consistent = true
	case "source":
		src.set = fin
	case "target":
		tgt.set = FinishSyncTarget(fin)
		tgt.flags.Consistent = true
	default:
		return fmt.Errorf("finish: bad race %q", race)
	}
	if race == "" || race == "target" {
		src.flags.CrashedPrimary, tgt.flags.CrashedPrimary = false, false
		src.primaryAtSplit, tgt.primaryAtSplit = false, false
	}
	c.sync = nil
	if race != "" {
		c.drop(0, 1)
	}
	return nil
}

func count(bm [nBlocks]bool) uint64 {
	var k uint64
	for _, b := range bm {
		if b {
			k++
		}
	}
	return k
}

// ---- invariants ----

// inChain reports whether write w is in node i's lineage of block b.
func (c *cluster) inChain(i, b, w int) bool {
	for x := c.n[i].data[b]; x != 0; x = c.prev[x] {
		if x == w {
			return true
		}
	}
	return false
}

// check verifies decision d (node a's view) against the data model:
//   - NoSync only if the data are identical (UG-GI: equal current UUIDs
//     mean in sync);
//   - a sync never drops an acknowledged, not admin-discarded write of the
//     target that the source lacks;
//   - a bitmap-based sync's union of bitmaps covers every differing block;
//   - the data never look unrelated: both nodes share a lineage.
func (c *cluster) check(d Decision) error {
	a, b := c.n[0], c.n[1]
	switch act := d.Action; {
	case act == NoSync:
		if a.data != b.data {
			return fmt.Errorf("%w: NoSync (rule %d) but data differ: a %v, b %v", errViolation, d.Rule, a.data, b.data)
		}
	case act.IsSync():
		src, tgt := 0, 1
		if !act.IsSource() {
			src, tgt = 1, 0
		}
		for blk := 0; blk < nBlocks; blk++ {
			for w := c.n[tgt].data[blk]; w != 0; w = c.prev[w] {
				if c.acked[w] && !c.discarded[w] && !c.inChain(src, blk, w) {
					return fmt.Errorf("%w: %v (rule %d) loses acknowledged write %d of %s on block %d", errViolation, act, d.Rule, w, c.n[tgt].name, blk)
				}
			}
			if !act.IsFull() && a.data[blk] != b.data[blk] && !a.bm[blk] && !b.bm[blk] {
				return fmt.Errorf("%w: %v (rule %d): block %d differs but is in neither bitmap", errViolation, act, d.Rule, blk)
			}
		}
	case act == Unrelated && c.related:
		return fmt.Errorf("%w: unrelated data between nodes of one resource: a %s, b %s", errViolation, short(a.set), short(b.set))
	}
	return nil
}

// checkAcked verifies that every acknowledged, not discarded write is in
// the lineage of node i.
func (c *cluster) checkAcked(i int) error {
	var ws []int
	for w := range c.acked {
		ws = append(ws, w)
	}
	sort.Ints(ws)
	for _, w := range ws {
		if c.discarded[w] {
			continue
		}
		if !c.inChain(i, c.blockOf[w], w) {
			return fmt.Errorf("%w: acknowledged write %d missing on %s", errViolation, w, c.n[i].name)
		}
	}
	return nil
}

// mirrored reports whether the two nodes' decisions are mirror images
// (reasons aside: they are worded from each node's side).
func mirrored(a, b Decision) bool {
	m := a.Mirror()
	return m.Action == b.Action && m.Rule == b.Rule && m.LocalAL == b.LocalAL && m.PeerAL == b.PeerAL
}
