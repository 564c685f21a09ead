package replication

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"hastor/replication/genid"
	"hastor/replication/meta"
)

// Errors the machine returns or completes requests with.
var (
	// ErrNotPrimary: an application write or flush reached a node that is
	// not primary (the LUN reports standby before it gets here).
	ErrNotPrimary = errors.New("replication: not primary")
	// ErrRefused: an admin command is not allowed in the current state;
	// the wrapped message says why and what to do.
	ErrRefused = errors.New("replication: refused")
	// ErrDiskFailed: the local disk failed and no peer could take the I/O.
	ErrDiskFailed = errors.New("replication: local disk failed")
)

// MachineConfig is what the state machine needs to know about its resource.
type MachineConfig struct {
	Protocol Protocol
	// DataSize is the size in bytes of the replicated data area.
	DataSize int64
	// Tiebreak is set on exactly one of the two nodes (the one listed
	// first).
	Tiebreak bool
	Policy   genid.Policy
	// ResyncChunk is the size of one resync request (default 1 MiB);
	// ResyncWindow how many may be in flight (default 32).
	ResyncChunk  int64
	ResyncWindow int
	// MinRate and MaxRate bound the resync rate in bytes/s: MinRate while
	// application writes run, MaxRate (0: unlimited) when idle.
	MinRate, MaxRate int64
	// Checksum selects checksum-based resync.
	Checksum bool
	// RandUUID returns random non-zero UUIDs for new data generations
	// (nil: a counter, for tests).
	RandUUID func() genid.UUID
	// PeerTimeout: a request the peer has not answered after this long
	// ends the session (timeout × ko-count); 0 disables. Handshakes get
	// the same limit.
	PeerTimeout time.Duration
}

// ReqID names an application request (chosen by the driver) or an
// operation of the machine's own (IDs with the top bit set).
type ReqID uint64

const internalID ReqID = 1 << 63

// IOKind is the kind of a local I/O the machine asks for.
type IOKind uint8

// I/O kinds.
const (
	IORead IOKind = iota
	IOWrite
	IOWriteFUA
	IOFlush
	IOZero // discard, or write zeros
	IOReadDigest
	// IOBlockDigests reads the range and returns an 8-byte digest (the
	// first bytes of SHA-256) of each 4 KiB block, for online verify.
	IOBlockDigests
)

// LocalIO asks the driver to do I/O on the local disk for one of the
// machine's own operations, and to report it with IODone.
type LocalIO struct {
	ID   ReqID
	Kind IOKind
	Off  int64
	Len  int64
	Data []byte // IOWrite, IOWriteFUA: the data to write
}

// Out is a message to send to the peer.
type Out struct {
	Msg  Msg
	Data []byte
	// Copy: the data belongs to an application request that completes
	// before the transport is done with it (protocol A); send a copy.
	Copy bool
	// Req is the application request whose buffer Data is (0: none).
	Req ReqID
}

// Completion ends an application request.
type Completion struct {
	ID  ReqID
	Err error
}

// Ready holds the actions of one or more steps, in the order they must be
// carried out: sends (data, then control), then metadata, then local I/O,
// then completions.
type Ready struct {
	Issue    []ReqID // application requests that may do their local I/O now
	Sends    []Out
	Local    []LocalIO
	Complete []Completion
	// Free are buffers the machine no longer needs (the driver's, from
	// IODone or Receive).
	Free        [][]byte
	PersistSB   *meta.Superblock
	CommitAL    *meta.Transaction
	FlushBitmap bool
	// CloseSession ends the current session with this error.
	CloseSession error
	// StateChanged: role, disk or connection changed (the driver updates
	// the LUN's readiness and wakes admin commands).
	StateChanged bool
	// PRAdopted: the primary took the peer's persistent reservation state
	// (see PRState); the LU is to load it again.
	PRAdopted bool
}

func (r *Ready) empty() bool {
	return len(r.Issue) == 0 && len(r.Sends) == 0 && len(r.Local) == 0 && len(r.Complete) == 0 && len(r.Free) == 0 &&
		r.PersistSB == nil && r.CommitAL == nil && !r.FlushBitmap && r.CloseSession == nil && !r.StateChanged && !r.PRAdopted
}

// opKind is the kind of an operation the machine tracks.
type opKind uint8

