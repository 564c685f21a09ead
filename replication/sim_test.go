package replication

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"hastor/replication/genid"
	"hastor/replication/meta"
)

// simNode is one node of a simulated two-node resource: a machine, its
// disk as a byte slice, and its inboxes of messages from the peer, one per
// transport channel (control, data).
type simNode struct {
	name  string
	m     *Machine
	disk  []byte
	inbox [2][]Out
	done  map[ReqID]error
	// app holds the data of application writes by ID until issued.
	app map[ReqID][]byte
	// holdIO queues local I/O of the machine's own operations in heldIO
	// instead of doing it.
	holdIO bool
	heldIO []LocalIO
	// failApp fails the local I/O of application requests.
	failApp bool
}

// sim runs two machines deterministically: every action is carried out at
// once, messages are delivered in order per channel, and the link can be
// cut. As over the real transport, the control and data channels are not
// ordered with each other: a seeded random choice says which delivers next.
type sim struct {
	t       *testing.T
	n       [2]*simNode
	up      bool
	hold    bool // messages stay in the inboxes
	session uint64
	nextReq ReqID
	rng     *rand.Rand
}

const simSize = 64 << 20

func newSim(t *testing.T, proto Protocol) *sim { return newSimCfg(t, proto, false, 1) }

// newSimCfg makes a sim whose scheduler is seeded with seed.
func newSimCfg(t *testing.T, proto Protocol, checksum bool, seed uint64) *sim {
	return newSimWith(t, MachineConfig{Protocol: proto, Checksum: checksum}, seed)
}

// newSimWith makes a sim of two machines configured by cfg (DataSize,
// Tiebreak and the resync chunk and window are set here).
func newSimWith(t *testing.T, cfg MachineConfig, seed uint64) *sim {
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, uint64(cfg.Protocol)))}
	for i := range s.n {
		cfg.DataSize, cfg.Tiebreak, cfg.ResyncChunk, cfg.ResyncWindow = simSize, i == 0, 64<<10, 4
		bm := meta.NewBitmap(simSize / meta.BlockSize)
		al := meta.NewActivityLog(61, 1)
		s.n[i] = &simNode{name: string(rune('a' + i)), m: NewMachine(cfg, meta.Superblock{}, bm, al),
			disk: make([]byte, simSize), done: map[ReqID]error{}, app: map[ReqID][]byte{}}
	}
	s.run()
	return s
}

// run carries out actions until both machines are quiet. Each step picks
// one enabled action at random (seeded): a node's pending Ready, or the
// next message of one of its two inboxes.
func (s *sim) run() {
	type action struct{ node, ch int } // ch -1: Ready
	var acts []action
	for range 1000000 {
		acts = acts[:0]
		for i, n := range s.n {
			if n.m.HasReady() {
				acts = append(acts, action{i, -1})
			}
			for ch := range n.inbox {
				if s.up && !s.hold && len(n.inbox[ch]) > 0 {
					acts = append(acts, action{i, ch})
				}
			}
		}
		if len(acts) == 0 {
			return
		}
		a := acts[s.rng.IntN(len(acts))]
		n := s.n[a.node]
		if a.ch < 0 {
			s.apply(n, s.n[1-a.node], n.m.Ready())
			continue
		}
		o := n.inbox[a.ch][0]
		n.inbox[a.ch] = n.inbox[a.ch][1:]
		msg, err := decodeMsg(o.Msg.Type, o.Msg.encode(nil))
		if err != nil {
			s.t.Fatal(err)
		}
		n.m.Receive(msg, o.Data)
	}
	s.t.Fatal("simulation does not settle")
}

func (s *sim) apply(n, peer *simNode, rd Ready) {
	for _, o := range rd.Sends {
		if o.Data != nil {
			o.Data = bytes.Clone(o.Data)
		}
		if s.up {
			ch := 0
			if o.Msg.Type.onData() {
				ch = 1
			}
			peer.inbox[ch] = append(peer.inbox[ch], o)
		}
	}
	if rd.PersistSB != nil {
		n.m.SuperblockDone(nil)
	}
	if rd.CommitAL != nil {
		n.m.ALDone(nil)
	}
	if rd.FlushBitmap {
		n.m.BitmapDone(nil)
	}
	for _, io := range rd.Local {
		if n.holdIO {
			n.heldIO = append(n.heldIO, io)
			continue
		}
		s.doIO(n, io)
	}
	for _, id := range rd.Issue {
		if n.failApp {
			n.m.LocalDone(id, fmt.Errorf("injected I/O error"))
			continue
		}
		if d, ok := n.app[id]; ok {
			off := int64(binaryOff(d))
			copy(n.disk[off:], d[8:])
		}
		n.m.LocalDone(id, nil)
	}
	for _, c := range rd.Complete {
		n.done[c.ID] = c.Err
	}
	if rd.CloseSession != nil && s.up {
		s.t.Logf("%s closes the session: %v", n.name, rd.CloseSession)
		s.cut()
	}
}

