package target

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"hastor/blockdev"
	"hastor/target/pdu"
	"hastor/target/scsi"
)

// taskState is where a task is in its life; it changes under session.mu.
type taskState uint8

const (
	taskReceiving  taskState = iota // waiting for Data-Out; the reader owns it
	taskExecuting                   // in the SCSI layer
	taskResponding                  // queued for or being sent by the writer
)

// task is one SCSI command in flight.
type task struct {
	c         *conn
	itt       uint32
	lunField  uint64 // the LUN field as the initiator sent it
	immediate bool
	lu        *scsi.LU
	cmd       scsi.Command
	edtl      uint32
	buf       *blockdev.Buf

	// Data-Out reception (reader-owned).
	want      uint32 // bytes the initiator will send
	received  uint32 // contiguous bytes received so far
	unsolEnd  uint32 // end of the unsolicited window
	unsolDone bool
	sink      bool   // the data will not be used: receive and discard it
	dataErr   bool   // a Data-Out broke the DataSN sequence: fail the command
	dataSN    uint32 // next expected DataSN in the current sequence
	r2tNext   uint32 // offset of the next R2T to issue
	r2tSN     uint32
	r2tOut    int
	tttBase   uint32

	// Guarded by session.mu.
	state   taskState
	reading bool // the reader is filling buf right now

	cdbOp    byte // the CDB's operation code
	aborted  atomic.Bool
	credited bool   // MaxCmdSN already advanced for this task (writer)
	answered bool   // its response was rendered; no longer counted in conn.live
	gen      uint32 // bumped on reuse (session.mu)
	resp     scsi.Response
}

// lunNumber decodes the LUN field (SAM-5 §4.7): peripheral (00b) and flat
// (01b) single-level addressing. Anything else maps to an absent LUN.
func lunNumber(field uint64) uint64 {
	b0 := byte(field >> 56)
	b1 := byte(field >> 48)
	if field&0x0000ffffffffffff != 0 {
		return 1<<64 - 1
	}
	switch b0 >> 6 {
	case 0:
		if b0 != 0 {
			return 1<<64 - 1 // bus identifier not supported
		}
		return uint64(b1)
	case 1:
		return uint64(b0&0x3f)<<8 | uint64(b1)
	}
	return 1<<64 - 1
}

// handleSCSICommand starts a SCSI command (RFC 7143 §11.3).
func (c *conn) handleSCSICommand() error {
	h := &c.hdr
	dsl := h.DataSegmentLength()
	if c.sess.discovery {
		return c.rejectAndDrain(pdu.RejectProtocolError)
	}
	if dsl > c.params.RecvDataSegmentLength {
		return fmt.Errorf("%w: immediate data of %d bytes exceeds MaxRecvDataSegmentLength", errProtocol, dsl)
	}
	immediate := h.Immediate()
	if !immediate && !c.sess.acceptCmdSN(h.CmdSN()) {
		c.log.Debug("command outside CmdSN window dropped", "cmdsn", h.CmdSN())
		return c.discardData(dsl)
	}
	flags := h.Flags()
	edtl := h.ExpectedDataTransferLength()
	write := flags&pdu.FlagWrite != 0
	if dsl > 0 && (!write || uint32(dsl) > edtl || !c.params.ImmediateData || dsl > c.params.FirstBurstLength) {
		c.log.Debug("bad immediate data", "dsl", dsl, "write", write, "edtl", edtl, "immediate_data", c.params.ImmediateData, "first_burst", c.params.FirstBurstLength)
		c.uncount(h)
		return c.rejectAndDrain(pdu.RejectProtocolError)
	}
	itt := h.ITT()
	sess := c.sess
	if immediate && sess.immediate.Add(1) > int32(sess.depth) {
		sess.immediate.Add(-1)
		return c.rejectAndDrain(pdu.RejectImmediateCmd)
	}
	sess.mu.Lock()
	if _, busy := sess.mu.tasks[itt]; busy {
		sess.mu.Unlock()
		if immediate {
			sess.immediate.Add(-1)
		} else {
			sess.credit()
		}
		return c.rejectAndDrain(pdu.RejectTaskInProgress)
	}
	t := sess.newTaskLocked()
	sess.mu.tasks[itt] = t
	t.state = taskReceiving
	t.reading = true // until this PDU is fully handled
	// Task management matches tasks by these, under sess.mu.
	t.lunField = h.LUN()
	t.cdbOp = h.CDB()[0]
	sess.mu.Unlock()
	c.execWG.Add(1)
	c.live.Add(1)

	t.c = c
	t.itt = itt
	t.immediate = immediate
	t.edtl = edtl
	t.lu = sess.tgt.SCSI.LU(lunNumber(t.lunField))
	t.cmd = t.lu.Decode(h.CDB())
	t.cmd.CheckTransferLength(edtl)
	err := c.startCommand(t, write, dsl)
	if errors.Is(err, errReaderMoved) {
		// Another goroutine reads now, and may already reuse t.
		return err
	}
	c.doneReading(t)
	return err
}

