package initiator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"hastor/target/pdu"
)

// Errors returned by the initiator. Match them with errors.Is.
var (
	// ErrConnLost: the TCP connection failed; every command outstanding at
	// that moment, and every later one, fails with it. Whether such a
	// command was executed by the target is unknown.
	ErrConnLost = errors.New("initiator: connection lost")
	// ErrProtocol: the target sent something RFC 7143 does not allow. The
	// connection is closed and outstanding commands fail with it.
	ErrProtocol = errors.New("initiator: target protocol error")
	// ErrClosed: Close or Logout ended the session.
	ErrClosed = errors.New("initiator: session closed")
	// ErrLogin: the login phase failed (a *LoginError carries the status).
	ErrLogin = errors.New("initiator: login failed")
	// ErrNotLoggedIn: a command was issued before Login succeeded.
	ErrNotLoggedIn = errors.New("initiator: not logged in")
	// ErrBadRequest: the caller's arguments are invalid.
	ErrBadRequest = errors.New("initiator: invalid request")
	// ErrRejected: the target answered a PDU with a Reject PDU, or a SCSI
	// Response with a non-zero iSCSI response code.
	ErrRejected = errors.New("initiator: command rejected by target")
)

// DefaultWriteTimeout bounds each socket write when Options.WriteTimeout is 0.
const DefaultWriteTimeout = 30 * time.Second

// Result is a SCSI command whose status arrived.
type Result struct {
	// Status is the SCSI status byte (0 GOOD, 2 CHECK CONDITION, ...).
	Status byte
	// Sense is the sense data of a CHECK CONDITION (may be empty).
	Sense []byte
	// Data is the Data-In received, shortened by an underflow residual.
	Data []byte
	// Residual is the residual count; Underflow and Overflow say which.
	Residual            uint32
	Underflow, Overflow bool
}

// Err returns nil for GOOD status and a *SCSIError otherwise.
func (r Result) Err() error {
	if r.Status == StatusGood {
		return nil
	}
	return &SCSIError{Status: r.Status, Sense: r.Sense}
}

// SCSI status codes (SAM-5 §5.3).
const (
	StatusGood           = 0x00
	StatusCheckCondition = 0x02
	StatusBusy           = 0x08
	StatusReservation    = 0x18
	StatusTaskSetFull    = 0x28
)

// SCSIError is a command that completed with a status other than GOOD.
type SCSIError struct {
	Status byte
	Sense  []byte
}

// SenseKey decodes key, ASC and ASCQ from fixed (0x70/0x71) or descriptor
// (0x72/0x73) sense data; all zero when there is none.
func (e *SCSIError) SenseKey() (key, asc, ascq byte) {
	s := e.Sense
	if len(s) < 1 {
		return 0, 0, 0
	}
	switch s[0] & 0x7f {
	case 0x70, 0x71:
		if len(s) >= 14 {
			return s[2] & 0x0f, s[12], s[13]
		}
		if len(s) >= 3 {
			return s[2] & 0x0f, 0, 0
		}
	case 0x72, 0x73:
		if len(s) >= 4 {
			return s[1] & 0x0f, s[2], s[3]
		}
	}
	return 0, 0, 0
}

func (e *SCSIError) Error() string {
	k, asc, ascq := e.SenseKey()
	return fmt.Sprintf("initiator: SCSI status %#02x, sense key %#x asc/ascq %#02x/%#02x", e.Status, k, asc, ascq)
}

// LoginError is a Login Response with a non-zero status (RFC 7143
// §11.13.5). It matches ErrLogin.
type LoginError struct {
	Status uint16 // class in the high byte, detail in the low byte
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("initiator: login failed with status %#04x", e.Status)
}

// Unwrap makes a LoginError match ErrLogin.
func (e *LoginError) Unwrap() error { return ErrLogin }

// Session is one iSCSI session over one TCP connection. Do, the helpers,
// Ping and Logout are safe for concurrent use once Login returned.
type Session struct {
	nc     net.Conn
	br     *bufio.Reader
	log    *slog.Logger
	opts   Options
	params Params

	// wmu serialises socket writes, and CmdSN assignment with them, so that
	// commands go out in CmdSN order.
	wmu sync.Mutex

	mu struct {
		sync.Mutex
		cmdSN, expCmdSN, maxCmdSN uint32
		expStatSN                 uint32
		nextITT                   uint32
		tasks                     map[uint32]*task
		// window is closed (and replaced) whenever MaxCmdSN moves or the
		// session fails, to wake commands waiting for the CmdSN window.
		window   chan struct{}
		err      error // set once: the session is dead
		loggedIn bool
	}

	started atomic.Bool   // the reader runs
	done    chan struct{} // closed when the reader exits
	helpers sync.WaitGroup
}

