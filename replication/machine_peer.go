package replication

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"hastor/replication/genid"
	"hastor/replication/meta"
)

// Receive handles a message from the peer, delivered in order per channel.
// data is the message's payload; Receive reports whether the machine kept
// it (it then hands it back in a LocalIO or Out action, and the driver
// frees it after that action). A malformed message ends the session.
func (m *Machine) Receive(msg Msg, data []byte) (kept bool) {
	if !m.sessionUp || m.conn == SplitBrain || m.conn == Unrelated {
		return false
	}
	m.stats.Received += uint64(len(data))
	if msg.Off+msg.Len > m.cfg.DataSize && msg.Type.onData() && msg.Type != MsgBitmap {
		m.closeSession(fmt.Errorf("%w: type %d range %d+%d beyond the data area", ErrBadMessage, msg.Type, msg.Off, msg.Len))
		return false
	}
	switch msg.Type {
	case MsgState:
		m.peerState(msg)
	case MsgRecvAck, MsgWriteAck, MsgFlushAck:
		m.peerAck(msg)
	case MsgResyncAck, MsgChecksumMiss:
		m.resyncAck(msg)
	case MsgWrite, MsgResyncData:
		if msg.Type == MsgWrite && msg.Flags&FlagDiscard != 0 {
			if len(data) != 0 || msg.Flags&FlagFUA != 0 {
				m.closeSession(fmt.Errorf("%w: discard with %d bytes of data or FUA", ErrBadMessage, len(data)))
				return false
			}
			m.queuePeer(&op{kind: opPeerWrite, peerID: msg.ID, off: msg.Off, n: msg.Len, zero: true})
			if m.cfg.Protocol == ProtocolB {
				m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgRecvAck, ID: msg.ID}})
			}
			break
		}
		if int64(len(data)) != msg.Len {
			m.closeSession(fmt.Errorf("%w: write of %d bytes carries %d", ErrBadMessage, msg.Len, len(data)))
			return false
		}
		k := opPeerWrite
		if msg.Type == MsgResyncData {
			k = opResyncWrite
		}
		m.queuePeer(&op{kind: k, peerID: msg.ID, off: msg.Off, n: msg.Len, fua: msg.Flags&FlagFUA != 0, data: data})
		if msg.Type == MsgWrite && m.cfg.Protocol == ProtocolB {
			m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgRecvAck, ID: msg.ID}})
		}
		kept = true
	case MsgResyncZero:
		m.queuePeer(&op{kind: opResyncWrite, peerID: msg.ID, off: msg.Off, n: msg.Len, zero: true})
	case MsgChecksum:
		m.queuePeer(&op{kind: opChecksumRead, peerID: msg.ID, off: msg.Off, n: msg.Len, digest: bytes.Clone(data)})
	case MsgFlush:
		m.queuePeer(&op{kind: opPeerFlush, peerID: msg.ID})
	case MsgBitmap:
		if len(data)%16 != 0 {
			m.closeSession(fmt.Errorf("%w: bitmap chunk of %d bytes", ErrBadMessage, len(data)))
			return false
		}
		for i := 0; i < len(data); i += 16 {
			first := meta.Block(binary.LittleEndian.Uint64(data[i:]))
			end := meta.Block(binary.LittleEndian.Uint64(data[i+8:]))
			if first < end {
				m.bm.SetRange(first, end)
			}
		}
	case MsgBitmapDone:
		m.peerBitmapDone(msg)
	case MsgResyncDone:
		m.queuePeer(&op{kind: opFinishTarget, peerID: msg.ID, digest: encodeSet(msg.UUIDs)})
	case MsgVerifyReq:
		if msg.Len%meta.BlockSize != 0 || msg.Len/meta.BlockSize > 32 || int64(len(data)) != msg.Len/meta.BlockSize*8 {
			m.closeSession(fmt.Errorf("%w: verify request %d+%d with %d digest bytes", ErrBadMessage, msg.Off, msg.Len, len(data)))
			return false
		}
		m.queuePeer(&op{kind: opVerifyCheck, peerID: msg.ID, off: msg.Off, n: msg.Len, digest: bytes.Clone(data)})
	case MsgVerifyReply:
		m.verifyReply(msg)
	case MsgReadReq:
		m.queuePeer(&op{kind: opPeerRead, peerID: msg.ID, off: msg.Off, n: msg.Len})
	case MsgReadReply:
		o := m.ops[ReqID(msg.ID)]
		if o == nil || o.kind != opRead {
			break
		}
		delete(m.ops, o.id)
		if msg.Status != 0 || int64(len(data)) != o.n {
			m.complete(o, ErrDiskFailed)
			break
		}
		copy(o.data, data)
		m.stats.Received += uint64(len(data))
		m.complete(o, nil)
	case MsgMarkOOS:
		first, end := meta.BlockRange(msg.Off, msg.Len)
		m.bm.SetRange(first, end)
	case MsgPRState:
		if len(data) > maxPRState {
			m.closeSession(fmt.Errorf("%w: persistent reservation state of %d bytes", ErrBadMessage, len(data)))
			return false
		}
		m.receivePR(data)
		if msg.ID != 0 {
			m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgPRAck, ID: msg.ID}})
		}
	case MsgPRAck:
		if s, ok := m.prWait[ReqID(msg.ID)]; ok && s == m.session {
			delete(m.prWait, ReqID(msg.ID))
			m.out.Complete = append(m.out.Complete, Completion{ID: ReqID(msg.ID)})
		}
	case MsgVerifyDone:
		m.verifyDone(msg)
	default:
		// Verify and remote reads are not implemented yet: refuse
		// rather than misbehave.
		m.closeSession(fmt.Errorf("%w: unsupported message type %d", ErrBadMessage, msg.Type))
	}
	m.progress()
	return kept
}