// doneReading ends the reader's hold on t; an abort that arrived meanwhile
// is completed here. t may have been executed and released already (by an
// execution goroutine, or inline): it is then a zeroed task in the free
// list, which only the reader reuses, so this is a no-op.
func (c *conn) doneReading(t *task) {
	sess := c.sess
	sess.mu.Lock()
	t.reading = false
	release := t.aborted.Load() && t.state == taskReceiving
	if release {
		delete(sess.mu.tasks, t.itt)
	}
	sess.mu.Unlock()
	if release {
		c.releaseTask(t)
	}
}

// startCommand receives immediate data and starts data transfer or
// execution.
func (c *conn) startCommand(t *task, write bool, dsl int) error {
	h := &c.hdr
	edtl := t.edtl
	flags := h.Flags()

	if !write || edtl == 0 {
		// No data-out: size the data-in buffer and run the command.
		if t.cmd.Dir == scsi.DirRead {
			if n := min(edtl, t.cmd.DataLen); n > 0 && int(n) <= c.srv.opts.MaxTransferBytes {
				t.buf = c.srv.opts.Pool.Get(int(n))
			}
		}
		return c.startExec(t)
	}

	// Data-out: immediate data, unsolicited Data-Out, then R2Ts.
	t.want = edtl
	if t.cmd.Dir != scsi.DirWrite || int(edtl) > c.srv.opts.MaxTransferBytes {
		t.sink = true
	} else {
		t.buf = c.srv.opts.Pool.Get(int(edtl))
	}
	if dsl > 0 {
		var err error
		if t.sink {
			err = c.discardData(dsl)
		} else {
			err = c.readData(t.buf.B[:dsl])
		}
		if err != nil {
			return err
		}
		t.received = uint32(dsl)
	}
	t.unsolEnd = t.received
	if !c.params.InitialR2T {
		t.unsolEnd = max(t.received, min(uint32(c.params.FirstBurstLength), edtl))
	}
	if flags&pdu.FlagFinal != 0 || t.received >= t.unsolEnd {
		t.unsolDone = true
		t.unsolEnd = t.received
	}
	if t.aborted.Load() {
		return nil
	}
	return c.advanceWrite(t)
}

// advanceWrite issues R2Ts or starts execution once all data is in.
func (c *conn) advanceWrite(t *task) error {
	if t.received >= t.want {
		return c.startExec(t)
	}
	if !t.unsolDone {
		return nil
	}
	if t.sink {
		// Do not solicit data the command will not use; fail it now.
		return c.startExec(t)
	}
	if t.r2tNext < t.unsolEnd {
		t.r2tNext = t.unsolEnd
		mbl := uint32(c.params.MaxBurstLength)
		chunks := (t.want - t.unsolEnd + mbl - 1) / mbl
		t.tttBase = c.allocTTTRange(chunks)
	}
	for t.r2tOut < c.params.MaxOutstandingR2T && t.r2tNext < t.want {
		mbl := uint32(c.params.MaxBurstLength)
		n := min(mbl, t.want-t.r2tNext)
		idx := (t.r2tNext - t.unsolEnd) / mbl
		c.sendR2T(r2tParams{lun: t.lunField, itt: t.itt, ttt: t.tttBase + idx, sn: t.r2tSN, offset: t.r2tNext, length: n})
		t.r2tSN++
		t.r2tNext += n
		t.r2tOut++
	}
	return nil
}

// allocTTTRange reserves n consecutive Target Transfer Tags.
func (c *conn) allocTTTRange(n uint32) uint32 {
	for {
		end := c.nextTTT.Add(n)
		start := end - n + 1
		if start != 0 && end >= start && end != pdu.ReservedTag {
			return start
		}
	}
}