// task is one command (or NOP-Out / Logout) waiting for its answer. The
// reader goroutine owns in, res and err until it closes done.
type task struct {
	itt       uint32
	kind      taskKind
	in        []byte
	out       []byte
	r2t       chan r2tReq
	done      chan struct{}
	res       Result
	err       error
	abandoned atomic.Bool
}

type taskKind uint8

const (
	kindSCSI taskKind = iota
	kindNOP
	kindLogout
)

type r2tReq struct {
	ttt, offset, length uint32
}

// Dial connects to a portal (host:port). The session must log in next.
func Dial(ctx context.Context, addr string) (*Session, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("initiator: dial %s: %w", addr, err)
	}
	return New(nc), nil
}

// New returns a Session on a connection the caller dialled (for example
// from inside another network namespace). Call Login next; the Session
// owns nc.
func New(nc net.Conn) *Session {
	s := &Session{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), done: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
	s.mu.tasks = map[uint32]*task{}
	s.mu.window = make(chan struct{})
	return s
}

// Params returns the negotiated parameters (valid after Login).
func (s *Session) Params() Params { return s.params }

// Close ends the session without logging out (use Logout first for a clean
// end): the connection is closed, the reader stops and outstanding
// commands fail with ErrClosed.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.mu.err == nil {
		s.mu.err = ErrClosed
	}
	s.mu.Unlock()
	err := s.nc.Close()
	if s.started.Load() {
		<-s.done
	}
	s.helpers.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Done is closed when the session's connection is gone (after Login).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, or nil while it is alive.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.err
}

// breakConn records err as the session's fate and closes the socket; the
// reader then fails every outstanding task.
func (s *Session) breakConn(err error) {
	s.mu.Lock()
	if s.mu.err == nil {
		s.mu.err = err
	}
	s.mu.Unlock()
	s.nc.Close()
}

// failAll is called by the reader when it stops: every task fails with the
// session's error.
func (s *Session) failAll(err error) {
	s.mu.Lock()
	if s.mu.err == nil {
		s.mu.err = err
	}
	err = s.mu.err
	tasks := s.mu.tasks
	s.mu.tasks = map[uint32]*task{}
	close(s.mu.window)
	s.mu.window = make(chan struct{})
	s.mu.Unlock()
	for _, t := range tasks {
		t.err = err
		close(t.done)
	}
}

// serialLT reports a < b in 32-bit serial number arithmetic (RFC 1982).
func serialLT(a, b uint32) bool { return a != b && int32(a-b) < 0 }

// updateWindowLocked applies ExpCmdSN/MaxCmdSN from a target PDU (RFC 7143
// §4.2.2.1).
func (s *Session) updateWindowLocked(exp, maxSN uint32) {
	if int32(maxSN-exp) < -1 {
		return // MaxCmdSN < ExpCmdSN-1: ignore
	}
	if serialLT(s.mu.expCmdSN, exp) {
		s.mu.expCmdSN = exp
	}
	if serialLT(s.mu.maxCmdSN, maxSN) {
		s.mu.maxCmdSN = maxSN
		close(s.mu.window)
		s.mu.window = make(chan struct{})
	}
}

