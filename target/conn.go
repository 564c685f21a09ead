package target

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"hastor/target/login"
	"hastor/target/pdu"
)

// Errors that end a connection.
var (
	errProtocol   = errors.New("target: protocol error")
	errDigest     = errors.New("target: digest error")
	errNopTimeout = errors.New("target: initiator did not answer NOP-In")
	errLogout     = errors.New("target: logged out")
)

// conn is one TCP connection. The reader goroutine (serve) owns the fields
// marked "reader"; the writer goroutine owns those marked "writer".
type conn struct {
	srv *Server
	nc  net.Conn
	// log gains the session's attributes after login (reader goroutine,
	// before any other goroutine of the connection starts); baseLog is
	// fixed and safe for close, which any goroutine may call.
	log     *slog.Logger
	baseLog *slog.Logger
	remote  netip.AddrPort
	local   netip.AddrPort

	ctx    context.Context
	cancel context.CancelCauseFunc

	// Fixed once login completes.
	params login.Params
	sess   *session
	cid    uint16

	// reader
	br    *bufio.Reader
	hdr   pdu.Header
	ahs   [pdu.MaxAHSLen]byte
	scrap [8]byte
	ctrl  []byte // data segments of non-SCSI PDUs
	text  textState

	out      chan outItem // to the writer
	wmu      sync.Mutex   // held by whoever writes to nc: guards w and StatSN
	w        wstate
	lastRecv atomic.Int64 // unix nanoseconds of the last PDU received
	pingTTT  atomic.Uint32
	nextTTT  atomic.Uint32

	// execWG counts tasks of this connection that are not yet released;
	// live holds the same count for reading.
	execWG sync.WaitGroup
	live   atomic.Int32
	// execq feeds the execution workers; workers is owned by the reader.
	execq       chan *task
	workers     int
	idleWorkers atomic.Int32

	// Inline execution (startExec): the reader runs a command itself when
	// it is the only one in flight. inline holds the token of the command
	// being run that way (0: none; readerMoved: the role was handed off);
	// inlineSeq, owned by the reader, numbers the tokens. inlineTimer
	// ticks every inlineBudget while inline execution goes on (inlineArmed)
	// and hands the reader role to a new goroutine when it sees the same
	// token twice (inlineSeen): a command that outlasted a whole tick.
	inline      atomic.Uint64
	inlineSeq   uint64
	inlineTimer *time.Timer
	inlineArmed atomic.Bool
	inlineSeen  atomic.Uint64
	stopCtx     func() bool // stops closing nc when ctx ends

	closeOnce sync.Once
	done      chan struct{} // closed when the connection closes
	quit      chan struct{} // closed when no task is left; the writer exits
	writerWG  sync.WaitGroup
	bgWG      sync.WaitGroup // task management and logout helpers
}

func newConn(ctx context.Context, s *Server, nc net.Conn) *conn {
	c := &conn{
		srv:  s,
		nc:   nc,
		br:   bufio.NewReaderSize(nc, 16<<10),
		done: make(chan struct{}),
		quit: make(chan struct{}),
	}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = ta.AddrPort()
	}
	if ta, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		c.local = ta.AddrPort()
	}
	c.log = s.log.With("remote", c.remote.String())
	c.baseLog = c.log
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	return c
}

// serve runs the connection: login, then the full feature phase.
func (c *conn) serve() {
	c.stopCtx = context.AfterFunc(c.ctx, func() { c.nc.Close() })
	if !c.loginPhase() {
		c.stopCtx()
		c.finish()
		c.srv.removeConn(c)
		return
	}
	c.readRole()
}