// handleDataOut places solicited or unsolicited data (RFC 7143 §11.7).
func (c *conn) handleDataOut() error {
	h := &c.hdr
	dsl := h.DataSegmentLength()
	if dsl > c.params.RecvDataSegmentLength {
		return fmt.Errorf("%w: Data-Out of %d bytes exceeds MaxRecvDataSegmentLength", errProtocol, dsl)
	}
	sess := c.sess
	sess.mu.Lock()
	t := sess.mu.tasks[h.ITT()]
	if t == nil || t.c != c || t.state != taskReceiving || t.aborted.Load() {
		sess.mu.Unlock()
		// Data for a task that finished, failed or was aborted is
		// discarded (RFC 7143 §4.2.3.3 for aborted tasks).
		return c.discardData(dsl)
	}
	t.reading = true
	sess.mu.Unlock()

	off, ttt, sn := h.BufferOffset(), h.TTT(), h.DataSN()
	end := off + uint32(dsl)
	var limit uint32
	if ttt == pdu.ReservedTag {
		limit = t.unsolEnd
		if t.unsolDone {
			limit = 0
		}
	} else if off >= t.unsolEnd && t.unsolDone {
		mbl := uint32(c.params.MaxBurstLength)
		idx := (off - t.unsolEnd) / mbl
		if ttt != t.tttBase+idx || off >= t.r2tNext {
			limit = 0
		} else {
			limit = min(t.unsolEnd+(idx+1)*mbl, t.want)
		}
	}
	err := c.placeDataOut(t, ttt, off, end, limit, sn)
	if errors.Is(err, errReaderMoved) {
		return err
	}
	c.doneReading(t)
	return err
}

func (c *conn) placeDataOut(t *task, ttt, off, end, limit, sn uint32) error {
	h := &c.hdr
	dsl := int(end - off)
	if sn != t.dataSN && off == t.received && end <= limit && end >= off {
		// A DataSN out of sequence (RFC 7143 §11.7.5): at ERL 0 the data
		// cannot be recovered. Discard the rest of the sequence and fail
		// the command, so nothing of it reaches the medium.
		if !t.dataErr {
			c.log.Warn("Data-Out DataSN out of sequence; failing the command", "itt", t.itt, "datasn", sn, "want", t.dataSN)
		}
		t.dataErr = true
		t.sink = true
	}
	if off != t.received || end > limit || end < off || (sn != t.dataSN && !t.dataErr) {
		return fmt.Errorf("%w: Data-Out for ITT %#x: offset %d (want %d), length %d, DataSN %d (want %d), TTT %#x",
			errProtocol, t.itt, off, t.received, dsl, sn, t.dataSN, ttt)
	}
	var err error
	if t.sink {
		err = c.discardData(dsl)
	} else {
		err = c.readData(t.buf.B[off:end])
	}
	if err != nil {
		return err
	}
	if t.aborted.Load() {
		return nil
	}
	t.received = end
	t.dataSN++
	if t.dataErr && (h.Final() || end == limit) {
		// The failed sequence is complete: answer now and solicit
		// nothing more. Later Data-Out for this ITT is discarded.
		return c.startExec(t)
	}
	if ttt == pdu.ReservedTag {
		if h.Final() || end == t.unsolEnd {
			t.unsolDone = true
			t.unsolEnd = end
			t.dataSN = 0
		}
	} else if end == limit {
		t.r2tOut--
		t.dataSN = 0
	}
	return c.advanceWrite(t)
}

// startExec runs t. When t is the connection's only command in flight and
// nothing more has arrived, the reader runs it itself: handing it to an
// execution goroutine would wake an OS thread for every command at queue
// depth 1, the costliest step of a small I/O. Otherwise t goes to the
// connection's pool of execution goroutines, grown on demand up to the
// command window, so that every command in flight runs concurrently and
// steady state starts no goroutine (a go statement allocates).
//
// It returns errReaderMoved when the reader role moved to another
// goroutine during inline execution (see readRole).
func (c *conn) startExec(t *task) error {
	sess := c.sess
	sess.mu.Lock()
	t.state = taskExecuting
	sess.mu.Unlock()
	if c.live.Load() == 1 && c.br.Buffered() == 0 {
		return c.execInline(t)
	}
	if c.idleWorkers.Load() == 0 && c.workers < cap(c.execq) {
		c.workers++
		c.writerWG.Add(1)
		go c.worker()
	}
	c.execq <- t
	return nil
}

// inlineBudget bounds how long a command run by the reader may take before
// the reader role moves to a new goroutine (between one and two budgets),
// so that task management, NOP-Out and new commands are read while the
// command waits on a slow device. A 4 KiB I/O on an SSD takes a small
// fraction of it.
const inlineBudget = time.Millisecond

// readerMoved is the value of conn.inline once the reader role has moved.
const readerMoved = ^uint64(0)

// errReaderMoved: the reader role moved to another goroutine while this
// one ran a command inline.
var errReaderMoved = errors.New("reader role moved to another goroutine")