// submit registers t and sends its first PDU (h, with data), followed by the
// unsolicited Data-Out PDUs in unsol. A non-immediate PDU waits for the
// CmdSN window.
func (s *Session) submit(ctx context.Context, t *task, h *pdu.Header, immediate bool, data []byte, unsol []unsolicited) error {
	for {
		s.wmu.Lock()
		s.mu.Lock()
		if err := s.mu.err; err != nil {
			s.mu.Unlock()
			s.wmu.Unlock()
			return err
		}
		if !s.mu.loggedIn {
			s.mu.Unlock()
			s.wmu.Unlock()
			return ErrNotLoggedIn
		}
		if immediate || !serialLT(s.mu.maxCmdSN, s.mu.cmdSN) {
			t.itt = s.allocITTLocked()
			s.mu.tasks[t.itt] = t
			h.SetITT(t.itt)
			h.PutU32(24, s.mu.cmdSN)
			h.PutU32(28, s.mu.expStatSN)
			if !immediate {
				s.mu.cmdSN++
			}
			expStat := s.mu.expStatSN
			s.mu.Unlock()
			err := s.writePDU(h, data)
			for i := 0; err == nil && i < len(unsol); i++ {
				d := &unsol[i]
				var dh pdu.Header
				buildDataOut(&dh, h.LUN(), t.itt, pdu.ReservedTag, expStat, d.sn, d.off, d.final)
				err = s.writePDU(&dh, d.data)
			}
			s.wmu.Unlock()
			if err != nil {
				err = fmt.Errorf("%w: send: %w", ErrConnLost, err)
				s.breakConn(err)
				return err
			}
			return nil
		}
		ch := s.mu.window
		s.mu.Unlock()
		s.wmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// allocITTLocked returns a tag not in use and not the reserved tag.
func (s *Session) allocITTLocked() uint32 {
	for {
		s.mu.nextITT++
		itt := s.mu.nextITT
		if itt == pdu.ReservedTag {
			continue
		}
		if _, busy := s.mu.tasks[itt]; !busy {
			return itt
		}
	}
}

// unsolicited is one unsolicited Data-Out PDU.
type unsolicited struct {
	data  []byte
	sn    uint32
	off   uint32
	final bool
}

func buildDataOut(h *pdu.Header, lunRaw uint64, itt, ttt, expStatSN, dataSN, off uint32, final bool) {
	h.Reset()
	h.SetOpcode(pdu.OpDataOut, false)
	if final {
		h.SetFlags(pdu.FlagFinal)
	}
	h.SetLUN(lunRaw)
	h.SetITT(itt)
	h.SetTTT(ttt)
	h.PutU32(28, expStatSN)
	h.PutU32(36, dataSN)
	h.PutU32(40, off)
}

// writePDU sends one PDU; the caller holds wmu.
func (s *Session) writePDU(h *pdu.Header, data []byte) error {
	h.SetDataSegmentLength(len(data))
	bufs := net.Buffers{h[:]}
	if len(data) > 0 {
		bufs = append(bufs, data)
		if p := pdu.Pad(len(data)); p > 0 {
			bufs = append(bufs, pdu.Padding(p))
		}
	}
	if err := s.nc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); err != nil {
		return err
	}
	_, err := bufs.WriteTo(s.nc)
	return err
}

// wait waits for t's answer, sending Data-Out for each R2T.
func (s *Session) wait(ctx context.Context, t *task, lunRaw uint64) error {
	for {
		select {
		case <-t.done:
			return t.err
		case r := <-t.r2t:
			if err := s.answerR2T(t, lunRaw, r); err != nil {
				return err
			}
		case <-ctx.Done():
			t.abandoned.Store(true)
			return ctx.Err()
		}
	}
}

// answerR2T sends the Data-Out sequence an R2T asked for (RFC 7143 §11.7),
// in PDUs no larger than the target's MaxRecvDataSegmentLength.
func (s *Session) answerR2T(t *task, lunRaw uint64, r r2tReq) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var sn uint32
	for sent := uint32(0); sent < r.length; sn++ {
		n := min(r.length-sent, uint32(s.params.MaxSendDataSegmentLength))
		s.mu.Lock()
		expStat := s.mu.expStatSN
		s.mu.Unlock()
		var h pdu.Header
		buildDataOut(&h, lunRaw, t.itt, r.ttt, expStat, sn, r.offset+sent, sent+n == r.length)
		if err := s.writePDU(&h, t.out[r.offset+sent:r.offset+sent+n]); err != nil {
			err = fmt.Errorf("%w: send Data-Out: %w", ErrConnLost, err)
			s.breakConn(err)
			return err
		}
		sent += n
	}
	return nil
}

// EncodeLUN returns the 8-byte LUN field for a LUN number (SAM-5 §4.7:
// peripheral addressing below 256, flat space addressing up to 16383).
func EncodeLUN(lun uint64) (uint64, error) {
	switch {
	case lun < 256:
		return lun << 48, nil
	case lun < 16384:
		return (0x4000 | lun) << 48, nil
	}
	return 0, fmt.Errorf("%w: LUN %d is not addressable", ErrBadRequest, lun)
}

