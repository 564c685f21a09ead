package replication

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"hastor/blockdev"
	"hastor/replication/genid"
	"hastor/replication/meta"
	"hastor/replication/transport"
)

// Options configure a Node.
type Options struct {
	// Name names the resource (its volume_id) in logs and the handshake.
	Name string
	// Data is the backing device. With internal metadata it also holds
	// the metadata at its end, and the replicated data area is shorter.
	Data blockdev.Device
	// Meta is the external metadata device, or nil for internal metadata.
	Meta blockdev.Device
	// ALExtents is the activity-log size for new metadata.
	ALExtents int
	// Machine configures the state machine; DataSize is filled in.
	Machine MachineConfig
	// Link configures the transport; Alloc and Logger are filled in.
	Link transport.Config
	// Pool provides aligned buffers.
	Pool   *blockdev.Pool
	Logger *slog.Logger
	// OnChange is called (from the driver, without locks held) after the
	// role, disk or connection state changed.
	OnChange func()
}

// Node is the driver of one replicated resource on this node: it owns the
// state machine (under mu), the metadata store, the transport link and
// the worker goroutines, and carries out the machine's actions. Its Device
// is the blockdev.Device the LUN reads and writes.
type Node struct {
	opts  Options
	log   *slog.Logger
	data  blockdev.Device
	fua   blockdev.FUAWriter
	async blockdev.AsyncWriter // nil: every local write goes to a worker
	disc  blockdev.Discarder
	store *meta.Store
	size  int64
	link  *transport.Link
	pool  *blockdev.Pool
	start time.Time

	mu struct {
		sync.Mutex
		m       *Machine
		sess    *transport.Session
		reqs    map[ReqID]*request
		nextReq ReqID
		changed chan struct{} // closed and replaced on every state change
	}
	// dataMu orders data-channel sends: it is taken before mu is released,
	// so sends leave in the order the machine produced them.
	dataMu sync.Mutex

	reqPool sync.Pool // *request

	bufMu struct {
		sync.Mutex
		m map[*byte]*blockdev.Buf
	}

	primary  atomic.Bool
	detached atomic.Bool // the local disk failed: reads go to the peer
	// prEpoch counts the times this node became primary: the LU reloads
	// the persistent reservation state the peer handed over when it moves
	// (scsi.PRStore). It moves before primary is set.
	prEpoch atomic.Uint64
	// discardPiece is the most one discard op spans, aligned to it.
	discardPiece int64
	metaq        chan metaJob
	work         chan LocalIO
	wg           sync.WaitGroup
	cancel       context.CancelFunc
	closed       atomic.Bool
	stop         chan struct{}
}

type metaJob struct {
	marker chan struct{}
	sb     *meta.Superblock
	tx     *meta.Transaction
	bm     bool
}

// request is one application write or flush waiting in WriteAt or Flush.
// Requests are pooled: one is reused once it has completed and the
// transport has released every message that referenced it.
type request struct {
	id    ReqID
	issue chan struct{}
	done  chan error
	rel   chan struct{}
	sent  atomic.Int32 // messages sent that reference the request's data
	// release is the Done of each of those messages.
	release func(error)
}

