package replication

import (
	"fmt"
	"time"

	"hastor/replication/meta"
)

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Promote makes the node primary (hastorctl primary). force declares the
// local data authoritative: the first full sync of a new resource, or
// promoting a node whose data is not UpToDate. The role changes once the
// new generation is durable (Promoting reports it until then).
func (m *Machine) Promote(force bool) error {
	switch {
	case m.role == Primary && !m.demoting:
		return nil
	case m.demoting:
		return refuse("a demotion is in progress")
	case m.promoting != 0:
		return nil
	case m.sessionUp && m.peer.known && m.peer.role == Primary:
		return refuse("the peer is primary: run hastorctl secondary on it first (two primaries are not supported)")
	case m.disk == DiskFailed:
		return refuse("the local disk failed and is detached")
	case m.conn == SyncTarget:
		return refuse("this node is receiving a resync (%s left): wait until it is UpToDate", humanBytes(m.bm.Count()*meta.BlockSize))
	case m.disk != DiskUpToDate && !force:
		return refuse("the local data is %s: wait for the resync to finish, or use --force to declare this node's data authoritative (a new resource's first full sync)", m.disk)
	}
	if force {
		m.setUUIDs(m.uuids().ForcePrimary(m.newUUID()))
		m.sb.Flags |= meta.FlagConsistent
		m.disk = DiskUpToDate
		if m.sessionUp {
			// The peer must see the new generation: handshake again.
			m.closeSession(fmt.Errorf("forced primary: reconnecting to resync"))
		}
	} else {
		m.setUUIDs(m.uuids().Promote(m.newUUID(), m.conn.replicating()))
	}
	if !m.conn.replicating() {
		m.primaryAtSplit = false
	}
	m.sb.Flags |= meta.FlagPrimary
	m.promoting = m.persistSB()
	m.progress()
	return nil
}

// Demote makes the node secondary (hastorctl secondary) once the
// application requests in flight have finished; new ones are refused.
func (m *Machine) Demote() error {
	if m.role != Primary && m.promoting == 0 {
		return nil
	}
	if m.promoting != 0 {
		return refuse("a promotion is in progress")
	}
	m.demoting = true
	m.out.StateChanged = true
	m.progress()
	return nil
}

func (m *Machine) maybeFinishDemote() {
	if m.promoting != 0 && m.sbDurable >= m.promoting {
		m.promoting = 0
		m.role = Primary
		m.out.StateChanged = true
		if m.sessionUp && m.decided {
			m.sendState(MsgState)
		}
	}
	if !m.demoting {
		return
	}
	for _, o := range m.ops {
		if o.kind == opWrite || o.kind == opFlush {
			return
		}
	}
	if m.alTx != nil {
		return
	}
	m.al.EvictIdle()
	m.commitAL()
	m.flushBitmap()
	m.sb.Flags &^= meta.FlagPrimary
	m.persistSB()
	m.demoting = false
	m.role = Secondary
	m.out.StateChanged = true
	if m.sessionUp && m.decided {
		m.sendState(MsgState)
	}
}

// Connect lets the node connect to its peer (hastorctl connect).
// discardMyData resolves a split brain by throwing this node's changes
// away: it becomes the sync target.
func (m *Machine) Connect(discardMyData bool) error {
	if discardMyData && (m.role == Primary || m.promoting != 0) {
		return refuse("a primary cannot discard its data: run hastorctl secondary first")
	}
	m.discardMyData = discardMyData
	m.wantConnect = true
	if !m.sessionUp {
		m.conn = Connecting
		m.message = ""
	}
	m.out.StateChanged = true
	return nil
}

// Disconnect ends the connection to the peer and stays StandAlone
// (hastorctl disconnect). A primary goes on serving, marking its writes out
// of sync.
func (m *Machine) Disconnect() error {
	m.wantConnect = false
	if m.sessionUp {
		m.closeSession(fmt.Errorf("disconnected by the admin"))
	} else {
		m.conn = StandAlone
	}
	m.out.StateChanged = true
	return nil
}