// Do runs one SCSI command on lun: cdb (at most 16 bytes), write data in
// dataOut (nil for none), and a Data-In buffer of dataInLen bytes. It
// returns once the status arrived, the session failed, or ctx ended. A
// non-GOOD status is not an error here: see Result.Err. Bidirectional
// commands are not supported.
func (s *Session) Do(ctx context.Context, lun uint64, cdb []byte, dataOut []byte, dataInLen int) (Result, error) {
	if len(cdb) == 0 || len(cdb) > 16 || dataInLen < 0 || (len(dataOut) > 0 && dataInLen > 0) ||
		len(dataOut) > 1<<31 || dataInLen > 1<<31 {
		return Result{}, fmt.Errorf("%w: cdb %d bytes, %d bytes out, %d bytes in", ErrBadRequest, len(cdb), len(dataOut), dataInLen)
	}
	lunRaw, err := EncodeLUN(lun)
	if err != nil {
		return Result{}, err
	}
	t := &task{kind: kindSCSI, out: dataOut, done: make(chan struct{})}
	if dataInLen > 0 {
		t.in = make([]byte, dataInLen)
	}
	if len(dataOut) > 0 {
		t.r2t = make(chan r2tReq, max(s.params.MaxOutstandingR2T, 1)+1)
	}
	var h pdu.Header
	h.SetOpcode(pdu.OpSCSICmd, false)
	flags := byte(pdu.FlagFinal | pdu.AttrSimple)
	if dataInLen > 0 {
		flags |= pdu.FlagRead
	}
	if len(dataOut) > 0 {
		flags |= pdu.FlagWrite
	}
	h.SetLUN(lunRaw)
	h.PutU32(20, uint32(dataInLen+len(dataOut)))
	copy(h[32:48], cdb)

	// Unsolicited data (RFC 7143 §4.2.5.2): immediate data when
	// ImmediateData=Yes, then, when InitialR2T=No, Data-Out PDUs up to
	// FirstBurstLength. The command's F bit says no unsolicited Data-Out
	// follows.
	var imm []byte
	var unsol []unsolicited
	if len(dataOut) > 0 {
		p := s.params
		if p.ImmediateData {
			imm = dataOut[:min(len(dataOut), p.FirstBurstLength, p.MaxSendDataSegmentLength)]
		}
		if !p.InitialR2T {
			end := min(len(dataOut), p.FirstBurstLength)
			var sn uint32
			for off := len(imm); off < end; sn++ {
				n := min(end-off, p.MaxSendDataSegmentLength)
				unsol = append(unsol, unsolicited{data: dataOut[off : off+n], sn: sn, off: uint32(off), final: off+n == end})
				off += n
			}
		}
	}
	if len(unsol) > 0 {
		flags &^= pdu.FlagFinal
	}
	h.SetFlags(flags)
	if err := s.submit(ctx, t, &h, false, imm, unsol); err != nil {
		return Result{}, err
	}
	if err := s.wait(ctx, t, lunRaw); err != nil {
		return Result{}, err
	}
	return t.res, nil
}

// Ping sends a NOP-Out that asks for a NOP-In (RFC 7143 §11.18) and waits
// for it: a round trip through the target's reader.
func (s *Session) Ping(ctx context.Context) error {
	t := &task{kind: kindNOP, done: make(chan struct{})}
	var h pdu.Header
	h.SetOpcode(pdu.OpNOPOut, true)
	h.SetFlags(pdu.FlagFinal)
	h.SetTTT(pdu.ReservedTag)
	if err := s.submit(ctx, t, &h, true, nil, nil); err != nil {
		return err
	}
	return s.wait(ctx, t, 0)
}

// Logout closes the session (RFC 7143 §11.14, reason "close the session")
// and waits for the Logout Response. Commands still outstanding may fail
// with ErrClosed. Close must still be called.
func (s *Session) Logout(ctx context.Context) error {
	t := &task{kind: kindLogout, done: make(chan struct{})}
	var h pdu.Header
	h.SetOpcode(pdu.OpLogout, true)
	h.SetFlags(pdu.FlagFinal | pdu.LogoutSession)
	h.PutU16(20, 0) // CID
	if err := s.submit(ctx, t, &h, true, nil, nil); err != nil {
		return err
	}
	if err := s.wait(ctx, t, 0); err != nil {
		return err
	}
	if t.res.Status != 0 {
		return fmt.Errorf("%w: logout response %d", ErrRejected, t.res.Status)
	}
	return nil
}