func encodeSet(s genid.Set) []byte {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint64(b[0:], uint64(s.Current))
	binary.LittleEndian.PutUint64(b[8:], uint64(s.Bitmap))
	binary.LittleEndian.PutUint64(b[16:], uint64(s.History[0]))
	binary.LittleEndian.PutUint64(b[24:], uint64(s.History[1]))
	return b
}

func decodeSet(b []byte) genid.Set {
	return genid.Set{Current: genid.UUID(binary.LittleEndian.Uint64(b[0:])), Bitmap: genid.UUID(binary.LittleEndian.Uint64(b[8:])),
		History: [2]genid.UUID{genid.UUID(binary.LittleEndian.Uint64(b[16:])), genid.UUID(binary.LittleEndian.Uint64(b[24:]))}}
}

func (m *Machine) allocID() ReqID {
	m.nextID++
	return m.nextID
}

func (m *Machine) queuePeer(o *op) {
	o.id = m.allocID()
	if o.n > 0 {
		o.first, o.end = meta.BlockRange(o.off, o.n)
	}
	m.ops[o.id] = o
	m.peerQ = append(m.peerQ, o)
}

func (m *Machine) peerState(msg Msg) {
	m.peer.known = true
	m.peer.role, m.peer.disk, m.peer.flags, m.peer.uuids = msg.Role, msg.Disk, msg.GFlags, msg.UUIDs
	m.peer.size, m.peer.primaryAtSplit, m.peer.changed = msg.Size, msg.PrimaryAtSplit, msg.Changed
	m.peer.discard = msg.Flags&1 != 0
	m.out.StateChanged = true
	if m.conn == Handshake && !m.decided {
		m.decide()
	}
}

