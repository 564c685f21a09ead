package target

import (
	"net"

	"hastor/target/pdu"
)

// outKind says what an outItem asks the writer to send.
type outKind uint8

const (
	outCtrl outKind = iota // a prepared control PDU
	outTask                // a task's Data-In PDUs and status
	outR2T                 // one R2T of a task
)

// outItem is a unit of work for the writer. It travels by value through
// the channel so that the data path does not allocate.
type outItem struct {
	kind outKind
	ctrl *ctrlPDU
	t    *task
	r2t  r2tParams
}

// r2tParams describe one R2T (RFC 7143 §11.8). They carry everything the
// writer needs, so the task itself may be aborted and released meanwhile.
type r2tParams struct {
	lun                          uint64
	itt, ttt, sn, offset, length uint32
}

// ctrlPDU is a fully built PDU off the data path: NOP-In, Text, Logout and
// Task Management responses, Rejects and Async Messages.
type ctrlPDU struct {
	hdr  pdu.Header
	data []byte
	// advance: the PDU takes a StatSN (a response); otherwise it carries
	// the next StatSN without consuming it (RFC 7143 §11.19).
	advance bool
	// credit: the PDU completes a non-immediate command, so MaxCmdSN
	// advances before it is sent.
	credit bool
	// closeAfter: close the connection once the PDU is written.
	closeAfter bool
	// sent, when non-nil, is closed after the PDU was written.
	sent chan struct{}
}

// sendCtrl queues a control PDU. After the connection closed it is dropped.
func (c *conn) sendCtrl(p *ctrlPDU) {
	select {
	case c.out <- outItem{kind: outCtrl, ctrl: p}:
	case <-c.done:
		if p.sent != nil {
			close(p.sent)
		}
	}
}

// sendTask sends or queues a task's response. When this is the
// connection's only command in flight, nothing is queued and no batch is
// being written, the calling goroutine takes the writer's role itself and
// writes the response at once: at queue depth 1 that saves waking the
// writer goroutine (an OS thread on an idle machine) for every command.
// With more commands in flight the response is queued, so the writer
// batches several into one writev.
// After the connection closed the task is released here.
func (c *conn) sendTask(t *task) {
	select {
	case <-c.done:
		c.releaseTask(t)
		return
	default:
	}
	if c.live.Load() == 1 && len(c.out) == 0 && c.wmu.TryLock() {
		c.beginBatch()
		c.renderTask(t)
		c.flushBatch()
		c.wmu.Unlock()
		return
	}
	select {
	case c.out <- outItem{kind: outTask, t: t}:
	case <-c.done:
		c.releaseTask(t)
	}
}

// sendR2T queues an R2T.
func (c *conn) sendR2T(r r2tParams) {
	select {
	case c.out <- outItem{kind: outR2T, r2t: r}:
	case <-c.done:
	}
}

// wstate is the writer's state. It is guarded by conn.wmu: the writer
// goroutine holds it for each batch, and an execution goroutine may hold it
// to write its own response directly (sendTask).
type wstate struct {
	failed  bool // a write failed; the connection is closing
	statSN  uint32
	bufs    net.Buffers
	backing [][]byte
	arena   []byte // headers, digests and sense for one batch
	after   []func()
	release []*task // tasks whose buffers the batch references
	close   bool
}

const maxBatch = 64

// writer sends queued PDUs, batching whatever is queued into one writev.
func (c *conn) writer() {
	defer c.writerWG.Done()
	for {
		var it outItem
		select {
		case it = <-c.out:
		case <-c.done:
			c.drainOut()
			return
		}
		c.wmu.Lock()
		c.beginBatch()
		c.render(it)
		w := &c.w
		for n := 1; n < maxBatch && len(w.arena) < cap(w.arena)-4096; n++ {
			select {
			case it = <-c.out:
				c.render(it)
				continue
			default:
			}
			break
		}
		c.flushBatch()
		c.wmu.Unlock()
	}
}

// beginBatch starts a batch of PDUs; the caller holds wmu.
func (c *conn) beginBatch() {
	w := &c.w
	if w.backing == nil {
		w.backing = make([][]byte, 0, 4*maxBatch)
		w.arena = make([]byte, 0, 64<<10)
	}
	w.bufs = w.backing[:0]
	w.arena = w.arena[:0]
	w.after = w.after[:0]
	w.release = w.release[:0]
}