// releaseIO does the held local I/O of node n.
func (s *sim) releaseIO(n *simNode) {
	n.holdIO = false
	for len(n.heldIO) > 0 {
		io := n.heldIO[0]
		n.heldIO = n.heldIO[1:]
		s.doIO(n, io)
	}
	s.run()
}

func (s *sim) doIO(n *simNode, io LocalIO) {
	{
		switch io.Kind {
		case IOWrite, IOWriteFUA:
			copy(n.disk[io.Off:], io.Data)
			n.m.IODone(io.ID, nil, nil, false, nil)
		case IOZero:
			clear(n.disk[io.Off : io.Off+io.Len])
			n.m.IODone(io.ID, nil, nil, false, nil)
		case IOFlush:
			n.m.IODone(io.ID, nil, nil, false, nil)
		case IORead:
			d := bytes.Clone(n.disk[io.Off : io.Off+io.Len])
			n.m.IODone(io.ID, nil, d, !bytes.ContainsFunc(d, func(r rune) bool { return r != 0 }), nil)
		case IOReadDigest:
			sum := sha256.Sum256(n.disk[io.Off : io.Off+io.Len])
			n.m.IODone(io.ID, nil, nil, false, sum[:])
		case IOBlockDigests:
			var d []byte
			for off := io.Off; off < io.Off+io.Len; off += 4096 {
				sum := sha256.Sum256(n.disk[off : off+4096])
				d = append(d, sum[:8]...)
			}
			n.m.IODone(io.ID, nil, nil, false, d)
		}
	}
}

func binaryOff(d []byte) uint64 {
	var off uint64
	for i := range 8 {
		off |= uint64(d[i]) << (8 * i)
	}
	return off
}

func (s *sim) connect() {
	s.session++
	s.up = true
	for _, n := range s.n {
		n.inbox = [2][]Out{}
		n.m.PeerUp(s.session)
	}
	s.run()
}

func (s *sim) cut() {
	s.up = false
	for _, n := range s.n {
		n.inbox = [2][]Out{}
		n.m.PeerDown(s.session, fmt.Errorf("cut"))
	}
}

// write submits an application write of n bytes of pattern v at off on
// node i and runs the simulation; it returns the completion error.
func (s *sim) write(i int, off, n int64, v byte) error {
	id := s.submit(i, off, n, v, false)
	nd := s.n[i]
	err, ok := nd.done[id]
	if !ok {
		s.t.Fatalf("write %d on %s did not complete", id, nd.name)
	}
	return err
}

// submit submits a write, runs the simulation and returns its ID.
func (s *sim) submit(i int, off, n int64, v byte, fua bool) ReqID {
	s.nextReq++
	id := s.nextReq
	nd := s.n[i]
	d := make([]byte, 8+n)
	for k := range 8 {
		d[k] = byte(uint64(off) >> (8 * k))
	}
	for k := range n {
		d[8+k] = v
	}
	nd.app[id] = d
	nd.m.Submit(id, off, n, fua, d[8:])
	s.run()
	return id
}

func (s *sim) same() bool { return bytes.Equal(s.n[0].disk, s.n[1].disk) }

func (s *sim) status(i int) Status { return s.n[i].m.Status() }