const (
	opWrite        opKind = iota // application write (primary)
	opFlush                      // application flush (primary)
	opPeerWrite                  // write received from the peer (secondary / sync target)
	opPeerFlush                  // flush barrier received from the peer
	opResyncRead                 // sync source reads a range to send
	opResyncWrite                // sync target writes a range received
	opChecksumRead               // sync target reads a range to compare with the source's digest
	opFinishTarget               // sync target flushes before it becomes UpToDate
	opRead                       // application read through the peer (detached primary)
	opPeerRead                   // read for the detached peer
	opVerifyRead                 // verify source digests a range
	opVerifyCheck                // verify target compares a range with the source's digests
)

// op is one operation in flight.
type op struct {
	id    ReqID
	kind  opKind
	off   int64
	n     int64
	fua   bool
	data  []byte
	first meta.Block
	end   meta.Block

	issued    bool // local I/O handed out (blocks overlapping ops)
	alHeld    bool
	localDone bool
	localErr  error
	sent      bool // handed to the peer in this session
	session   uint64
	recvAcked bool
	peerDone  bool // write ack, flush ack, or the peer is gone (bits set)
	peerErr   bool
	completed bool
	sbGate    uint64 // complete only once this superblock version is durable
	sentAt    time.Duration
	peerID    uint64 // the ID the peer gave it (peer ops)
	zero      bool
	recheck   bool // a verify read checking a block a second time
	digest    []byte
}

// peerInfo is what the peer told about itself.
type peerInfo struct {
	known          bool
	role           Role
	disk           DiskState
	flags          genid.Flags
	uuids          genid.Set
	size           int64
	primaryAtSplit bool
	changed        uint64
	discard        bool
}

// Machine is the replication state machine of one resource. It does no
// I/O, starts no goroutine and reads no clock: events go in through its
// methods and the actions they cause accumulate until Ready takes them.
// It is not safe for concurrent use.
type Machine struct {
	cfg    MachineConfig
	blocks uint64

	role Role
	disk DiskState
	conn ConnState
	sb   meta.Superblock
	bm   *meta.Bitmap
	al   *meta.ActivityLog

	sbWant, sbSent, sbDurable uint64
	sbInFlight                bool
	alTx                      *meta.Transaction
	bmFlushing, bmWant        bool

	wantConnect    bool
	discardMyData  bool
	session        uint64 // ID of the live session (0: none)
	sessionUp      bool
	peer           peerInfo
	decided        bool
	decision       genid.Decision
	primaryAtSplit bool
	message        string
	demoting       bool
	promoting      uint64 // superblock version that makes the node primary

	now       time.Duration
	handStart time.Duration

	nextID ReqID
	ops    map[ReqID]*op
	// waiting holds application ops not yet issued, in arrival order.
	waiting []*op
	// peerQ holds the peer's data-channel ops in arrival order until they
	// finish (overlap and barrier ordering).
	peerQ []*op

	rs resync
	vs verify

	// pr is the persistent reservation state of the resource's LU
	// (opaque): on the primary the latest one stored, on the secondary
	// the latest one received; prSet says there is one (since this node
	// started). prWait holds the SubmitPR requests waiting for the peer's
	// MsgPRAck, by the session they were sent in.
	pr     []byte
	prSet  bool
	prWait map[ReqID]uint64

	stats Counters
	out   Ready

	randUUID    func() genid.UUID
	uuidCounter uint64

	// lingerErr closes the session at lingerUntil (a refused handshake
	// gives the peer time to receive our state).
	lingerErr   error
	lingerUntil time.Duration
}

// Counters are the DRBD-style statistics of a resource.
type Counters struct {
	Sent, Received, DiskWrite, DiskRead uint64
	ResyncBytes                         uint64
}

// verify is the state of a running online verify on its source.
type verify struct {
	active   bool
	pos      meta.Block
	inflight int
	done     uint64 // bytes compared
	total    uint64
	found    uint64 // bytes found out of sync (twice)
	started  time.Duration
}

// resync is the state of a running resync on the source or target.
type resync struct {
	active    bool
	source    bool
	full      bool
	pos       meta.Block
	inflight  int
	total     uint64 // bytes to do when it started
	done      uint64
	budget    int64 // bytes the rate controller allows now
	appActive bool  // application writes since the last tick
	haveBM    bool  // source: the peer's bitmap arrived
	sentBM    bool
	startGate uint64
	sinceBM   int
	finishing bool
	// repair: a resync of the blocks an online verify found, inside the
	// session, with no generation change.
	repair  bool
	started time.Duration // machine time when it started
}