// Open opens (or creates, the first time) the resource's metadata and
// returns its Node, secondary and not yet connecting. Call Run to start it.
func Open(opts Options) (*Node, error) {
	if opts.Pool == nil {
		opts.Pool = blockdev.NewPool()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ALExtents == 0 {
		opts.ALExtents = meta.DefaultALExtents
	}
	metaDev, placement := opts.Data, meta.Internal
	if opts.Meta != nil {
		metaDev, placement = opts.Meta, meta.External
	}
	store, err := meta.Open(metaDev, placement)
	if errors.Is(err, meta.ErrNoMetadata) {
		var l meta.Layout
		if placement == meta.Internal {
			l, err = meta.PlanInternal(opts.Data.Size(), opts.ALExtents)
		} else {
			l, err = meta.PlanExternal(opts.Data.Size()/meta.BlockSize*meta.BlockSize, metaDev.Size(), opts.ALExtents)
		}
		if err != nil {
			return nil, fmt.Errorf("replication %s: plan metadata: %w", opts.Name, err)
		}
		opts.Logger.Info("creating replication metadata (new resource: Inconsistent until its first sync)",
			"placement", placement, "data_size", l.DataSize, "meta_size", l.MetaSize, "al_extents", l.ALExtents)
		store, err = meta.Create(metaDev, l, meta.Superblock{}, false)
	}
	if err != nil {
		return nil, fmt.Errorf("replication %s: metadata: %w", opts.Name, err)
	}
	if placement == meta.External && store.Layout().DataSize > opts.Data.Size() {
		return nil, fmt.Errorf("replication %s: the metadata describes %d bytes of data but the device has %d", opts.Name, store.Layout().DataSize, opts.Data.Size())
	}
	ld, err := store.Load()
	if err != nil {
		return nil, fmt.Errorf("replication %s: load metadata: %w", opts.Name, err)
	}
	if len(ld.Recovered) > 0 || len(ld.TornPages) > 0 {
		opts.Logger.Warn("crash recovery: activity-log extents marked out of sync", "extents", len(ld.Recovered), "torn_bitmap_pages", len(ld.TornPages))
	}
	n := &Node{opts: opts, log: opts.Logger, data: opts.Data, store: store, size: store.Layout().DataSize,
		pool: opts.Pool, start: time.Now(), metaq: make(chan metaJob, 1024), work: make(chan LocalIO, 4096), stop: make(chan struct{})}
	n.fua, _ = opts.Data.(blockdev.FUAWriter)
	n.async, _ = opts.Data.(blockdev.AsyncWriter)
	n.disc, _ = opts.Data.(blockdev.Discarder)
	// A discard goes in pieces that each span at most a quarter of the
	// activity log (at least one extent, at most 16): a range over more
	// extents than the log holds cannot be logged.
	n.discardPiece = int64(min(16, max(1, store.Layout().ALExtents/4))) * meta.ExtentSize
	n.bufMu.m = map[*byte]*blockdev.Buf{}
	mc := opts.Machine
	mc.DataSize = n.size
	mc.RandUUID = randomUUID
	n.mu.m = NewMachine(mc, ld.Superblock, ld.Bitmap, ld.AL)
	n.mu.reqs = map[ReqID]*request{}
	n.mu.changed = make(chan struct{})
	lc := opts.Link
	lc.Alloc = n.alloc
	lc.Logger = opts.Logger
	n.link, err = transport.New(lc, (*handler)(n))
	if err != nil {
		return nil, fmt.Errorf("replication %s: %w", opts.Name, err)
	}
	return n, nil
}

func randomUUID() genid.UUID {
	var b [8]byte
	for {
		rand.Read(b[:])
		if u := binary.LittleEndian.Uint64(b[:]); u != 0 {
			return genid.UUID(u)
		}
	}
}

// Run starts the node's goroutines and serves until ctx ends. Before it
// returns, the node has shut down cleanly: see Close.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.metaLoop() }()
	for range 32 {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.worker() }()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				n.step(func(m *Machine) { m.Tick(now.Sub(n.start)) })
			}
		}
	}()
	n.step(func(m *Machine) { m.Connect(false) })
	err := n.link.Run(ctx)
	cancel()
	// Clean shutdown: idle activity-log extents leave the log and the
	// bitmap is flushed, so the next start resyncs nothing; the node is
	// no longer a primary that could have crashed.
	n.step(func(m *Machine) { m.Shutdown() })
	for {
		marker := make(chan struct{})
		n.metaq <- metaJob{marker: marker}
		<-marker
		n.mu.Lock()
		idle := n.mu.m.MetaIdle()
		n.mu.Unlock()
		if idle {
			break
		}
	}
	n.closed.Store(true)
	close(n.stop)
	n.wg.Wait()
	return err
}

// step runs f on the machine under mu and carries out the resulting
// actions.
func (n *Node) step(f func(m *Machine)) {
	n.mu.Lock()
	n.stepLocked(f)
}