func TestSimFirstFullSync(t *testing.T) {
	s := newSim(t, ProtocolC)
	for i := range s.n {
		s.n[i].m.Connect(false)
	}
	if err := s.n[0].m.Promote(false); err == nil {
		t.Fatal("promoting an Inconsistent node without --force worked")
	}
	if err := s.n[0].m.Promote(true); err != nil {
		t.Fatal(err)
	}
	s.run()
	for k := range 100 {
		if err := s.write(0, int64(k)*4096*37%simSize, 4096, byte(k+1)); err != nil {
			t.Fatal(err)
		}
	}
	s.connect()
	st := s.status(0)
	if st.Conn != Established || st.PeerDisk != DiskUpToDate || s.status(1).Disk != DiskUpToDate {
		t.Fatalf("after full sync: %+v / %+v", st, s.status(1))
	}
	if !s.same() {
		t.Fatal("disks differ after the full sync")
	}
	if st.OutOfSync != 0 || s.status(1).OutOfSync != 0 {
		t.Fatalf("out of sync after full sync: %d %d", st.OutOfSync, s.status(1).OutOfSync)
	}
	// Replicated writes.
	for k := range 50 {
		if err := s.write(0, int64(k)*8192, 8192, byte(200+k)); err != nil {
			t.Fatal(err)
		}
	}
	if !s.same() {
		for i := range s.n[0].disk {
			if s.n[0].disk[i] != s.n[1].disk[i] {
				t.Fatalf("disks differ after replicated writes at %d: %d vs %d; %+v", i, s.n[0].disk[i], s.n[1].disk[i], s.status(1))
			}
		}
	}
}

func connected(t *testing.T, proto Protocol) *sim { return connectedSeed(t, proto, 1) }

func connectedSeed(t *testing.T, proto Protocol, seed uint64) *sim {
	s := newSimCfg(t, proto, false, seed)
	for i := range s.n {
		s.n[i].m.Connect(false)
	}
	if err := s.n[0].m.Promote(true); err != nil {
		t.Fatal(err)
	}
	s.run()
	s.connect()
	if s.status(0).Conn != Established {
		t.Fatalf("not established: %+v", s.status(0))
	}
	return s
}

func TestSimBitmapResyncAfterDisconnect(t *testing.T) {
	s := connected(t, ProtocolC)
	s.write(0, 0, 4096, 1)
	s.cut()
	s.run()
	before := s.status(0).Counters.ResyncBytes
	var written int64
	for k := range 40 {
		if err := s.write(0, int64(k)*3*4096, 4096, byte(k+7)); err != nil {
			t.Fatal(err)
		}
		written += 4096
	}
	if got := s.status(0).OutOfSync; got != uint64(written) {
		t.Fatalf("out of sync %d, want %d", got, written)
	}
	s.connect()
	if !s.same() {
		t.Fatal("disks differ after the bitmap resync")
	}
	st := s.status(0)
	if st.Counters.ResyncBytes-before != uint64(written) {
		t.Fatalf("resynced %d bytes, want %d (only the changed blocks)", st.Counters.ResyncBytes-before, written)
	}
	if st.Conn != Established || st.OutOfSync != 0 {
		t.Fatalf("after resync: %+v", st)
	}
}

func TestSimSplitBrainDetected(t *testing.T) {
	s := connected(t, ProtocolC)
	s.cut()
	s.run()
	s.write(0, 0, 4096, 1)
	if err := s.n[1].m.Promote(false); err != nil {
		t.Fatal(err)
	}
	s.run()
	if err := s.write(1, 8192, 4096, 2); err != nil {
		t.Fatal(err)
	}
	s.connect()
	for i := range s.n {
		st := s.status(i)
		if st.Conn != SplitBrain || st.Message == "" {
			t.Fatalf("node %d: %+v", i, st)
		}
	}
	if s.n[0].disk[0] != 1 || s.n[1].disk[8192] != 2 {
		t.Fatal("split brain overwrote data")
	}
	// Resolve: node b discards its changes.
	if err := s.n[1].m.Demote(); err != nil {
		t.Fatal(err)
	}
	s.run()
	if err := s.n[1].m.Connect(true); err != nil {
		t.Fatal(err)
	}
	s.n[0].m.Connect(false)
	s.connect()
	if !s.same() || s.n[1].disk[0] != 1 || s.n[1].disk[8192] != 0 {
		t.Fatalf("after discarding b: same=%v %+v", s.same(), s.status(1))
	}
}

// TestSimRandom drives random writes, discards, cuts and reconnects under each
// protocol and checks after every reconnect that the disks are identical,
// and that every acknowledged write is on the primary.
func TestSimRandom(t *testing.T) {
	for seed := range uint64(4) {
		for _, p := range []Protocol{ProtocolA, ProtocolB, ProtocolC} {
			t.Run(fmt.Sprintf("%s/seed%d", p, seed), func(t *testing.T) { simRandom(t, p, seed) })
		}
	}
}

