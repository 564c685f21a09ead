package replication

import (
	"fmt"

	"hastor/replication/meta"
)

// verifyChunk is the number of 4 KiB blocks one verify request covers: its
// mismatch mask fits the message's 32-bit Flags.
const verifyChunk = 32

// Verify starts an online verify (hastorctl verify): this node reads its
// whole data area in block order, sends a digest of each 4 KiB block, and
// the peer compares them with its own. A block found different is checked
// a second time before it is marked out of sync on both nodes (a write in
// flight can make a block differ for a moment); when the pass ends, the
// marked blocks are resynced from the primary (or, with no primary, from
// this node).
func (m *Machine) Verify() error {
	switch {
	case m.conn != Established:
		return refuse("verify needs an established connection with nothing to resync (the connection is %s)", m.conn)
	case m.vs.active:
		return refuse("a verify is already running")
	}
	m.vs = verify{active: true, total: m.blocks * meta.BlockSize, started: m.now}
	m.message = ""
	m.out.StateChanged = true
	m.progress()
	return nil
}

func (m *Machine) verifyStep() {
	vs := &m.vs
	if !vs.active || !m.sessionUp || m.conn != Established {
		return
	}
	for vs.inflight < m.cfg.ResyncWindow && uint64(vs.pos) < m.blocks {
		end := min(vs.pos+verifyChunk, meta.Block(m.blocks))
		o := &op{id: m.allocID(), kind: opVerifyRead, first: vs.pos, end: end,
			off: int64(vs.pos) * meta.BlockSize, n: int64(end-vs.pos) * meta.BlockSize}
		if !m.startVerifyRead(o) {
			return
		}
		vs.pos = end
	}
	if vs.inflight == 0 && uint64(vs.pos) >= m.blocks {
		m.finishVerify()
	}
}

// startVerifyRead issues the digest read of o unless an application write
// to its range is waiting or in flight.
func (m *Machine) startVerifyRead(o *op) bool {
	for _, x := range m.ops {
		if x.kind == opWrite && (!x.issued || !x.localDone) && overlaps(x, o) {
			return false
		}
	}
	m.ops[o.id] = o
	m.vs.inflight++
	m.out.Local = append(m.out.Local, LocalIO{ID: o.id, Kind: IOBlockDigests, Off: o.off, Len: o.n})
	return true
}

func (m *Machine) verifyReadDone(o *op, err error, digests []byte) {
	if err != nil || !m.sessionUp || !m.vs.active {
		delete(m.ops, o.id)
		m.vs.inflight--
		if err != nil {
			m.vs = verify{}
			m.message = fmt.Sprintf("verify stopped: local read failed: %v", err)
		}
		return
	}
	o.localDone = true
	m.stats.DiskRead += uint64(o.n)
	m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgVerifyReq, ID: uint64(o.id), Off: o.off, Len: o.n}, Data: digests})
}

func (m *Machine) verifyReply(msg Msg) {
	o := m.ops[ReqID(msg.ID)]
	if o == nil || o.kind != opVerifyRead {
		return
	}
	delete(m.ops, o.id)
	m.vs.inflight--
	if !m.vs.active {
		return
	}
	if msg.Flags == 0 {
		m.vs.done += uint64(o.n)
		return
	}
	if !o.recheck { // first mismatch: check again
		for i := 0; i < int(o.n/meta.BlockSize); i++ {
			if msg.Flags&(1<<i) == 0 {
				continue
			}
			b := o.first + meta.Block(i)
			r := &op{id: m.allocID(), kind: opVerifyRead, first: b, end: b + 1,
				off: int64(b) * meta.BlockSize, n: meta.BlockSize, recheck: true}
			if !m.startVerifyRead(r) {
				// A write to it is in flight: it is about to change
				// anyway, and goes to the peer.
				continue
			}
		}
		m.vs.done += uint64(o.n)
		return
	}
	// Found different twice: out of sync on both nodes.
	m.bm.SetRange(o.first, o.end)
	m.vs.found += uint64(o.n)
	m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgMarkOOS, Off: o.off, Len: o.n}})
}

// finishVerify ends the pass and starts the repair of what it found.
func (m *Machine) finishVerify() {
	found := m.vs.found
	m.vs = verify{}
	m.flushBitmap()
	m.message = fmt.Sprintf("online verify done: %s out of sync", humanBytes(found))
	src := m.role == Primary || m.peer.role != Primary
	m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgVerifyDone, Len: int64(found), Flags: boolFlag(!src)}})
	m.out.StateChanged = true
	if found > 0 {
		m.startRepair(src)
	}
}

// verifyDone: the peer finished a verify pass; Flags says this node is
// the repair source.
func (m *Machine) verifyDone(msg Msg) {
	m.message = fmt.Sprintf("online verify (run on the peer) done: %s out of sync", humanBytes(uint64(msg.Len)))
	m.out.StateChanged = true
	if msg.Len > 0 {
		m.startRepair(msg.Flags&1 != 0)
	}
}

// startRepair resyncs the blocks a verify marked, inside the session.
func (m *Machine) startRepair(source bool) {
	m.rs = resync{active: true, source: source, repair: true, sentBM: true, haveBM: true, started: m.now,
		total: m.bm.Count() * meta.BlockSize, budget: 1 << 62}
	if source {
		m.conn = SyncSource
	} else {
		m.conn = SyncTarget
	}
	m.out.StateChanged = true
}