// loginPhase runs the login and starts the full feature phase's
// goroutines. It reports whether the connection went to full feature
// phase; if not, it has closed the connection.
func (c *conn) loginPhase() (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic while logging in; closing the connection", "panic", r, "stack", string(debug.Stack()))
			c.close(fmt.Errorf("%w: panic: %v", errProtocol, r))
			ok = false
		}
	}()
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
		tc.SetKeepAlivePeriod(30 * time.Second)
	}
	c.nc.SetDeadline(time.Now().Add(c.srv.opts.LoginTimeout))
	sess, err := c.login()
	if err != nil {
		c.log.Info("login failed", "err", err)
		c.close(err)
		return false
	}
	c.nc.SetDeadline(time.Time{})
	c.sess = sess
	c.log = c.log.With("initiator", sess.initiator, "tsih", sess.tsih)
	c.out = make(chan outItem, 2*c.srv.opts.QueueDepth+16)
	// Window plus as many immediate commands: everything that can be in
	// flight at once.
	c.execq = make(chan *task, 2*c.srv.opts.QueueDepth)
	c.inlineTimer = time.AfterFunc(time.Hour, c.inlineTick)
	c.inlineTimer.Stop()
	c.writerWG.Add(1)
	go c.writer()
	if c.srv.opts.NopInInterval > 0 {
		c.writerWG.Add(1)
		go c.pinger()
	}
	c.log.Info("login complete", "target", sess.targetName(), "discovery", sess.discovery,
		"header_digest", c.params.HeaderDigest, "data_digest", c.params.DataDigest)
	return true
}

// readRole reads the connection's PDUs until it ends, then aborts its
// tasks, waits for them and releases it. Exactly one goroutine holds the
// reader role at a time. When a command run inline by the reader outlasts
// inlineBudget, inlineTick starts readRole on a new goroutine, and the
// old one returns from here as soon as its command is done, touching no
// reader state.
func (c *conn) readRole() {
	moved := false
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic while serving connection; closing it", "panic", r, "stack", string(debug.Stack()))
			c.close(fmt.Errorf("%w: panic: %v", errProtocol, r))
		}
		if moved {
			return
		}
		c.stopCtx()
		c.finish()
		c.srv.removeConn(c)
	}()
	err := c.readLoop()
	if errors.Is(err, errReaderMoved) {
		moved = true
		return
	}
	c.close(err)
}

// close ends the connection with cause err. It is safe to call many times
// from any goroutine.
func (c *conn) close(err error) {
	c.closeOnce.Do(func() {
		c.cancel(err)
		close(c.done)
		c.nc.Close()
		if err != nil && !errors.Is(err, errLogout) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.baseLog.Info("connection closed", "cause", err)
		}
	})
}

// finish runs on the reader goroutine after the connection closed: it aborts
// the connection's tasks, waits for them and ends the session (ERL 0).
func (c *conn) finish() {
	c.close(nil)
	sess := c.sess
	if sess == nil {
		return
	}
	sess.abortConnTasks(c)
	c.waitTasks()
	close(c.quit)
	c.writerWG.Wait()
	c.bgWG.Wait()
	sess.mu.Lock()
	last := sess.mu.conn == c
	if last {
		sess.mu.conn = nil
	}
	sess.mu.Unlock()
	if last {
		sess.end()
	}
}

func (c *conn) waitTasks() { c.execWG.Wait() }

// readLoop reads PDUs until the connection fails or logs out.
func (c *conn) readLoop() error {
	for {
		if err := c.readHeader(); err != nil {
			return err
		}
		c.lastRecv.Store(time.Now().UnixNano())
		var err error
		switch op := c.hdr.Opcode(); op {
		case pdu.OpSCSICmd:
			err = c.handleSCSICommand()
		case pdu.OpDataOut:
			err = c.handleDataOut()
		case pdu.OpNOPOut:
			err = c.handleNOPOut()
		case pdu.OpTaskReq:
			err = c.handleTaskRequest()
		case pdu.OpTextReq:
			err = c.handleTextRequest()
		case pdu.OpLogout:
			err = c.handleLogout()
		case pdu.OpLoginReq:
			// A Login Request in full feature phase is a protocol error
			// (RFC 7143 §6.3).
			err = c.rejectAndDrain(pdu.RejectProtocolError)
		case pdu.OpSNACK:
			// ERL 0: no SNACK support (RFC 7143 §7.1.5).
			err = c.rejectAndDrain(pdu.RejectNotSupported)
		default:
			err = c.rejectAndDrain(pdu.RejectNotSupported)
		}
		if err != nil {
			return err
		}
	}
}