func simRandom(t *testing.T, p Protocol, seed uint64) {
	s := connectedSeed(t, p, seed)
	rng := rand.New(rand.NewPCG(seed, uint64(p)))
	model := map[int64]byte{}
	for step := range 2000 {
		switch r := rng.IntN(100); {
		case r < 3 && s.up:
			s.cut()
			s.run()
		case r < 6 && !s.up:
			s.connect()
			if !s.same() {
				t.Fatalf("step %d: disks differ after reconnect", step)
			}
		case r < 16: // a discard of one to four blocks
			blk, n := rng.Int64N(simSize/4096/4), rng.Int64N(4)+1
			if err := s.discard(0, blk*4096, n*4096); err != nil {
				t.Fatal(err)
			}
			for b := blk; b < blk+n; b++ {
				model[b] = 0
			}
		default:
			blk := rng.Int64N(simSize / 4096 / 4)
			v := byte(rng.IntN(255) + 1)
			if err := s.write(0, blk*4096, 4096, v); err != nil {
				t.Fatal(err)
			}
			model[blk] = v
		}
	}
	for blk, v := range model {
		if s.n[0].disk[blk*4096] != v {
			t.Fatalf("block %d: %d, want %d", blk, s.n[0].disk[blk*4096], v)
		}
	}
}

var _ = genid.UUID(0)

// TestSimProtocols checks when a write completes under each protocol
// (DRBD User's Guide, "Replication modes"): A once local and queued, B once
// the peer received it, C once it is on the peer's disk; a FUA write and a
// flush wait for the peer's disk whatever the protocol.
func TestSimProtocols(t *testing.T) {
	for _, tc := range []struct {
		p                Protocol
		atQueued, atRecv bool
	}{
		{ProtocolA, true, true},
		{ProtocolB, false, true},
		{ProtocolC, false, false},
	} {
		t.Run(tc.p.String(), func(t *testing.T) {
			s := connected(t, tc.p)
			a, b := s.n[0], s.n[1]
			s.hold = true
			id := s.submit(0, 0, 4096, 9, false)
			if _, ok := a.done[id]; ok != tc.atQueued {
				t.Fatalf("completed with the message queued: %v, want %v", ok, tc.atQueued)
			}
			fua := s.submit(0, 8192, 4096, 9, true)
			if _, ok := a.done[fua]; ok {
				t.Fatal("FUA write completed before the peer's disk had it")
			}
			// Deliver to b but hold b's disk: the write is received, not
			// written.
			b.holdIO = true
			s.hold = false
			s.run()
			if _, ok := a.done[id]; ok != tc.atRecv {
				t.Fatalf("completed with the write received but not on the peer's disk: %v, want %v", ok, tc.atRecv)
			}
			if _, ok := a.done[fua]; ok {
				t.Fatal("FUA write completed before the peer's disk had it")
			}
			s.releaseIO(b)
			if _, ok := a.done[id]; !ok {
				t.Fatal("not completed with the write on the peer's disk")
			}
			if _, ok := a.done[fua]; !ok {
				t.Fatal("FUA write not completed with the write on the peer's disk")
			}
			// A flush waits for the peer's flush.
			b.holdIO = true
			s.nextReq++
			fl := s.nextReq
			a.m.SubmitFlush(fl)
			s.run()
			if _, ok := a.done[fl]; ok {
				t.Fatal("flush completed before the peer flushed")
			}
			s.releaseIO(b)
			if err, ok := a.done[fl]; !ok || err != nil {
				t.Fatalf("flush: %v %v", ok, err)
			}
		})
	}
}

// TestSimPeerLostMidWrite: a write whose peer vanished before answering
// completes (degraded), and its blocks are marked out of sync and resynced
// on reconnect.
func TestSimPeerLostMidWrite(t *testing.T) {
	s := connected(t, ProtocolC)
	s.hold = true
	id := s.submit(0, 4096*10, 4096, 5, false)
	s.cut()
	s.run()
	if err, ok := s.n[0].done[id]; !ok || err != nil {
		t.Fatalf("write after the peer was lost: %v %v", ok, err)
	}
	if got := s.status(0).OutOfSync; got != 4096 {
		t.Fatalf("out of sync %d, want 4096", got)
	}
	s.hold = false
	s.connect()
	if !s.same() {
		t.Fatal("disks differ after reconnect")
	}
}