// NewMachine returns the machine of a resource whose metadata was just
// loaded (meta.Store.Load): ld's bitmap already holds the activity-log
// extents of a crash. The node starts as secondary and not connecting.
func NewMachine(cfg MachineConfig, sb meta.Superblock, bm *meta.Bitmap, al *meta.ActivityLog) *Machine {
	if cfg.ResyncChunk <= 0 {
		cfg.ResyncChunk = 1 << 20
	}
	if cfg.ResyncWindow <= 0 {
		cfg.ResyncWindow = 32
	}
	m := &Machine{cfg: cfg, blocks: bm.Blocks(), sb: sb, bm: bm, al: al, ops: map[ReqID]*op{}, prWait: map[ReqID]uint64{}, nextID: internalID, randUUID: cfg.RandUUID}
	m.disk = DiskInconsistent
	if sb.Flags&meta.FlagConsistent != 0 {
		m.disk = DiskUpToDate
	}
	if sb.Flags&meta.FlagPrimary != 0 {
		// Went down as primary without demoting: its activity-log
		// extents are in the bitmap (Load), and genid must know.
		m.sb.Flags = m.sb.Flags&^meta.FlagPrimary | meta.FlagCrashedPrimary
		m.persistSB()
	}
	if cfg.Tiebreak != (m.sb.Flags&meta.FlagTiebreak != 0) {
		m.sb.Flags ^= meta.FlagTiebreak
		m.persistSB()
	}
	m.peer.disk = DiskUnknown
	return m
}

// Ready returns the actions accumulated since the last call and resets
// them. The caller carries them out in the documented order.
func (m *Machine) Ready() Ready {
	rd := m.out
	m.out = Ready{}
	return rd
}

// HasReady reports whether actions are waiting.
func (m *Machine) HasReady() bool { return !m.out.empty() }

// Role, Disk and Conn report the current states.
func (m *Machine) Role() Role      { return m.role }
func (m *Machine) Disk() DiskState { return m.disk }
func (m *Machine) Conn() ConnState { return m.conn }

// --- superblock and metadata persistence ---

func (m *Machine) uuids() genid.Set {
	return genid.Set{Current: genid.UUID(m.sb.CurrentUUID), Bitmap: genid.UUID(m.sb.BitmapUUID),
		History: [2]genid.UUID{genid.UUID(m.sb.HistoryUUIDs[0]), genid.UUID(m.sb.HistoryUUIDs[1])}}
}

func (m *Machine) setUUIDs(s genid.Set) {
	m.sb.CurrentUUID, m.sb.BitmapUUID = uint64(s.Current), uint64(s.Bitmap)
	m.sb.HistoryUUIDs = [2]uint64{uint64(s.History[0]), uint64(s.History[1])}
}

func (m *Machine) gflags() genid.Flags {
	return genid.Flags{
		Primary:        m.role == Primary,
		CrashedPrimary: m.sb.Flags&meta.FlagCrashedPrimary != 0,
		Consistent:     m.sb.Flags&meta.FlagConsistent != 0,
		Tiebreak:       m.cfg.Tiebreak,
	}
}

// persistSB schedules a superblock write of the current state and returns
// its version: actions that depend on it wait until sbDurable reaches it.
func (m *Machine) persistSB() uint64 {
	m.sbWant++
	m.kickSB()
	return m.sbWant
}

func (m *Machine) kickSB() {
	if m.sbInFlight || m.sbSent >= m.sbWant {
		return
	}
	sb := m.sb
	m.out.PersistSB = &sb
	m.sbInFlight, m.sbSent = true, m.sbWant
}

// SuperblockDone records that the superblock handed out last is durable
// (err nil) or failed.
func (m *Machine) SuperblockDone(err error) {
	m.sbInFlight = false
	if err != nil {
		m.metaFailed(err)
		return
	}
	m.sbDurable = m.sbSent
	m.kickSB()
	m.progress()
}

// ALDone records that the activity-log transaction handed out is durable.
func (m *Machine) ALDone(err error) {
	tx := m.alTx
	m.alTx = nil
	if err != nil {
		m.metaFailed(err)
		return
	}
	if err := m.al.Committed(tx); err != nil {
		m.metaFailed(err)
		return
	}
	m.progress()
}