// readHeader reads the BHS, any AHS and the header digest into c.hdr/c.ahs.
func (c *conn) readHeader() error {
	if _, err := io.ReadFull(c.br, c.hdr[:]); err != nil {
		return err
	}
	ahsLen := c.hdr.TotalAHSLength()
	if ahsLen > 0 && c.hdr.Opcode() != pdu.OpSCSICmd {
		// Only a SCSI Command may carry AHS (RFC 7143 §11.2.2).
		return fmt.Errorf("%w: %v with %d bytes of AHS", errProtocol, c.hdr.Opcode(), ahsLen)
	}
	if ahsLen > 0 {
		if _, err := io.ReadFull(c.br, c.ahs[:ahsLen]); err != nil {
			return err
		}
	}
	if c.params.HeaderDigest {
		if _, err := io.ReadFull(c.br, c.scrap[:4]); err != nil {
			return err
		}
		crc := pdu.CRC32C(0, c.hdr[:])
		crc = pdu.CRC32C(crc, c.ahs[:ahsLen])
		if pdu.Digest(c.scrap[:4]) != crc {
			// The header cannot be trusted, so neither can the framing:
			// close the connection (RFC 7143 §7.8).
			return fmt.Errorf("%w: header digest of %v", errDigest, c.hdr.Opcode())
		}
	}
	if n := c.hdr.DataSegmentLength(); n > c.params.RecvDataSegmentLength {
		// Framing beyond what was negotiated: the stream cannot be
		// trusted any further (RFC 7143 §13.12).
		return fmt.Errorf("%w: %v data segment of %d bytes exceeds MaxRecvDataSegmentLength %d",
			errProtocol, c.hdr.Opcode(), n, c.params.RecvDataSegmentLength)
	}
	return nil
}

// readData reads a data segment of len(dst) bytes plus padding and data
// digest into dst.
func (c *conn) readData(dst []byte) error {
	if _, err := io.ReadFull(c.br, dst); err != nil {
		return err
	}
	pad := pdu.Pad(len(dst))
	if pad > 0 {
		if _, err := io.ReadFull(c.br, c.scrap[:pad]); err != nil {
			return err
		}
	}
	if c.params.DataDigest && len(dst) > 0 {
		crc := pdu.CRC32C(pdu.CRC32C(0, dst), c.scrap[:pad])
		if _, err := io.ReadFull(c.br, c.scrap[4:8]); err != nil {
			return err
		}
		if pdu.Digest(c.scrap[4:8]) != crc {
			return errDigest
		}
	}
	return nil
}

// discardData skips a data segment of n bytes with its padding and digest.
func (c *conn) discardData(n int) error {
	total := n + pdu.Pad(n)
	if c.params.DataDigest && n > 0 {
		total += pdu.DigestLen
	}
	_, err := c.br.Discard(total)
	return err
}

// readCtrlData reads the data segment of a control PDU into c.ctrl, bounded
// by the target's MaxRecvDataSegmentLength. ok is false when the PDU was
// rejected for a data digest error and must be ignored.
func (c *conn) readCtrlData() (data []byte, ok bool, err error) {
	n := c.hdr.DataSegmentLength()
	if n > c.params.RecvDataSegmentLength {
		return nil, false, fmt.Errorf("%w: %v data segment of %d bytes exceeds MaxRecvDataSegmentLength %d",
			errProtocol, c.hdr.Opcode(), n, c.params.RecvDataSegmentLength)
	}
	if cap(c.ctrl) < n {
		c.ctrl = make([]byte, n)
	}
	buf := c.ctrl[:n]
	if err := c.readData(buf); err != nil {
		if errors.Is(err, errDigest) {
			// Payload digest error on a control PDU: reject it and keep
			// the connection (RFC 7143 §7.8.1 allows the discard).
			return nil, false, c.reject(pdu.RejectDataDigest)
		}
		return nil, false, err
	}
	return buf, true, nil
}