// execInline runs t on the reader goroutine. It costs two atomic stores
// per command: the watchdog timer is not reset per command (resetting a
// timer can interrupt the network poller, a system call), it ticks while
// inline execution goes on.
func (c *conn) execInline(t *task) error {
	c.inlineSeq++
	tok := c.inlineSeq
	c.inline.Store(tok)
	if c.inlineArmed.CompareAndSwap(false, true) {
		c.inlineTimer.Reset(inlineBudget)
	}
	c.exec(t)
	if !c.inline.CompareAndSwap(tok, 0) {
		return errReaderMoved
	}
	return nil
}

// inlineTick runs every inlineBudget while the reader runs commands
// inline. A command it finds running on two ticks in a row has outlasted
// the budget: a new goroutine takes over the reader role. A token
// compare-and-swap decides between it and the end of the command, so the
// role never has two holders. When no command is running, the ticks stop
// until execInline arms them again.
func (c *conn) inlineTick() {
	tok := c.inline.Load()
	if tok != 0 && tok != readerMoved && tok == c.inlineSeen.Load() {
		if c.inline.CompareAndSwap(tok, readerMoved) {
			go c.readRole()
		}
		tok = 0
	}
	c.inlineSeen.Store(tok)
	if tok == 0 || tok == readerMoved {
		c.inlineArmed.Store(false)
		// A command that started just now armed nothing: look again.
		if t := c.inline.Load(); t == 0 || t == readerMoved || !c.inlineArmed.CompareAndSwap(false, true) {
			return
		}
	}
	c.inlineTimer.Reset(inlineBudget)
}

// worker runs commands until the connection has no task left.
func (c *conn) worker() {
	defer c.writerWG.Done()
	for {
		c.idleWorkers.Add(1)
		select {
		case t := <-c.execq:
			c.idleWorkers.Add(-1)
			c.exec(t)
		case <-c.quit:
			return
		}
	}
}

// exec runs the SCSI command and queues the response.
func (c *conn) exec(t *task) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic while executing SCSI command; closing connection",
				"panic", r, "opcode", fmt.Sprintf("%#02x", t.cmd.Op), "stack", string(debug.Stack()))
			c.close(fmt.Errorf("%w: panic in command execution: %v", errProtocol, r))
			c.finishExec(t)
			c.releaseTask(t)
		}
	}()
	if t.dataErr {
		// ABORTED COMMAND, DATA PHASE ERROR (SPC-4 4Bh/00h).
		t.resp = scsi.CheckCondition(scsi.SenseAbortedCommand, 0x4b, 0x00)
		c.finishExec(t)
		c.sendTask(t)
		return
	}
	var data []byte
	if t.buf != nil {
		switch t.cmd.Dir {
		case scsi.DirRead:
			data = t.buf.B
		case scsi.DirWrite:
			data = t.buf.B[:min(t.received, t.cmd.DataLen)]
		}
	}
	t.resp = t.lu.Execute(c.ctx, c.sess.nexus, &t.cmd, data)
	if len(t.resp.Abort) > 0 {
		c.abortPreempted(t)
	}
	c.finishExec(t)
	c.sendTask(t)
}

// abortPreempted aborts, for PREEMPT AND ABORT (scsi.Response.Abort), the
// commands of the preempted I_T nexuses for t's LUN and waits until none
// of them runs, before t's status is sent. Aborted commands end without a
// response (TAS=0). PERSISTENT RESERVE OUT commands are left to finish:
// they do not touch the medium, and two PREEMPT AND ABORTs that preempt
// each other's sessions would otherwise wait for each other forever.
func (c *conn) abortPreempted(t *task) {
	lun := lunNumber(t.lunField)
	for _, s := range c.srv.sessionsOf(c.sess.tgt) {
		if slices.Contains(t.resp.Abort, s.nexus) {
			s.abortMatching(func(x *task) bool {
				return x != t && x.cdbOp != opPROut && lunNumber(x.lunField) == lun
			})
		}
	}
	t.resp.Abort = nil
}

// opPROut is the operation code of PERSISTENT RESERVE OUT.
const opPROut = 0x5F

func (c *conn) finishExec(t *task) {
	sess := c.sess
	sess.mu.Lock()
	t.state = taskResponding
	sess.taskDone.Broadcast()
	sess.mu.Unlock()
}