// decide takes the connect-time decision once both states are known.
func (m *Machine) decide() {
	m.decided = true
	fail := func(c ConnState, msg string) {
		m.conn = c
		m.message = msg
		m.wantConnect = false
		// Close a moment later, so that the peer gets our state first
		// and reaches the same verdict (see Tick).
		m.lingerErr = fmt.Errorf("%s", msg)
		m.lingerUntil = m.now + time.Second
		m.out.StateChanged = true
	}
	if m.peer.size != m.cfg.DataSize {
		fail(Unrelated, fmt.Sprintf("the peer's data area is %d bytes and this node's %d: the two backing devices must be the same size", m.peer.size, m.cfg.DataSize))
		return
	}
	lf, pf := m.gflags(), m.peer.flags
	d := genid.Decide(m.uuids(), m.peer.uuids, lf, pf)
	if d.Action == genid.SplitBrain {
		switch {
		case m.discardMyData:
			d = genid.Discard(d, true, lf, pf)
		case m.peer.discard:
			d = genid.Discard(d, false, lf, pf)
		default:
			d = genid.Recover(m.cfg.Policy, d,
				genid.SplitSide{Changed: m.bm.Count(), Primary: m.role == Primary, PrimaryAtSplit: m.primaryAtSplit, Tiebreak: m.cfg.Tiebreak},
				genid.SplitSide{Changed: m.peer.changed, Primary: m.peer.role == Primary, PrimaryAtSplit: m.peer.primaryAtSplit, Tiebreak: m.peer.flags.Tiebreak})
		}
	}
	m.decision = d
	m.discardMyData = false
	if m.role == Primary && m.peer.role == Primary && d.Action != genid.SplitBrain {
		fail(SplitBrain, "both nodes are primary: make one secondary (hastorctl secondary), then run hastorctl connect on both")
		return
	}
	switch d.Action {
	case genid.SplitBrain:
		fail(SplitBrain, fmt.Sprintf("split brain (%s): both nodes changed the data while disconnected (this node %s, the peer %s out of sync); nothing was overwritten. "+
			"On the node whose changes are to be discarded run `hastorctl secondary` and `hastorctl connect --discard-my-data`, then run `hastorctl connect` on the other",
			d.Reason, humanBytes(m.bm.Count()*meta.BlockSize), humanBytes(m.peer.changed*meta.BlockSize)))
		return
	case genid.Unrelated, genid.Refused:
		fail(Unrelated, fmt.Sprintf("refusing to connect: %s", d.Reason))
		return
	case genid.NoSync:
		m.message = ""
		m.conn = Established
		if m.sb.Flags&meta.FlagCrashedPrimary != 0 {
			m.sb.Flags &^= meta.FlagCrashedPrimary
			m.persistSB()
		}
		m.sendPR()
		m.out.StateChanged = true
		return
	}
	m.sendPR()
	m.message = ""
	m.rs = resync{active: true, source: d.Action.IsSource(), full: d.Action.IsFull(), started: m.now}
	if m.rs.full {
		m.bm.SetRange(0, meta.Block(m.blocks))
	}
	if m.rs.source {
		m.setUUIDs(m.uuids().StartSyncSource(m.newUUID()))
		m.sb.Flags |= meta.FlagResyncInProgress
		m.rs.startGate = m.persistSB()
		m.flushBitmap()
	} else {
		m.sendBitmap()
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgBitmapDone}})
		m.disk = DiskInconsistent
		m.sb.Flags &^= meta.FlagConsistent
		m.sb.Flags |= meta.FlagResyncInProgress
		m.rs.startGate = m.persistSB()
		m.flushBitmap()
	}
	m.out.StateChanged = true
}

// sendBitmap sends the local dirty bitmap as block ranges.
func (m *Machine) sendBitmap() {
	if m.rs.full {
		return
	}
	const chunk = 64 << 10
	var buf []byte
	for first, end := range m.bm.Ranges(0) {
		if buf == nil {
			buf = make([]byte, 0, chunk)
		}
		buf = binary.LittleEndian.AppendUint64(buf, uint64(first))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(end))
		if len(buf) == chunk {
			m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgBitmap}, Data: buf})
			buf = nil
		}
	}
	if len(buf) > 0 {
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgBitmap}, Data: buf})
	}
}