// flushBatch sends the batch with one writev and then releases what it
// referenced; the caller holds wmu. After a failed write the connection
// is closed and later batches are only released.
func (c *conn) flushBatch() {
	w := &c.w
	full := w.bufs
	if !w.failed && len(w.bufs) > 0 {
		if _, err := w.bufs.WriteTo(c.nc); err != nil {
			w.failed = true
			c.close(err)
		}
	}
	clear(full)
	w.backing = full[:0]
	for _, f := range w.after {
		f()
	}
	for i, t := range w.release {
		c.releaseTask(t)
		w.release[i] = nil
	}
	if w.close {
		c.close(errLogout)
	}
}

// drainOut releases whatever is queued after the connection closed, until
// finish says no task is left (c.quit), so no task is stranded in c.out.
func (c *conn) drainOut() {
	for {
		select {
		case it := <-c.out:
			c.dropItem(it)
		case <-c.quit:
			for {
				select {
				case it := <-c.out:
					c.dropItem(it)
				default:
					return
				}
			}
		}
	}
}

func (c *conn) dropItem(it outItem) {
	switch it.kind {
	case outTask:
		c.releaseTask(it.t)
	case outCtrl:
		if it.ctrl.sent != nil {
			close(it.ctrl.sent)
		}
	}
}

// header reserves room for one BHS (plus header digest) in the arena and
// returns it. The arena never reallocates within a batch because each
// render reserves at most a bounded amount and the batch loop stops early.
func (w *wstate) header() *pdu.Header {
	n := len(w.arena)
	if cap(w.arena)-n < pdu.BHSLen+pdu.DigestLen {
		// Start a fresh arena; slices already in bufs keep the old one
		// alive until the write completes.
		w.arena = make([]byte, 0, cap(w.arena))
		n = 0
	}
	w.arena = w.arena[:n+pdu.BHSLen]
	return (*pdu.Header)(w.arena[n : n+pdu.BHSLen])
}

// emit appends a finished header (with its digest when enabled) and data
// (with padding and digest) to the batch.
func (c *conn) emit(h *pdu.Header, data ...[]byte) {
	w := &c.w
	hb := h[:]
	if c.params.HeaderDigest {
		n := len(w.arena)
		w.arena = w.arena[:n+pdu.DigestLen]
		pdu.PutDigest(w.arena[n:], pdu.CRC32C(0, hb))
		hb = w.arena[n-pdu.BHSLen : n+pdu.DigestLen]
	}
	w.bufs = append(w.bufs, hb)
	total := 0
	var crc uint32
	for _, d := range data {
		if len(d) == 0 {
			continue
		}
		w.bufs = append(w.bufs, d)
		total += len(d)
		if c.params.DataDigest {
			crc = pdu.CRC32C(crc, d)
		}
	}
	if total == 0 {
		return
	}
	if pad := pdu.Pad(total); pad > 0 {
		w.bufs = append(w.bufs, pdu.Padding(pad))
		if c.params.DataDigest {
			crc = pdu.CRC32C(crc, pdu.Padding(pad))
		}
	}
	if c.params.DataDigest {
		b := w.small(pdu.DigestLen)
		pdu.PutDigest(b, crc)
		w.bufs = append(w.bufs, b)
	}
}

// small reserves n bytes of the arena.
func (w *wstate) small(n int) []byte {
	l := len(w.arena)
	if cap(w.arena)-l < n {
		w.arena = make([]byte, 0, max(cap(w.arena), n))
		l = 0
	}
	w.arena = w.arena[:l+n]
	return w.arena[l : l+n : l+n]
}

// nextSN returns the StatSN/ExpCmdSN/MaxCmdSN for a PDU and advances
// StatSN when the PDU consumes one.
func (c *conn) nextSN(advance bool) (stat, exp, max uint32) {
	stat = c.w.statSN
	if advance {
		c.w.statSN++
	}
	exp, max = c.sess.cmdSNs()
	return
}

func (c *conn) render(it outItem) {
	switch it.kind {
	case outCtrl:
		c.renderCtrl(it.ctrl)
	case outTask:
		c.renderTask(it.t)
	case outR2T:
		c.renderR2T(it.r2t)
	}
}

func (c *conn) renderCtrl(p *ctrlPDU) {
	if p.credit {
		c.sess.credit()
	}
	h := c.w.header()
	*h = p.hdr
	stat, exp, max := c.nextSN(p.advance)
	h.SetSN(stat, exp, max)
	c.emit(h, p.data)
	if p.sent != nil {
		c.w.after = append(c.w.after, func() { close(p.sent) })
	}
	if p.closeAfter {
		c.w.close = true
	}
}