// readLoop is the reader goroutine: it reads every PDU and dispatches it.
func (s *Session) readLoop() {
	defer close(s.done)
	scratch := make([]byte, s.params.MaxRecvDataSegmentLength+4)
	var h pdu.Header
	for {
		if _, err := io.ReadFull(s.br, h[:]); err != nil {
			s.failAll(fmt.Errorf("%w: %w", ErrConnLost, err))
			s.nc.Close()
			return
		}
		if err := s.handle(&h, scratch); err != nil {
			s.log.Debug("initiator: session failed", "err", err)
			s.failAll(err)
			s.nc.Close()
			return
		}
	}
}

// readSegment reads a data segment of n bytes into dst (len n) and its
// padding.
func (s *Session) readSegment(dst []byte) error {
	if _, err := io.ReadFull(s.br, dst); err != nil {
		return fmt.Errorf("%w: %w", ErrConnLost, err)
	}
	if p := pdu.Pad(len(dst)); p > 0 {
		if _, err := s.br.Discard(p); err != nil {
			return fmt.Errorf("%w: %w", ErrConnLost, err)
		}
	}
	return nil
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// lookup returns the task for itt, or nil.
func (s *Session) lookup(itt uint32) *task {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.tasks[itt]
}

// complete removes t from the table and wakes its waiter.
func (s *Session) complete(t *task) {
	s.mu.Lock()
	delete(s.mu.tasks, t.itt)
	s.mu.Unlock()
	close(t.done)
}

// handle processes one PDU whose header is h. It returns an error that
// ends the session.
func (s *Session) handle(h *pdu.Header, scratch []byte) error {
	n := h.DataSegmentLength()
	if n > s.params.MaxRecvDataSegmentLength {
		return protoErr("%v with a %d-byte data segment; MaxRecvDataSegmentLength is %d", h.Opcode(), n, s.params.MaxRecvDataSegmentLength)
	}
	if ahs := h.TotalAHSLength(); ahs > 0 {
		if _, err := s.br.Discard(ahs); err != nil {
			return fmt.Errorf("%w: %w", ErrConnLost, err)
		}
	}
	op := h.Opcode()
	s.mu.Lock()
	s.updateWindowLocked(h.ExpCmdSN(), h.MaxCmdSN())
	carriesStat := true
	switch {
	case op == pdu.OpR2T, op == pdu.OpDataIn && h.Flags()&pdu.FlagStatus == 0, op == pdu.OpNOPIn && h.ITT() == pdu.ReservedTag:
		carriesStat = false
	}
	if carriesStat && !serialLT(h.StatSN(), s.mu.expStatSN) {
		s.mu.expStatSN = h.StatSN() + 1
	}
	s.mu.Unlock()

	switch op {
	case pdu.OpDataIn:
		t := s.lookup(h.ITT())
		if t == nil || t.kind != kindSCSI {
			return protoErr("Data-In for unknown ITT %#x", h.ITT())
		}
		off := int(h.BufferOffset())
		if off+n > len(t.in) {
			return protoErr("Data-In at %d+%d beyond the %d-byte buffer", off, n, len(t.in))
		}
		if err := s.readSegment(t.in[off : off+n]); err != nil {
			return err
		}
		if h.Flags()&pdu.FlagStatus != 0 {
			s.finishSCSI(t, h, nil)
		}
	case pdu.OpSCSIResp:
		seg := scratch[:n]
		if err := s.readSegment(seg); err != nil {
			return err
		}
		t := s.lookup(h.ITT())
		if t == nil || t.kind != kindSCSI {
			return protoErr("SCSI Response for unknown ITT %#x", h.ITT())
		}
		if h[2] != 0 {
			t.err = fmt.Errorf("%w: iSCSI response %#02x", ErrRejected, h[2])
			s.complete(t)
			return nil
		}
		var sense []byte
		if len(seg) >= 2 {
			sl := int(seg[0])<<8 | int(seg[1])
			sense = append([]byte(nil), seg[2:2+min(sl, len(seg)-2)]...)
		}
		s.finishSCSI(t, h, sense)
	case pdu.OpR2T:
		if n != 0 {
			return protoErr("R2T with a data segment")
		}
		t := s.lookup(h.ITT())
		if t == nil || t.kind != kindSCSI || t.r2t == nil {
			return protoErr("R2T for unknown or non-write ITT %#x", h.ITT())
		}
		off, length := h.BufferOffset(), h.U32(44)
		if length == 0 || uint64(off)+uint64(length) > uint64(len(t.out)) {
			return protoErr("R2T for %d+%d beyond the %d bytes of data", off, length, len(t.out))
		}
		select {
		case t.r2t <- r2tReq{ttt: h.TTT(), offset: off, length: length}:
		default:
			if !t.abandoned.Load() {
				return protoErr("more R2Ts outstanding than MaxOutstandingR2T=%d", s.params.MaxOutstandingR2T)
			}
		}
	case pdu.OpNOPIn:
		seg := scratch[:n]
		if err := s.readSegment(seg); err != nil {
			return err
		}
		if h.TTT() != pdu.ReservedTag {
			s.replyNOP(h.LUN(), h.TTT(), append([]byte(nil), seg...))
		}
		if h.ITT() != pdu.ReservedTag {
			if t := s.lookup(h.ITT()); t != nil && t.kind == kindNOP {
				s.complete(t)
			}
		}
	case pdu.OpLogoutResp:
		if err := s.readSegment(scratch[:n]); err != nil {
			return err
		}
		t := s.lookup(h.ITT())
		if t == nil || t.kind != kindLogout {
			return protoErr("Logout Response for unknown ITT %#x", h.ITT())
		}
		t.res.Status = h[2]
		s.mu.Lock()
		if s.mu.err == nil {
			s.mu.err = ErrClosed
		}
		s.mu.Unlock()
		s.complete(t)
	case pdu.OpReject:
		seg := scratch[:n]
		if err := s.readSegment(seg); err != nil {
			return err
		}
		if len(seg) < pdu.BHSLen {
			return protoErr("Reject without the rejected header")
		}
		var rh pdu.Header
		copy(rh[:], seg)
		if t := s.lookup(rh.ITT()); t != nil && rh.ITT() != pdu.ReservedTag {
			t.err = fmt.Errorf("%w: Reject reason %#02x for %v", ErrRejected, h[2], rh.Opcode())
			s.complete(t)
		}
	case pdu.OpAsync, pdu.OpTaskResp, pdu.OpTextResp:
		if err := s.readSegment(scratch[:n]); err != nil {
			return err
		}
		s.log.Debug("initiator: ignored PDU", "opcode", op)
	default:
		return protoErr("unexpected %v in full feature phase", op)
	}
	return nil
}

// finishSCSI completes a SCSI command from a SCSI Response or a Data-In
// with status.
func (s *Session) finishSCSI(t *task, h *pdu.Header, sense []byte) {
	f := h.Flags()
	t.res = Result{Status: h[3], Sense: sense, Residual: h.U32(44),
		Underflow: f&pdu.FlagUnderflow != 0, Overflow: f&pdu.FlagOverflow != 0}
	t.res.Data = t.in
	if t.res.Underflow && int64(t.res.Residual) <= int64(len(t.in)) {
		t.res.Data = t.in[:len(t.in)-int(t.res.Residual)]
	}
	s.complete(t)
}

// replyNOP answers a target's ping (NOP-In with a TTT) with a NOP-Out that
// echoes it (RFC 7143 §11.18). It runs on its own goroutine so that the
// reader never writes.
func (s *Session) replyNOP(lunRaw uint64, ttt uint32, data []byte) {
	s.helpers.Add(1)
	go func() {
		defer s.helpers.Done()
		s.wmu.Lock()
		defer s.wmu.Unlock()
		s.mu.Lock()
		if s.mu.err != nil {
			s.mu.Unlock()
			return
		}
		var h pdu.Header
		h.SetOpcode(pdu.OpNOPOut, true)
		h.SetFlags(pdu.FlagFinal)
		h.SetLUN(lunRaw)
		h.SetITT(pdu.ReservedTag)
		h.SetTTT(ttt)
		h.PutU32(24, s.mu.cmdSN)
		h.PutU32(28, s.mu.expStatSN)
		s.mu.Unlock()
		if err := s.writePDU(&h, data); err != nil {
			s.breakConn(fmt.Errorf("%w: send NOP-Out: %w", ErrConnLost, err))
		}
	}()
}