// peerBitmapDone: the peer's bitmap is complete (and, from a source, the
// resync starts with its sync UUID).
func (m *Machine) peerBitmapDone(msg Msg) {
	if !m.rs.active {
		return
	}
	m.rs.haveBM = true
	if !m.rs.source {
		m.setUUIDs(m.uuids().StartSyncTarget(msg.UUIDs.SyncUUID()))
		m.rs.startGate = m.persistSB()
		m.flushBitmap()
		m.conn = SyncTarget
		m.rs.total = m.bm.Count() * meta.BlockSize
		m.out.StateChanged = true
	}
}

func (m *Machine) peerAck(msg Msg) {
	o := m.ops[ReqID(msg.ID)]
	if o == nil || !o.sent || o.session != m.session {
		return
	}
	switch msg.Type {
	case MsgRecvAck:
		o.recvAcked = true
	case MsgWriteAck, MsgFlushAck:
		o.recvAcked, o.peerDone = true, true
		if msg.Status != 0 {
			o.peerErr = true
			if o.kind == opWrite {
				m.markOOS(o)
			}
		}
	}
}

// --- peer operations (secondary, sync target) ---

func (m *Machine) issuePeerOps() {
	if !m.decided {
		return
	}
	if m.rs.active && !m.rs.source && m.sbDurable < m.rs.startGate {
		return // Inconsistent is not durable yet
	}
	for i, o := range m.peerQ {
		if o.issued {
			continue
		}
		if !m.peerReady(i, o) {
			continue
		}
		o.issued = true
		switch o.kind {
		case opPeerWrite, opResyncWrite:
			k := IOWrite
			if o.fua {
				k = IOWriteFUA
			}
			if o.zero {
				k = IOZero
			}
			m.out.Local = append(m.out.Local, LocalIO{ID: o.id, Kind: k, Off: o.off, Len: o.n, Data: o.data})
		case opChecksumRead:
			m.out.Local = append(m.out.Local, LocalIO{ID: o.id, Kind: IOReadDigest, Off: o.off, Len: o.n})
		case opVerifyCheck:
			m.out.Local = append(m.out.Local, LocalIO{ID: o.id, Kind: IOBlockDigests, Off: o.off, Len: o.n})
		case opPeerRead:
			m.out.Local = append(m.out.Local, LocalIO{ID: o.id, Kind: IORead, Off: o.off, Len: o.n})
		case opPeerFlush, opFinishTarget:
			m.out.Local = append(m.out.Local, LocalIO{ID: o.id, Kind: IOFlush})
		}
	}
}

// peerReady reports whether peer op o (at index i of peerQ) may start:
// overlapping earlier ops have finished, and a barrier (flush, finish)
// waits for every earlier op.
func (m *Machine) peerReady(i int, o *op) bool {
	barrier := o.kind == opPeerFlush || o.kind == opFinishTarget
	for _, x := range m.peerQ[:i] {
		if barrier || x.kind == opFinishTarget {
			return false
		}
		if x.n > 0 && o.n > 0 && overlaps(x, o) {
			return false
		}
	}
	return true
}

// IODone reports the end of a LocalIO. For IORead, data holds the blocks
// read (the driver's buffer, which the machine hands back in a send) and
// zero says they are all zero; for IOReadDigest, digest is their SHA-256.
func (m *Machine) IODone(id ReqID, err error, data []byte, zero bool, digest []byte) {
	o := m.ops[id]
	if o == nil {
		return
	}
	if err != nil && m.disk != DiskFailed {
		m.message = fmt.Sprintf("local disk I/O error (%v): disk detached", err)
	}
	switch o.kind {
	case opResyncRead:
		m.resyncReadDone(o, err, data, zero, digest)
	case opPeerWrite, opPeerFlush, opResyncWrite, opChecksumRead, opFinishTarget, opVerifyCheck:
		m.peerOpDone(o, err, digest)
	case opPeerRead:
		m.peerOpDone(o, err, nil)
		if m.sessionUp {
			st := uint8(0)
			if err != nil {
				st, data = 1, nil
			}
			m.stats.Sent += uint64(len(data))
			m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgReadReply, ID: o.peerID, Status: st}, Data: data})
		} else {
			m.out.Free = append(m.out.Free, data)
		}
	case opVerifyRead:
		m.verifyReadDone(o, err, digest)
	}
	m.progress()
}