// acceptControl admits a control request (NOP-Out, Text) by its CmdSN and
// reads its data segment. ok is false when the request is to be ignored:
// outside the command window, or rejected for a data digest error.
func (c *conn) acceptControl(h *pdu.Header) (data []byte, ok bool, err error) {
	if !h.Immediate() && !c.sess.acceptCmdSN(h.CmdSN()) {
		return nil, false, c.discardData(h.DataSegmentLength())
	}
	data, ok, err = c.readCtrlData()
	if err == nil && !ok {
		c.uncount(h)
	}
	return data, ok, err
}

// uncount gives back the CmdSN a non-immediate request consumed when it is
// rejected instead of executed, so the window does not shrink.
func (c *conn) uncount(h *pdu.Header) {
	if !h.Immediate() {
		c.sess.credit()
	}
}

// rejectAndDrain discards the current PDU's data segment and rejects it.
func (c *conn) rejectAndDrain(reason byte) error {
	if err := c.discardData(c.hdr.DataSegmentLength()); err != nil {
		return err
	}
	return c.reject(reason)
}

// reject queues a Reject PDU carrying the current header.
func (c *conn) reject(reason byte) error {
	p := &ctrlPDU{advance: true}
	pdu.BuildReject(&p.hdr, reason)
	p.data = make([]byte, pdu.BHSLen)
	copy(p.data, c.hdr[:])
	c.log.Debug("reject", "opcode", c.hdr.Opcode(), "reason", reason)
	c.sendCtrl(p)
	return nil
}

// pinger sends NOP-In pings when the initiator has been idle and closes the
// connection when a ping goes unanswered.
func (c *conn) pinger() {
	defer c.writerWG.Done()
	interval := c.srv.opts.NopInInterval
	timeout := c.srv.opts.NopInTimeout
	t := time.NewTimer(interval)
	defer t.Stop()
	var sentAt time.Time
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			last := time.Unix(0, c.lastRecv.Load())
			if c.pingTTT.Load() != 0 && !sentAt.IsZero() {
				if last.After(sentAt) {
					// Traffic arrived; any PDU shows the peer is alive.
					c.pingTTT.Store(0)
				} else if timeout > 0 && now.Sub(sentAt) >= timeout {
					c.close(errNopTimeout)
					return
				}
			}
			if c.pingTTT.Load() == 0 && now.Sub(last) >= interval {
				ttt := c.allocTTT()
				c.pingTTT.Store(ttt)
				sentAt = now
				p := &ctrlPDU{}
				pdu.BuildNOPIn(&p.hdr, 0, pdu.ReservedTag, ttt, 0)
				c.sendCtrl(p)
			}
			next := interval
			if c.pingTTT.Load() != 0 && timeout > 0 {
				next = min(interval, timeout)
			}
			t.Reset(next)
		}
	}
}

// allocTTT returns a Target Transfer Tag that is neither 0 nor reserved.
func (c *conn) allocTTT() uint32 {
	for {
		v := c.nextTTT.Add(1)
		if v != 0 && v != pdu.ReservedTag {
			return v
		}
	}
}

// handleNOPOut answers pings (RFC 7143 §11.18) and notes answers to ours.
func (c *conn) handleNOPOut() error {
	h := &c.hdr
	if h.ITT() == pdu.ReservedTag {
		// An answer to our NOP-In; it must be immediate and carries no
		// CmdSN to consume.
		if ttt := h.TTT(); ttt != pdu.ReservedTag && ttt == c.pingTTT.Load() {
			c.pingTTT.Store(0)
		}
		return c.discardData(h.DataSegmentLength())
	}
	data, ok, err := c.acceptControl(h)
	if !ok {
		return err
	}
	p := &ctrlPDU{advance: true, credit: !h.Immediate()}
	pdu.BuildNOPIn(&p.hdr, h.LUN(), h.ITT(), pdu.ReservedTag, len(data))
	p.data = append([]byte(nil), data...)
	c.sendCtrl(p)
	return nil
}