// TestSimInterruptedResyncResumes: a resync cut half way resumes where it
// stopped instead of starting over.
func TestSimInterruptedResyncResumes(t *testing.T) {
	s := connected(t, ProtocolC)
	s.cut()
	s.run()
	for k := range 64 {
		s.write(0, int64(k)*64<<10, 64<<10, byte(k+1))
	}
	before := s.status(0).Counters.ResyncBytes
	s.n[1].holdIO = true
	s.connect()
	// b holds its writes: release a few, then cut.
	for range 8 {
		io := s.n[1].heldIO[0]
		s.n[1].heldIO = s.n[1].heldIO[1:]
		s.doIO(s.n[1], io)
		s.run()
	}
	s.cut()
	s.releaseIO(s.n[1]) // the writes in flight finish; their acks are lost
	if st := s.status(1); st.Disk != DiskInconsistent {
		t.Fatalf("interrupted sync target is %v", st.Disk)
	}
	if err := s.n[1].m.Promote(false); err == nil {
		t.Fatal("an Inconsistent sync target was promoted")
	}
	s.connect()
	if !s.same() {
		t.Fatal("disks differ after the resumed resync")
	}
	if got := s.status(0).Counters.ResyncBytes - before; got > 64*64<<10 {
		t.Fatalf("resynced %d bytes in total, more than the %d written", got, 64*64<<10)
	}
}

// TestSimVerifyRepairs: a block changed behind replication's back on the
// secondary is found by online verify (twice, then marked) and repaired
// from the primary.
func TestSimVerifyRepairs(t *testing.T) {
	s := connected(t, ProtocolC)
	for k := range 16 {
		s.write(0, int64(k)*4096*100, 4096, byte(k+1))
	}
	s.n[1].disk[4096*300+17] ^= 0xFF // corrupt one block of b
	s.n[1].disk[4096*9000] ^= 0x01   // and another
	if s.same() {
		t.Fatal("corruption did not take")
	}
	if err := s.n[0].m.Verify(); err != nil {
		t.Fatal(err)
	}
	s.run()
	if !s.same() {
		t.Fatalf("verify did not repair: %+v", s.status(0))
	}
	st := s.status(0)
	if st.Conn != Established || st.OutOfSync != 0 || !strings.Contains(st.Message, "8.0 KiB out of sync") {
		t.Fatalf("after verify: %+v", st)
	}
}

// TestSimDetachOnIOError: the primary's disk fails; it detaches and goes
// on serving writes and reads through the peer (DRBD's on-io-error
// detach), and its status says so.
func TestSimDetachOnIOError(t *testing.T) {
	s := connected(t, ProtocolA)
	s.write(0, 0, 4096, 1)
	s.n[0].failApp = true
	if err := s.write(0, 4096, 4096, 2); err != nil {
		t.Fatalf("write that hit the disk error: %v (the peer has it)", err)
	}
	st := s.status(0)
	if st.Disk != DiskFailed || st.Message == "" {
		t.Fatalf("after the disk error: %+v", st)
	}
	for k := range 10 {
		if err := s.write(0, int64(k+2)*4096, 4096, byte(k+3)); err != nil {
			t.Fatalf("write while detached: %v", err)
		}
	}
	if s.n[1].disk[4096*5] != 6 {
		t.Fatal("write while detached did not reach the peer")
	}
	s.nextReq++
	p := make([]byte, 8192)
	s.n[0].m.SubmitRead(s.nextReq, 4096*4, p)
	s.run()
	if err, ok := s.n[0].done[s.nextReq]; !ok || err != nil || p[0] != 5 || p[4096] != 6 {
		t.Fatalf("read through the peer: %v %v %d %d", ok, err, p[0], p[4096])
	}
	s.cut()
	s.run()
	if err := s.write(0, 0, 4096, 9); err == nil {
		t.Fatal("a write with neither disk nor peer succeeded")
	}
}