// stepLocked is step with mu held; it releases mu.
func (n *Node) stepLocked(f func(m *Machine)) {
	f(n.mu.m)
	rd := n.mu.m.Ready()
	sess := n.mu.sess
	type completion struct {
		r   *request
		err error
	}
	var issue []*request
	var done []completion
	for _, id := range rd.Issue {
		if r := n.mu.reqs[id]; r != nil {
			issue = append(issue, r)
		}
	}
	var rels []*request
	for _, o := range rd.Sends {
		if o.Req != 0 && !o.Copy {
			r := n.mu.reqs[o.Req]
			if r != nil {
				r.sent.Add(1)
			}
			rels = append(rels, r)
		}
	}
	for _, c := range rd.Complete {
		if r := n.mu.reqs[c.ID]; r != nil {
			delete(n.mu.reqs, c.ID)
			done = append(done, completion{r, c.Err})
		}
	}
	if rd.PRAdopted {
		n.prEpoch.Add(1) // the LU loads the adopted state
	}
	var changed chan struct{}
	if rd.StateChanged {
		changed = n.mu.changed
		n.mu.changed = make(chan struct{})
		isPrimary := n.mu.m.Role() == Primary && !n.mu.m.demoting
		if isPrimary && !n.primary.Load() {
			n.prEpoch.Add(1)
		}
		n.primary.Store(isPrimary)
		n.detached.Store(n.mu.m.Disk() == DiskFailed)
	}
	dataLocked := false
	for _, o := range rd.Sends {
		if o.Msg.Type.onData() {
			n.dataMu.Lock()
			dataLocked = true
			break
		}
	}
	n.mu.Unlock()

	// Sends first, in order.
	ri := 0
	for _, o := range rd.Sends {
		var r *request
		if o.Req != 0 && !o.Copy {
			r = rels[ri]
			ri++
		}
		n.send(sess, o, r)
	}
	if dataLocked {
		n.dataMu.Unlock()
	}
	if rd.CloseSession != nil && sess != nil {
		n.log.Warn("closing the replication session", "err", rd.CloseSession)
		sess.Close(rd.CloseSession)
	}
	if (rd.PersistSB != nil || rd.CommitAL != nil || rd.FlushBitmap) && !n.closed.Load() {
		n.metaq <- metaJob{sb: rd.PersistSB, tx: rd.CommitAL, bm: rd.FlushBitmap}
	}
	for _, io := range rd.Local {
		if io.Kind == IOWrite && n.startAsync(io) {
			continue
		}
		select {
		case n.work <- io:
		default:
			// Never wait here: this may be a device's completion
			// callback (see startAsync), which the workers' I/O needs.
			go func() {
				select {
				case n.work <- io:
				case <-n.stop:
				}
			}()
		}
	}
	for _, r := range issue {
		r.issue <- struct{}{}
	}
	// Once done, a request may be reused at once: nothing here reads it
	// after its completion is sent.
	for _, c := range done {
		c.r.done <- c.err
	}
	for _, b := range rd.Free {
		n.free(b)
	}
	if changed != nil {
		close(changed)
		if n.opts.OnChange != nil {
			n.opts.OnChange()
		}
	}
}

// send hands one message to the session (or drops it when there is none).
func (n *Node) send(sess *transport.Session, o Out, r *request) {
	var metaBuf [metaState]byte
	meta := o.Msg.encode(metaBuf[:0])
	msg := transport.Msg{Type: uint8(o.Msg.Type), Meta: meta, Data: o.Data}
	switch {
	case r != nil:
		msg.Done = r.release
	case o.Copy && len(o.Data) > 0:
		b := n.pool.Get(len(o.Data))
		copy(b.B, o.Data)
		msg.Data = b.B
		msg.Done = func(error) { n.pool.Put(b) }
	case len(o.Data) > 0:
		d := o.Data
		msg.Done = func(error) { n.free(d) }
	}
	if sess == nil {
		if msg.Done != nil {
			msg.Done(transport.ErrSessionLost)
		}
		return
	}
	ch := transport.Control
	if o.Msg.Type.onData() {
		ch = transport.Data
	}
	sess.Send(context.Background(), ch, msg)
}

// alloc gives the transport aligned buffers for received data.
func (n *Node) alloc(size int) []byte {
	if size == 0 {
		return nil
	}
	b := n.pool.Get(size)
	n.bufMu.Lock()
	n.bufMu.m[unsafe.SliceData(b.B)] = b
	n.bufMu.Unlock()
	return b.B
}

// free returns a buffer from alloc to the pool; other buffers are left to
// the garbage collector.
func (n *Node) free(p []byte) {
	if len(p) == 0 {
		return
	}
	n.bufMu.Lock()
	b := n.bufMu.m[unsafe.SliceData(p)]
	delete(n.bufMu.m, unsafe.SliceData(p))
	n.bufMu.Unlock()
	if b != nil {
		n.pool.Put(b)
	}
}

// metaLoop persists metadata in the order the machine asked for it.
func (n *Node) metaLoop() {
	for {
		var j metaJob
		select {
		case j = <-n.metaq:
		case <-n.stop:
			return
		}
		if j.marker != nil {
			close(j.marker)
			continue
		}
		if j.tx != nil {
			n.mu.Lock()
			err := n.store.CommitAL(j.tx, n.mu.m.bm)
			n.mu.Unlock()
			n.step(func(m *Machine) { m.ALDone(err) })
		}
		if j.bm {
			n.mu.Lock()
			err := n.store.FlushBitmap(n.mu.m.bm)
			n.mu.Unlock()
			n.step(func(m *Machine) { m.BitmapDone(err) })
		}
		if j.sb != nil {
			n.mu.Lock()
			err := n.store.WriteSuperblock(*j.sb)
			n.mu.Unlock()
			n.step(func(m *Machine) { m.SuperblockDone(err) })
		}
	}
}

