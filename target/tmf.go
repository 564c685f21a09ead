package target

import (
	"hastor/target/pdu"
	"hastor/target/scsi"
)

// handleTaskRequest starts a task management function (RFC 7143 §11.5).
// It runs in its own goroutine because it waits for aborted commands.
func (c *conn) handleTaskRequest() error {
	h := c.hdr
	if err := c.discardData(h.DataSegmentLength()); err != nil {
		return err
	}
	if c.sess.discovery {
		return c.reject(pdu.RejectProtocolError)
	}
	if !h.Immediate() && !c.sess.acceptCmdSN(h.CmdSN()) {
		return nil
	}
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		resp := c.taskManagement(&h)
		p := &ctrlPDU{advance: true, credit: !h.Immediate(), sent: make(chan struct{})}
		pdu.BuildTaskResponse(&p.hdr, h.ITT(), resp)
		c.sendCtrl(p)
		select {
		case <-p.sent:
		case <-c.done:
			// The connection ended; the response may never be sent.
			return
		}
		if h.TaskFunction() == pdu.TMFTargetColdReset && resp == pdu.TMFComplete {
			// A cold reset also ends every connection to the target
			// (RFC 7143 §11.5.1), after the response went out.
			for _, s := range c.srv.sessionsOf(c.sess.tgt) {
				s.mu.Lock()
				sc := s.mu.conn
				s.mu.Unlock()
				if sc != nil {
					sc.close(errColdReset)
				}
			}
		}
	}()
	return nil
}

type coldResetError struct{}

func (coldResetError) Error() string { return "target: TARGET COLD RESET" }

var errColdReset error = coldResetError{}

// taskManagement performs the function and returns the response code.
func (c *conn) taskManagement(h *pdu.Header) byte {
	sess := c.sess
	tgt := sess.tgt
	fn := h.TaskFunction()
	lun := lunNumber(h.LUN())
	onLUN := func(t *task) bool { return lunNumber(t.lunField) == lun }
	c.log.Info("task management", "function", fn, "lun", lun, "ref_itt", h.ReferencedTaskTag())
	switch fn {
	case pdu.TMFAbortTask:
		ref := h.ReferencedTaskTag()
		sess.mu.Lock()
		t := sess.mu.tasks[ref]
		found := t != nil && !t.aborted.Load()
		sess.mu.Unlock()
		if !found {
			// RFC 7143 §11.5.1: a task not found whose RefCmdSN lies in
			// the window before this request has not arrived yet; it is
			// considered aborted. A task that completed already has a
			// CmdSN below ExpCmdSN: "task does not exist".
			exp, _ := sess.cmdSNs()
			if !snLess(h.RefCmdSN(), exp) && snLess(h.RefCmdSN(), h.CmdSN()) {
				return pdu.TMFComplete
			}
			return pdu.TMFNoTask
		}
		if t.lunField != h.LUN() {
			return pdu.TMFNoTask
		}
		sess.abortMatching(func(x *task) bool { return x.itt == ref })
		return pdu.TMFComplete
	case pdu.TMFAbortTaskSet:
		if !hasLUN(tgt, lun) {
			return pdu.TMFNoLUN
		}
		sess.abortMatching(onLUN)
		return pdu.TMFComplete
	case pdu.TMFClearTaskSet:
		if !hasLUN(tgt, lun) {
			return pdu.TMFNoLUN
		}
		for _, s := range c.srv.sessionsOf(tgt) {
			if s.abortMatching(onLUN) > 0 && s != sess {
				tgt.SCSI.LU(lun).CommandsCleared(s.nexus)
			}
		}
		return pdu.TMFComplete
	case pdu.TMFLUNReset:
		if !hasLUN(tgt, lun) {
			return pdu.TMFNoLUN
		}
		for _, s := range c.srv.sessionsOf(tgt) {
			s.abortMatching(onLUN)
		}
		tgt.SCSI.LU(lun).Reset(sess.nexus)
		return pdu.TMFComplete
	case pdu.TMFTargetWarmReset, pdu.TMFTargetColdReset:
		for _, s := range c.srv.sessionsOf(tgt) {
			s.abortMatching(func(*task) bool { return true })
		}
		kind := scsi.ResetTargetWarm
		if fn == pdu.TMFTargetColdReset {
			kind = scsi.ResetTargetCold
		}
		tgt.SCSI.Reset(kind, sess.nexus)
		return pdu.TMFComplete
	case pdu.TMFTaskReassign:
		return pdu.TMFReassignNotSupp
	}
	return pdu.TMFNotSupported
}

// handleLogout answers a Logout Request (RFC 7143 §11.14) once the
// connection's commands have completed, then closes the connection.
func (c *conn) handleLogout() error {
	h := c.hdr
	if err := c.discardData(h.DataSegmentLength()); err != nil {
		return err
	}
	if !h.Immediate() && !c.sess.acceptCmdSN(h.CmdSN()) {
		return nil
	}
	var resp byte
	switch h.LogoutReason() {
	case pdu.LogoutSession:
	case pdu.LogoutConnection:
		if h.CID() != c.cid {
			resp = 1 // CID not found: hastor has one connection per session
		}
	case pdu.LogoutRecovery:
		resp = 2 // connection recovery is not supported at ERL 0
	default:
		c.uncount(&h)
		return c.reject(pdu.RejectProtocolError)
	}
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		c.sess.waitConnIdle(c)
		p := &ctrlPDU{advance: true, credit: !h.Immediate(), closeAfter: resp == 0}
		pdu.BuildLogoutResponse(&p.hdr, h.ITT(), resp, uint16(c.params.DefaultTime2Wait), uint16(c.params.DefaultTime2Retain))
		c.sendCtrl(p)
	}()
	return nil
}

func hasLUN(t *Target, lun uint64) bool {
	for _, l := range t.SCSI.LUNs() {
		if l == lun {
			return true
		}
	}
	return false
}