// TestSimChecksumResync: with checksum-based resync, blocks marked out of
// sync whose contents are in fact equal are not sent.
func TestSimChecksumResync(t *testing.T) {
	s := newSimCfg(t, ProtocolC, true, 1)
	for i := range s.n {
		s.n[i].m.Connect(false)
	}
	s.n[0].m.Promote(true)
	s.run()
	s.connect()
	s.cut()
	s.run()
	// 16 chunks written while apart, 4 of them with the data the peer
	// already has (the same bytes written again).
	for k := range 16 {
		v := byte(k + 1)
		if k%4 == 0 {
			v = 0 // the peer's copy is all zero there too
		}
		s.write(0, int64(k)*64<<10, 64<<10, v)
	}
	sentBefore := s.status(0).Counters.Sent
	s.connect()
	if !s.same() {
		t.Fatal("disks differ after a checksum resync")
	}
	sent := s.status(0).Counters.Sent - sentBefore
	if want := uint64(12 * 64 << 10); sent != want {
		t.Fatalf("sent %d bytes of data, want %d (only the 12 chunks that differ)", sent, want)
	}
}

// TestSimResyncRate checks the resync rate controller with simulated
// time: max_rate caps a resync; while the application writes, resync
// yields down to min_rate; once it stops, resync speeds up and ends.
func TestSimResyncRate(t *testing.T) {
	const tick = 100 * time.Millisecond
	run := func(s *sim, now *time.Duration, d time.Duration, write bool) uint64 {
		before := s.status(0).ResyncDone
		for end := *now + d; *now < end; {
			*now += tick
			if write {
				if err := s.write(0, 60<<20, 4096, 1); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range s.n {
				n.m.Tick(*now)
			}
			s.run()
		}
		return s.status(0).ResyncDone - before
	}
	start := func(cfg MachineConfig) (*sim, *time.Duration) {
		s := newSimWith(t, cfg, 1)
		now := time.Millisecond
		for _, n := range s.n {
			n.m.Tick(now)
			n.m.Connect(false)
		}
		if err := s.n[0].m.Promote(true); err != nil {
			t.Fatal(err)
		}
		s.run()
		s.connect()
		return s, &now
	}
	near := func(what string, got, want uint64) {
		t.Helper()
		if lo, hi := want-want/5, want+want/5+256<<10; got < lo || got > hi {
			t.Errorf("%s: resynced %d bytes, want about %d", what, got, want)
		}
	}

	s, now := start(MachineConfig{Protocol: ProtocolC, MaxRate: 8 << 20})
	near("2 s at max_rate 8 MiB/s", run(s, now, 2*time.Second, false), 16<<20)

	// (max_rate is set only so that the resync does not finish at once,
	// before the first tick; without it an idle resync is unlimited.)
	s, now = start(MachineConfig{Protocol: ProtocolC, MinRate: 2 << 20, MaxRate: 1 << 30})
	near("2 s of application writes, min_rate 2 MiB/s", run(s, now, 2*time.Second, true), 4<<20)
	run(s, now, tick, false)
	run(s, now, tick, false)
	if st := s.status(0); st.Resync || st.PeerDisk != DiskUpToDate {
		t.Fatalf("idle again, the resync did not finish: %+v", st)
	}
}

// discard submits an application discard on node i and runs the
// simulation; it returns the completion error.
func (s *sim) discard(i int, off, n int64) error {
	s.nextReq++
	id := s.nextReq
	nd := s.n[i]
	d := make([]byte, 8+n) // the local I/O: zeros at off
	for k := range 8 {
		d[k] = byte(uint64(off) >> (8 * k))
	}
	nd.app[id] = d
	nd.m.SubmitDiscard(id, off, n)
	s.run()
	err, ok := nd.done[id]
	if !ok {
		s.t.Fatalf("discard %d on %s did not complete", id, nd.name)
	}
	return err
}

// TestSimDiscard: a discard reaches the peer's disk as zeros under every
// protocol, with no data on the wire; while disconnected it is marked out
// of sync and the resync carries it.
func TestSimDiscard(t *testing.T) {
	for _, p := range []Protocol{ProtocolA, ProtocolB, ProtocolC} {
		t.Run(p.String(), func(t *testing.T) {
			s := connected(t, p)
			if err := s.write(0, 0, 64<<10, 5); err != nil {
				t.Fatal(err)
			}
			sent := s.status(0).Counters.Sent
			if err := s.discard(0, 8<<10, 16<<10); err != nil {
				t.Fatal(err)
			}
			if !s.same() || !bytes.Equal(s.n[1].disk[8<<10:24<<10], make([]byte, 16<<10)) || s.n[1].disk[24<<10] != 5 {
				t.Fatal("the discard did not reach the peer as zeros")
			}
			if got := s.status(0).Counters.Sent; got != sent {
				t.Fatalf("a discard sent %d bytes of data", got-sent)
			}
			s.cut()
			s.run()
			if err := s.discard(0, 32<<10, 8<<10); err != nil {
				t.Fatal(err)
			}
			if got := s.status(0).OutOfSync; got != 8<<10 {
				t.Fatalf("out of sync after a discard while disconnected: %d, want %d", got, 8<<10)
			}
			s.connect()
			if !s.same() || s.status(0).OutOfSync != 0 {
				t.Fatalf("after the resync: same %v, status %+v", s.same(), s.status(0))
			}
		})
	}
}

// submitPR stores state as the persistent reservation state on node i
// and runs the simulation; it returns the completion error.
func (s *sim) submitPR(i int, state string) error {
	s.nextReq++
	id := s.nextReq
	s.n[i].m.SubmitPR(id, []byte(state))
	s.run()
	err, ok := s.n[i].done[id]
	if !ok {
		s.t.Fatalf("SubmitPR %d on %s did not complete", id, s.n[i].name)
	}
	return err
}

// TestSimPRState: the primary's persistent reservation state reaches the
// secondary before SubmitPR completes; while disconnected it completes at
// once and the peer gets the latest state when it connects; after a
// switchover the new primary holds it and hands its changes back.
func TestSimPRState(t *testing.T) {
	s := connected(t, ProtocolC)
	if err := s.submitPR(0, "s1"); err != nil {
		t.Fatal(err)
	}
	if got := string(s.n[1].m.PRState()); got != "s1" {
		t.Fatalf("secondary holds %q, want s1", got)
	}
	if err := s.submitPR(1, "no"); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("SubmitPR on the secondary: %v", err)
	}
	s.cut()
	s.run()
	if err := s.submitPR(0, "s2"); err != nil {
		t.Fatal(err)
	}
	if got := string(s.n[1].m.PRState()); got != "s1" {
		t.Fatalf("disconnected secondary holds %q", got)
	}
	s.connect()
	if got := string(s.n[1].m.PRState()); got != "s2" {
		t.Fatalf("after reconnecting the secondary holds %q, want s2", got)
	}
	// Switchover: the new primary enforces what it received and sends
	// its own changes.
	if err := s.n[0].m.Demote(); err != nil {
		t.Fatal(err)
	}
	s.run()
	if err := s.n[1].m.Promote(false); err != nil {
		t.Fatal(err)
	}
	s.run()
	if got := string(s.n[1].m.PRState()); got != "s2" {
		t.Fatalf("new primary holds %q, want s2", got)
	}
	if err := s.submitPR(1, "s3"); err != nil {
		t.Fatal(err)
	}
	if got := string(s.n[0].m.PRState()); got != "s3" {
		t.Fatalf("old primary holds %q, want s3", got)
	}
	// A state waiting for its ack when the link goes completes.
	s.hold = true
	s.nextReq++
	id := s.nextReq
	s.n[1].m.SubmitPR(id, []byte("s4"))
	s.run()
	if _, done := s.n[1].done[id]; done {
		t.Fatal("SubmitPR completed before the peer held the state")
	}
	s.hold = false
	s.cut()
	s.run()
	if err, done := s.n[1].done[id]; !done || err != nil {
		t.Fatalf("SubmitPR after the link went: done %v, err %v", done, err)
	}
	// The primary forgets its state (hastord restarted): on connecting it
	// takes the secondary's, the latest there is, which never reached
	// "s4".
	s.n[1].m.pr, s.n[1].m.prSet = nil, false
	s.connect()
	if got := string(s.n[1].m.PRState()); got != "s3" {
		t.Fatalf("restarted primary holds %q, want the secondary's s3", got)
	}
	// Once it has its own, it keeps it and the secondary takes it.
	if err := s.submitPR(1, "s5"); err != nil {
		t.Fatal(err)
	}
	s.cut()
	s.run()
	s.connect()
	if a, b := string(s.n[0].m.PRState()), string(s.n[1].m.PRState()); a != "s5" || b != "s5" {
		t.Fatalf("after reconnecting: secondary %q, primary %q, want s5 on both", a, b)
	}
}