// BitmapDone records that a bitmap flush finished.
func (m *Machine) BitmapDone(err error) {
	m.bmFlushing = false
	if err != nil {
		m.metaFailed(err)
		return
	}
	m.kickBitmap()
	m.progress()
}

func (m *Machine) flushBitmap() {
	m.bmWant = true
	m.kickBitmap()
}

func (m *Machine) kickBitmap() {
	if m.bmFlushing || !m.bmWant {
		return
	}
	m.bmWant, m.bmFlushing = false, true
	m.out.FlushBitmap = true
}

// metaFailed handles a failed metadata write: the metadata device is gone,
// so the node can no longer promise crash safety. It detaches.
func (m *Machine) metaFailed(err error) {
	m.message = fmt.Sprintf("metadata write failed (%v): the disk is detached; replace it and restart hastord", err)
	m.detach()
}

func (m *Machine) detach() {
	if m.disk == DiskFailed {
		return
	}
	m.disk = DiskFailed
	m.out.StateChanged = true
	// Fail everything waiting; writes in flight finish on their own.
	for _, o := range m.waiting {
		m.complete(o, ErrDiskFailed)
		delete(m.ops, o.id)
	}
	m.waiting = m.waiting[:0]
}

// --- time ---

// Tick advances the machine's clock to now (a monotonic duration from any
// fixed origin). It drives the resync rate controller and the peer timeout.
func (m *Machine) Tick(now time.Duration) {
	dt := now - m.now
	if m.now == 0 {
		dt = 0
	}
	m.now = now
	if m.lingerErr != nil && m.sessionUp && now >= m.lingerUntil {
		m.closeSession(m.lingerErr)
		m.lingerErr = nil
	}
	if m.rs.active && m.rs.source {
		rate := m.cfg.MaxRate
		if m.rs.appActive && m.cfg.MinRate > 0 {
			rate = m.cfg.MinRate
		}
		if rate == 0 {
			m.rs.budget = 1 << 62
		} else {
			m.rs.budget += int64(float64(rate) * dt.Seconds())
			if max := rate / 2; m.rs.budget > max && max > m.cfg.ResyncChunk {
				m.rs.budget = max
			} else if m.rs.budget > 4*m.cfg.ResyncChunk && max <= m.cfg.ResyncChunk {
				m.rs.budget = 4 * m.cfg.ResyncChunk
			}
		}
		m.rs.appActive = false
	}
	if m.cfg.PeerTimeout > 0 && m.sessionUp {
		if m.conn == Handshake && now-m.handStart > m.cfg.PeerTimeout {
			m.closeSession(errors.New("handshake timed out"))
			return
		}
		for _, o := range m.ops {
			if o.sent && !o.peerDone && o.session == m.session && now-o.sentAt > m.cfg.PeerTimeout {
				m.closeSession(fmt.Errorf("peer did not answer a request within %v (timeout × ko-count): disconnected, serving degraded", m.cfg.PeerTimeout))
				return
			}
		}
	}
	m.progress()
}

func (m *Machine) closeSession(err error) {
	if m.out.CloseSession == nil {
		m.out.CloseSession = err
	}
}

// --- application requests (primary) ---

// Submit starts an application write (n > 0) or flush (kind opFlush via
// SubmitFlush). The driver waits for the request's Issue, does the local
// write, reports LocalDone, and waits for its Completion.
//
// data is the write's data, which the machine hands to the transport when
// it sends the write; the driver keeps it unchanged until the completion.
func (m *Machine) Submit(id ReqID, off, n int64, fua bool, data []byte) {
	o := &op{id: id, kind: opWrite, off: off, n: n, fua: fua, data: data}
	o.first, o.end = meta.BlockRange(off, n)
	m.submit(o)
}

// SubmitDiscard starts an application discard: a write after which
// [off, off+n) reads as zeros on both nodes, which each node carries out by
// deallocating (or by writing zeros where its disk cannot). It is ordered,
// logged and acknowledged like a write of zeros, with no data on the wire.
func (m *Machine) SubmitDiscard(id ReqID, off, n int64) {
	o := &op{id: id, kind: opWrite, off: off, n: n, zero: true}
	o.first, o.end = meta.BlockRange(off, n)
	m.submit(o)
}

// SubmitFlush starts an application flush (SYNCHRONIZE CACHE): it
// completes when every write completed before it is durable locally and,
// when connected, on the peer.
func (m *Machine) SubmitFlush(id ReqID) {
	m.submit(&op{id: id, kind: opFlush})
}