func (m *Machine) peerOpDone(o *op, err error, digest []byte) {
	for i, x := range m.peerQ {
		if x == o {
			m.peerQ = append(m.peerQ[:i], m.peerQ[i+1:]...)
			break
		}
	}
	delete(m.ops, o.id)
	st := uint8(0)
	if err != nil {
		st = 1
	}
	if !m.sessionUp {
		return
	}
	switch o.kind {
	case opPeerWrite:
		if err == nil {
			m.stats.DiskWrite += uint64(o.n)
		}
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgWriteAck, ID: o.peerID, Status: st}})
	case opPeerFlush:
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgFlushAck, ID: o.peerID, Status: st}})
	case opResyncWrite:
		if err == nil {
			m.stats.DiskWrite += uint64(o.n)
			m.bm.ClearRange(o.first, o.end)
			m.rs.done += uint64(o.n)
			m.stats.ResyncBytes += uint64(o.n)
			m.periodicBitmapFlush()
		}
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgResyncAck, ID: o.peerID, Off: o.off, Len: o.n, Status: st}})
	case opChecksumRead:
		if err == nil && bytes.Equal(digest, o.digest) {
			m.bm.ClearRange(o.first, o.end)
			m.rs.done += uint64(o.n)
			m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgResyncAck, ID: o.peerID, Off: o.off, Len: o.n}})
		} else {
			m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgChecksumMiss, ID: o.peerID, Off: o.off, Len: o.n}})
		}
	case opVerifyCheck:
		var mask uint32
		for i := 0; i < int(o.n/meta.BlockSize); i++ {
			if err != nil || len(digest) < 8*(i+1) || !bytes.Equal(digest[8*i:8*i+8], o.digest[8*i:8*i+8]) {
				mask |= 1 << i
			}
		}
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgVerifyReply, ID: o.peerID, Off: o.off, Len: o.n, Flags: mask}})
	case opFinishTarget:
		if err != nil {
			m.closeSession(fmt.Errorf("flush at the end of the resync failed: %w", err))
			return
		}
		m.finishTarget(decodeSet(o.digest))
	}
}

func (m *Machine) periodicBitmapFlush() {
	m.rs.sinceBM++
	if m.rs.sinceBM >= 256 {
		m.rs.sinceBM = 0
		m.flushBitmap()
	}
}

func (m *Machine) finishTarget(source genid.Set) {
	m.setUUIDs(genid.FinishSyncTarget(source))
	m.sb.Flags |= meta.FlagConsistent
	m.sb.Flags &^= meta.FlagResyncInProgress | meta.FlagCrashedPrimary
	m.sb.ResyncPos = 0
	m.bm.ClearRange(0, meta.Block(m.blocks))
	m.flushBitmap()
	m.persistSB()
	m.disk = DiskUpToDate
	m.conn = Established
	m.rs = resync{}
	m.sendState(MsgState)
	m.out.StateChanged = true
}

// --- resync source ---