// Invalidate declares the local data out of date (hastorctl invalidate):
// every block is marked out of sync and the node becomes a full sync
// target of its peer on the next connect.
func (m *Machine) Invalidate() error {
	if m.role == Primary || m.promoting != 0 {
		return refuse("the primary's data cannot be invalidated: run hastorctl secondary first")
	}
	if m.sessionUp && m.peer.known && m.peer.disk != DiskUpToDate {
		return refuse("the peer's disk is %s: invalidating would leave no good copy", m.peer.disk)
	}
	m.setUUIDs(m.uuids().Invalidate())
	m.sb.Flags &^= meta.FlagConsistent
	m.disk = DiskInconsistent
	m.bm.SetRange(0, meta.Block(m.blocks))
	m.flushBitmap()
	m.persistSB()
	if m.sessionUp {
		m.closeSession(fmt.Errorf("invalidated: reconnecting for a full resync"))
	}
	m.out.StateChanged = true
	return nil
}

// Status is a snapshot of the machine's state.
type Status struct {
	Role, PeerRole Role
	PeerKnown      bool
	Disk, PeerDisk DiskState
	Conn           ConnState
	Protocol       Protocol
	OutOfSync      uint64 // bytes
	Resync         bool
	ResyncSource   bool
	ResyncFull     bool
	ResyncDone     uint64
	ResyncTotal    uint64
	// ResyncElapsed is how long the resync has been running (by Tick).
	ResyncElapsed time.Duration
	// Verify: an online verify started here is running.
	Verify                               bool
	VerifyDone, VerifyTotal, VerifyFound uint64
	VerifyElapsed                        time.Duration
	Message                              string
	Pending, Unacked                     int
	Counters                             Counters
	Promoting, Demoting                  bool
}

// Status returns a snapshot of the state.
func (m *Machine) Status() Status {
	st := Status{
		Role: m.role, PeerRole: m.peer.role, PeerKnown: m.peer.known, Disk: m.disk, PeerDisk: m.peer.disk,
		Conn: m.conn, Protocol: m.cfg.Protocol, OutOfSync: m.bm.Count() * meta.BlockSize,
		Message: m.message, Counters: m.stats, Promoting: m.promoting != 0, Demoting: m.demoting,
	}
	if m.rs.active {
		st.Resync, st.ResyncSource, st.ResyncFull = true, m.rs.source, m.rs.full
		st.ResyncDone, st.ResyncTotal = m.rs.done, m.rs.total
		st.ResyncElapsed = m.now - m.rs.started
	}
	if m.vs.active {
		st.Verify, st.VerifyDone, st.VerifyTotal, st.VerifyFound = true, m.vs.done, m.vs.total, m.vs.found
		st.VerifyElapsed = m.now - m.vs.started
	}
	for _, o := range m.ops {
		if o.sent && !o.peerDone {
			st.Pending++
		}
	}
	st.Unacked = len(m.peerQ)
	return st
}

// Shutdown prepares a clean stop: idle activity-log extents leave the log,
// the bitmap is flushed and the superblock no longer says primary, so the
// next start neither resyncs hot extents nor counts as a crashed primary.
// Call it after application I/O has stopped; MetaIdle says when the
// metadata writes it caused are done.
func (m *Machine) Shutdown() {
	if m.alTx == nil {
		m.al.EvictIdle()
		m.commitAL()
	}
	m.flushBitmap()
	if m.sb.Flags&meta.FlagPrimary != 0 {
		m.sb.Flags &^= meta.FlagPrimary
	}
	m.persistSB()
}

// MetaIdle reports whether no metadata write is in flight or wanted.
func (m *Machine) MetaIdle() bool {
	return !m.sbInFlight && m.sbSent >= m.sbWant && m.alTx == nil && !m.bmFlushing && !m.bmWant
}