func (m *Machine) submit(o *op) {
	if m.role != Primary || m.demoting {
		m.out.Complete = append(m.out.Complete, Completion{ID: o.id, Err: ErrNotPrimary})
		return
	}
	if m.disk == DiskFailed && !m.conn.replicating() {
		m.out.Complete = append(m.out.Complete, Completion{ID: o.id, Err: ErrDiskFailed})
		return
	}
	m.ops[o.id] = o
	m.waiting = append(m.waiting, o)
	if o.kind == opWrite && m.rs.active {
		m.rs.appActive = true
	}
	m.progress()
}

// SubmitPR stores state as the persistent reservation state of the
// resource (the caller does not modify it afterwards). On the primary it
// completes once the peer holds it too, or at once when no peer is
// connected: the peer gets the latest state when it connects. The state is
// kept in memory only, on both nodes.
func (m *Machine) SubmitPR(id ReqID, state []byte) {
	if m.role != Primary || m.demoting {
		m.out.Complete = append(m.out.Complete, Completion{ID: id, Err: ErrNotPrimary})
		return
	}
	m.pr, m.prSet = state, true
	if !m.conn.replicating() {
		m.out.Complete = append(m.out.Complete, Completion{ID: id})
		return
	}
	m.prWait[id] = m.session
	m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgPRState, ID: uint64(id)}, Data: state})
}

// PRState returns the persistent reservation state the machine holds
// (see SubmitPR); the caller must not modify it.
func (m *Machine) PRState() []byte { return m.pr }

// sendPR gives a newly connected peer this node's persistent reservation
// state, if it has one: the secondary takes the primary's; a primary that
// has none since it started (hastord restarted) takes the secondary's, the
// latest there is, rather than forget the reservations.
func (m *Machine) sendPR() {
	if m.prSet {
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgPRState}, Data: m.pr})
	}
}

// receivePR takes a persistent reservation state sent by the peer (see
// sendPR): always the primary's; the other's only if this node has none.
func (m *Machine) receivePR(data []byte) {
	if m.prSet && (m.role == Primary || m.peer.role != Primary) {
		return
	}
	m.pr, m.prSet = slices.Clone(data), true
	if m.role == Primary {
		m.out.PRAdopted = true
	}
}

// SubmitRead reads [off, off+len(p)) from the peer into p: the local disk
// is detached. It completes with an error when there is no peer to read
// from.
func (m *Machine) SubmitRead(id ReqID, off int64, p []byte) {
	if m.role != Primary || !m.conn.replicating() || m.peer.disk != DiskUpToDate {
		m.out.Complete = append(m.out.Complete, Completion{ID: id, Err: ErrDiskFailed})
		return
	}
	o := &op{id: id, kind: opRead, off: off, n: int64(len(p)), data: p, sent: true, session: m.session, sentAt: m.now}
	m.ops[id] = o
	m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: MsgReadReq, ID: uint64(id), Off: off, Len: o.n}})
}

// LocalDone records that an application request finished its local I/O.
func (m *Machine) LocalDone(id ReqID, err error) {
	o := m.ops[id]
	if o == nil {
		return
	}
	o.localDone, o.localErr = true, err
	if o.kind == opWrite && err == nil {
		m.stats.DiskWrite += uint64(o.n)
	}
	if err != nil && m.disk != DiskFailed {
		m.message = fmt.Sprintf("local disk I/O error (%v): disk detached", err)
		m.detach()
	}
	m.progress()
}

// blockedBy reports whether application op o must wait: an issued op or
// an earlier waiting one overlaps it, or a resync read covers it.
func (m *Machine) blockedBy(o *op, idx int) bool {
	if o.kind == opFlush {
		// A flush covers the writes issued before it; it waits for none.
		return false
	}
	for _, x := range m.ops {
		if x == o || x.kind == opFlush || x.kind == opPeerWrite || x.kind == opPeerFlush {
			continue
		}
		if (x.issued && !x.localDone || x.kind == opResyncRead || x.kind == opVerifyRead) && overlaps(x, o) {
			return true
		}
	}
	for _, x := range m.waiting[:idx] {
		if x.kind == opWrite && overlaps(x, o) {
			return true
		}
	}
	return false
}

func overlaps(a, b *op) bool { return a.off < b.off+b.n && b.off < a.off+a.n }