func (m *Machine) resyncStep() {
	rs := &m.rs
	if !rs.active || !rs.source || !m.sessionUp || rs.finishing {
		return
	}
	if !rs.sentBM && !rs.repair {
		if m.sbDurable < rs.startGate {
			return
		}
		rs.sentBM = true
		m.sendBitmap()
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgBitmapDone, UUIDs: m.uuids()}})
	}
	if !rs.haveBM {
		return
	}
	if m.conn != SyncSource {
		m.conn = SyncSource
		rs.total = m.bm.Count() * meta.BlockSize
		rs.budget = 1 << 62
		if m.cfg.MaxRate > 0 {
			rs.budget = m.cfg.ResyncChunk * 4
		}
		m.out.StateChanged = true
	}
	chunk := uint64(m.cfg.ResyncChunk / meta.BlockSize)
	for rs.inflight < m.cfg.ResyncWindow && rs.budget > 0 {
		first, end, ok := m.bm.NextRange(rs.pos, chunk)
		if !ok {
			if rs.inflight == 0 {
				m.finishSource()
			}
			return
		}
		o := &op{id: m.allocID(), kind: opResyncRead, first: first, end: end,
			off: int64(first) * meta.BlockSize, n: int64(end-first) * meta.BlockSize}
		if o.off+o.n > m.cfg.DataSize {
			o.n = m.cfg.DataSize - o.off
		}
		for _, x := range m.ops {
			if x.kind == opWrite && (x.issued && !x.localDone || !x.issued) && overlaps(x, o) {
				return // wait for the application write; it goes to the peer itself
			}
		}
		m.ops[o.id] = o
		rs.pos = end
		rs.inflight++
		rs.budget -= o.n
		k := IORead
		if m.cfg.Checksum && !rs.full {
			k = IOReadDigest
		}
		m.out.Local = append(m.out.Local, LocalIO{ID: o.id, Kind: k, Off: o.off, Len: o.n})
	}
}

func (m *Machine) resyncReadDone(o *op, err error, data []byte, zero bool, digest []byte) {
	if !m.sessionUp || !m.rs.active || !m.rs.source {
		delete(m.ops, o.id)
		m.out.Free = append(m.out.Free, data)
		return
	}
	if err != nil {
		delete(m.ops, o.id)
		m.out.Free = append(m.out.Free, data)
		m.closeSession(fmt.Errorf("resync read failed: %w", err))
		m.detach()
		return
	}
	o.localDone = true
	m.stats.DiskRead += uint64(o.n)
	switch {
	case digest != nil:
		m.out.Free = append(m.out.Free, data)
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgChecksum, ID: uint64(o.id), Off: o.off, Len: o.n}, Data: digest})
	case zero:
		m.out.Free = append(m.out.Free, data)
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgResyncZero, ID: uint64(o.id), Off: o.off, Len: o.n}})
	default:
		m.stats.Sent += uint64(o.n)
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgResyncData, ID: uint64(o.id), Off: o.off, Len: o.n}, Data: data})
	}
}

func (m *Machine) resyncAck(msg Msg) {
	o := m.ops[ReqID(msg.ID)]
	if o == nil || o.kind != opResyncRead {
		return
	}
	if msg.Type == MsgChecksumMiss {
		// Send the data after all: read it again.
		o.localDone = false
		m.out.Local = append(m.out.Local, LocalIO{ID: o.id, Kind: IORead, Off: o.off, Len: o.n})
		return
	}
	delete(m.ops, o.id)
	m.rs.inflight--
	if msg.Status != 0 {
		m.closeSession(errors.New("the peer failed to write resync data"))
		return
	}
	m.bm.ClearRange(o.first, o.end)
	m.rs.done += uint64(o.n)
	m.stats.ResyncBytes += uint64(o.n)
	m.periodicBitmapFlush()
}

func (m *Machine) finishSource() {
	m.rs.finishing = true
	if !m.rs.repair {
		m.setUUIDs(m.uuids().FinishSyncSource())
	}
	m.sb.Flags &^= meta.FlagResyncInProgress | meta.FlagCrashedPrimary
	m.sb.ResyncPos = 0
	m.persistSB()
	m.flushBitmap()
	m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgResyncDone, UUIDs: m.uuids()}})
	m.conn = Established
	m.peer.disk = DiskUpToDate
	m.rs = resync{}
	m.out.StateChanged = true
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