// releaseTask returns a task and its buffer to their pools. It is called
// exactly once per task, by whoever owns it last.
func (c *conn) releaseTask(t *task) {
	sess := c.sess
	if t.immediate {
		sess.immediate.Add(-1)
	} else if !t.credited {
		sess.credit()
	}
	if t.buf != nil {
		c.srv.opts.Pool.Put(t.buf)
	}
	sess.mu.Lock()
	if sess.mu.tasks[t.itt] == t {
		delete(sess.mu.tasks, t.itt)
	}
	answered := t.answered
	sess.freeTaskLocked(t)
	sess.taskDone.Broadcast()
	sess.mu.Unlock()
	if !answered {
		c.live.Add(-1)
	}
	c.execWG.Done()
}

// renderTask builds the Data-In PDUs and status of a finished command.
func (c *conn) renderTask(t *task) {
	w := &c.w
	w.release = append(w.release, t)
	// The command is answered now: the initiator may send its next one as
	// soon as it reads this, before the task is released after the write.
	t.answered = true
	c.live.Add(-1)
	// Free the ITT before the response goes out: once the initiator has
	// the response it may reuse the tag at once (RFC 7143 §11.2.1.8). The
	// task's buffer stays with the writer until the write completes.
	sess := c.sess
	sess.mu.Lock()
	if sess.mu.tasks[t.itt] == t {
		delete(sess.mu.tasks, t.itt)
	}
	sess.mu.Unlock()
	if t.aborted.Load() {
		return
	}
	r := &t.resp
	if t.buf == nil || r.DataLen > len(t.buf.B) {
		// The SCSI layer never returns more than the buffer it was
		// given; keep it that way even if it had a bug.
		r.DataLen = 0
		if t.buf != nil {
			r.DataLen = len(t.buf.B)
		}
	}
	// Residuals (RFC 7143 §11.4.5): overflow when the command wanted more
	// than the initiator's expected length, underflow when less moved.
	var flags byte
	var resid uint32
	var moved uint32
	switch t.cmd.Dir {
	case scsi.DirRead:
		moved = uint32(r.DataLen)
	case scsi.DirWrite:
		moved = min(t.received, t.cmd.DataLen)
	}
	if t.cmd.DataLen > t.edtl {
		flags, resid = pdu.FlagOverflow, t.cmd.DataLen-t.edtl
	} else if moved < t.edtl {
		flags, resid = pdu.FlagUnderflow, t.edtl-moved
	}
	if !t.immediate {
		c.sess.credit()
		t.credited = true
	}
	dataSN := uint32(0)
	statusInData := r.SenseLen == 0 && r.Status == scsi.StatusGood
	if t.cmd.Dir == scsi.DirRead && r.DataLen > 0 {
		n := uint32(r.DataLen)
		seg := uint32(c.params.SendDataSegmentLength)
		burst := uint32(c.params.MaxBurstLength)
		var off, inBurst uint32
		for off < n {
			l := min(n-off, seg, burst-inBurst)
			last := off+l == n
			var fl byte
			if last || inBurst+l == burst {
				fl = pdu.FlagFinal
			}
			advance := false
			if last && statusInData {
				fl |= pdu.FlagStatus | flags
				advance = true
			}
			h := w.header()
			pdu.BuildDataIn(h, t.lunField, t.itt, fl, r.Status, dataSN, off, resid, int(l))
			stat, exp, maxSN := c.nextSN(advance)
			if !advance {
				stat = 0
			}
			h.SetSN(stat, exp, maxSN)
			c.emit(h, t.buf.B[off:off+l])
			dataSN++
			off += l
			inBurst += l
			if inBurst == burst {
				inBurst = 0
			}
		}
		if statusInData {
			return
		}
	}
	var sense []byte
	if r.SenseLen > 0 {
		sense = w.small(2 + r.SenseLen)
		sense[0], sense[1] = byte(r.SenseLen>>8), byte(r.SenseLen)
		copy(sense[2:], r.Sense[:r.SenseLen])
	}
	h := w.header()
	pdu.BuildSCSIResponse(h, t.itt, r.Status, flags, resid, len(sense))
	if t.cmd.Dir == scsi.DirRead {
		h.PutU32(36, dataSN)
	} else {
		h.PutU32(36, t.r2tSN)
	}
	stat, exp, maxSN := c.nextSN(true)
	h.SetSN(stat, exp, maxSN)
	c.emit(h, sense)
}

// renderR2T builds one R2T. The StatSN it carries is not consumed.
func (c *conn) renderR2T(r r2tParams) {
	h := c.w.header()
	pdu.BuildR2T(h, r.lun, r.itt, r.ttt, r.sn, r.offset, r.length)
	stat, exp, maxSN := c.nextSN(false)
	h.SetSN(stat, exp, maxSN)
	c.emit(h)
}