// progress issues the waiting operations that may start and completes
// those whose conditions hold. Every event ends with it.
func (m *Machine) progress() {
	m.issueWaiting()
	m.issuePeerOps()
	m.resyncStep()
	m.verifyStep()
	for _, o := range m.ops {
		m.tryFinish(o)
	}
	m.maybeFinishDemote()
}

func (m *Machine) issueWaiting() {
	if len(m.waiting) == 0 {
		return
	}
	if m.conn == Handshake {
		return // writes wait for the handshake's decision
	}
	keep := m.waiting[:0]
	for i, o := range m.waiting {
		if !m.tryIssue(o, i) {
			keep = append(keep, o)
		}
	}
	clear(m.waiting[len(keep):])
	m.waiting = keep
}

// tryIssue starts application op o if nothing blocks it.
func (m *Machine) tryIssue(o *op, idx int) bool {
	if m.blockedBy(o, idx) {
		return false
	}
	if o.kind == opWrite && !o.alHeld {
		st, err := m.al.Begin(o.first, o.end)
		if err != nil {
			m.complete(o, err)
			delete(m.ops, o.id)
			return true
		}
		switch st {
		case meta.Wait:
			return false
		case meta.AfterCommit:
			o.alHeld = true
			m.commitAL()
			return false
		}
		o.alHeld = true
	}
	if o.kind == opWrite && !m.extentsActive(o) {
		m.commitAL() // its extents are not durable in the log yet
		return false
	}
	o.issued = true
	o.sentAt = m.now
	if m.conn.replicating() && m.peer.disk != DiskFailed {
		o.sent, o.session = true, m.session
		kind := MsgWrite
		var fl uint32
		switch {
		case o.kind == opFlush:
			kind = MsgFlush
		case o.zero:
			fl = FlagDiscard
		case o.fua:
			fl = FlagFUA
		}
		m.out.Sends = append(m.out.Sends, Out{Msg: Msg{Type: kind, ID: uint64(o.id), Off: o.off, Len: o.n, Flags: fl},
			Data: o.data, Copy: m.cfg.Protocol == ProtocolA && !o.fua, Req: o.id})
		if o.kind == opWrite && !o.zero {
			m.stats.Sent += uint64(o.n)
		}
	} else if o.kind == opWrite {
		m.markOOS(o)
		o.peerDone = true
	} else {
		o.peerDone = true
	}
	if m.disk == DiskFailed {
		// Detached: the peer's copy is the only one.
		o.localDone = true
		if !o.sent {
			o.localErr = ErrDiskFailed
		}
		return true
	}
	m.out.Issue = append(m.out.Issue, o.id)
	return true
}

// extentsActive reports whether every extent of o is recorded active on
// disk.
func (m *Machine) extentsActive(o *op) bool {
	if o.first == o.end {
		return true
	}
	for e := meta.ExtentOf(o.first); e <= meta.ExtentOf(o.end-1); e++ {
		if !m.al.IsActive(e) {
			return false
		}
	}
	return true
}

func (m *Machine) commitAL() {
	if m.alTx != nil {
		return
	}
	tx, ok := m.al.Seal()
	if !ok {
		return
	}
	m.alTx = tx
	m.out.CommitAL = tx
}

// markOOS records that op o's blocks may differ from the peer's.
func (m *Machine) markOOS(o *op) {
	if o.n > 0 {
		m.bm.SetRange(o.first, o.end)
	}
}

// tryFinish completes and retires op o when its conditions hold.
func (m *Machine) tryFinish(o *op) {
	switch o.kind {
	case opWrite, opFlush:
	default:
		return
	}
	if !o.issued || !o.localDone {
		return
	}
	if !o.completed && m.peerSatisfied(o) && m.sbDurable >= o.sbGate {
		err := o.localErr
		if err != nil && o.sent && o.peerDone && !o.peerErr {
			err = nil // detached: the peer has it
		}
		if o.kind == opWrite && !o.sent && m.disk == DiskFailed {
			err = ErrDiskFailed
		}
		m.complete(o, err)
	}
	if o.completed && (o.peerDone || !o.sent) {
		if o.alHeld {
			m.al.Complete(o.first, o.end)
			o.alHeld = false
		}
		delete(m.ops, o.id)
	}
}