// startAsync starts a peer's write on a device that can complete it
// without a waiting goroutine (blockdev.AsyncWriter), saving the hand-off
// to a worker and back; false: a worker does it. The completion runs on the
// device's reaper goroutine, which must never wait for a lock that a
// goroutine waiting for the device (metaLoop, during a metadata write)
// may hold, so when mu is busy the step goes to a goroutine of its own.
func (n *Node) startAsync(io LocalIO) bool {
	if n.async == nil || n.closed.Load() {
		return false
	}
	return n.async.WriteAtAsync(io.Data, io.Off, func(err error) {
		n.free(io.Data)
		if err != nil {
			n.log.Error("local disk I/O failed", "kind", io.Kind, "off", io.Off, "len", io.Len, "err", err)
		}
		done := func(m *Machine) { m.IODone(io.ID, err, nil, false, nil) }
		if n.mu.TryLock() {
			n.stepLocked(done)
			return
		}
		go n.step(done)
	})
}

// worker carries out the machine's local I/O.
func (n *Node) worker() {
	for {
		var io LocalIO
		select {
		case io = <-n.work:
		case <-n.stop:
			return
		}
		var err error
		var data, digest []byte
		zero := false
		switch io.Kind {
		case IOWrite:
			_, err = n.data.WriteAt(io.Data, io.Off)
			n.free(io.Data)
		case IOWriteFUA:
			if n.fua != nil {
				_, err = n.fua.WriteAtFUA(io.Data, io.Off)
			} else if _, err = n.data.WriteAt(io.Data, io.Off); err == nil {
				err = n.data.Flush()
			}
			n.free(io.Data)
		case IOZero:
			err = n.zero(io.Off, io.Len)
		case IOFlush:
			err = n.data.Flush()
		case IOBlockDigests:
			buf := n.pool.Get(int(io.Len))
			_, err = n.data.ReadAt(buf.B, io.Off)
			digest = make([]byte, 0, io.Len/4096*8)
			for p := buf.B; len(p) >= 4096; p = p[4096:] {
				sum := sha256.Sum256(p[:4096])
				digest = append(digest, sum[:8]...)
			}
			n.pool.Put(buf)
		case IORead, IOReadDigest:
			data = n.alloc(int(io.Len))
			_, err = n.data.ReadAt(data, io.Off)
			if io.Kind == IOReadDigest {
				sum := sha256.Sum256(data)
				digest = sum[:]
			} else {
				zero = blockdev.IsZero(data)
			}
		}
		if err != nil {
			n.log.Error("local disk I/O failed", "kind", io.Kind, "off", io.Off, "len", io.Len, "err", err)
		}
		if io.Kind == IOBlockDigests {
			n.step(func(m *Machine) { m.IODone(io.ID, err, nil, false, digest) })
			continue
		}
		n.step(func(m *Machine) { m.IODone(io.ID, err, data, zero, digest) })
		if io.Kind == IOReadDigest {
			n.free(data)
		}
	}
}

// zero makes [off, off+n) read as zeros: a discard if the device can,
// otherwise written zeros.
func (n *Node) zero(off, size int64) error {
	if n.disc != nil {
		if err := n.disc.Discard(off, size); err == nil {
			return nil
		}
	}
	const chunk = 1 << 20
	b := n.pool.Get(int(min(size, chunk)))
	defer n.pool.Put(b)
	clear(b.B)
	for size > 0 {
		k := min(size, int64(len(b.B)))
		if _, err := n.data.WriteAt(b.B[:k], off); err != nil {
			return err
		}
		off += k
		size -= k
	}
	return nil
}

// handler adapts Node to transport.Handler.
type handler Node

func (h *handler) Up(s *transport.Session) {
	n := (*Node)(h)
	n.log.Info("replication session up", "session", s.ID())
	n.step(func(m *Machine) {
		n.mu.sess = s
		m.PeerUp(s.ID())
	})
}

func (h *handler) Deliver(s *transport.Session, _ transport.Channel, typ uint8, metaB, data []byte) {
	n := (*Node)(h)
	msg, err := decodeMsg(MsgType(typ), metaB)
	if err != nil {
		n.free(data)
		n.log.Warn("malformed message from the peer: closing the session", "err", err)
		s.Close(err)
		return
	}
	kept := false
	n.step(func(m *Machine) {
		if n.mu.sess != s {
			return
		}
		kept = m.Receive(msg, data)
	})
	if !kept {
		n.free(data)
	}
}

func (h *handler) Down(s *transport.Session, err error) {
	n := (*Node)(h)
	n.log.Info("replication session down", "session", s.ID(), "err", err)
	n.step(func(m *Machine) {
		if n.mu.sess == s {
			n.mu.sess = nil
		}
		m.PeerDown(s.ID(), err)
	})
}