func (m *Machine) peerSatisfied(o *op) bool {
	if !o.sent || o.peerDone {
		return true
	}
	if o.kind == opFlush || o.fua || m.disk == DiskFailed {
		return false // detached: the peer's disk holds the only copy
	}
	switch m.cfg.Protocol {
	case ProtocolA:
		return true
	case ProtocolB:
		return o.recvAcked
	}
	return false
}

func (m *Machine) complete(o *op, err error) {
	if o.completed {
		return
	}
	o.completed = true
	m.out.Complete = append(m.out.Complete, Completion{ID: o.id, Err: err})
}

// --- session events ---

// PeerUp records that a session with the peer started (id is its
// identifier). The driver then delivers the peer's messages.
func (m *Machine) PeerUp(id uint64) {
	if m.sessionUp {
		m.PeerDown(m.session, errors.New("replaced by a new session"))
	}
	m.lingerErr = nil
	if !m.wantConnect {
		m.closeSession(errors.New("not connecting (hastorctl connect)"))
		return
	}
	m.session, m.sessionUp = id, true
	m.conn = Handshake
	m.handStart = m.now
	m.decided = false
	m.peer = peerInfo{disk: DiskUnknown}
	m.rs = resync{}
	m.sendState(MsgState)
	m.out.StateChanged = true
	m.progress()
}

func (m *Machine) sendState(t MsgType) {
	m.out.Sends = append(m.out.Sends, Out{Msg: Msg{
		Type: t, Role: m.role, Disk: m.disk, GFlags: m.gflags(), UUIDs: m.uuids(),
		Size: m.cfg.DataSize, Protocol: m.cfg.Protocol, PrimaryAtSplit: m.primaryAtSplit,
		Changed: m.bm.Count(), Flags: boolFlag(m.discardMyData),
	}})
}

func boolFlag(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// PeerDown records that the session id ended.
func (m *Machine) PeerDown(id uint64, err error) {
	if id != m.session || !m.sessionUp {
		return
	}
	wasReplicating := m.conn.replicating()
	m.sessionUp = false
	m.lingerErr = nil
	// Stored persistent reservation states the peer did not acknowledge
	// complete: it gets the latest one when it connects again.
	for rid := range m.prWait {
		m.out.Complete = append(m.out.Complete, Completion{ID: rid})
	}
	clear(m.prWait)
	// Every write the peer may lack is now out of sync.
	for _, o := range m.ops {
		if o.kind == opRead && !o.completed {
			m.complete(o, ErrDiskFailed)
			delete(m.ops, o.id)
			continue
		}
		if o.sent && o.session == id && !o.peerDone {
			o.peerDone = true
			if o.kind == opWrite {
				m.markOOS(o)
			}
		}
	}
	// The peer's operations in flight finish locally; their acks are
	// dropped. Those still queued are dropped.
	keep := m.peerQ[:0]
	for _, o := range m.peerQ {
		if o.issued {
			keep = append(keep, o)
		} else {
			delete(m.ops, o.id)
		}
	}
	clear(m.peerQ[len(keep):])
	m.peerQ = keep
	gate := uint64(0)
	if wasReplicating && m.role == Primary {
		m.primaryAtSplit = true
		m.setUUIDs(m.uuids().LosePeer(m.newUUID(), true))
		gate = m.persistSB()
	}
	if m.rs.active {
		m.flushBitmap()
		if m.rs.source {
			m.sb.ResyncPos = m.rs.pos
		}
	}
	for _, o := range m.ops {
		if (o.kind == opWrite || o.kind == opFlush) && !o.completed && o.sbGate < gate {
			o.sbGate = gate
		}
	}
	// Resync ops of the source are dropped (their buffers come back
	// through the transport).
	for id, o := range m.ops {
		if o.kind == opResyncRead && o.localDone {
			delete(m.ops, id)
		}
	}
	m.rs = resync{}
	m.peer = peerInfo{disk: DiskUnknown}
	if m.conn == Handshake || m.conn.replicating() {
		m.conn = Connecting
	}
	if !m.wantConnect && m.conn == Connecting {
		m.conn = StandAlone
	}
	m.out.StateChanged = true
	m.progress()
}

// newUUID returns a fresh generation UUID.
func (m *Machine) newUUID() genid.UUID {
	if m.randUUID != nil {
		return m.randUUID()
	}
	m.uuidCounter++
	return genid.UUID(m.uuidCounter*0x9E3779B97F4A7C15 | 1)
}
