package target

import (
	"sync"
	"sync/atomic"

	"hastor/target/scsi"
)

// session is an iSCSI session: an I_T nexus between one initiator port
// (InitiatorName + ISID) and one target. hastor negotiates MaxConnections=1,
// so a session has one connection at a time; connection reinstatement
// replaces it.
type session struct {
	srv       *Server
	tgt       *Target // nil for discovery sessions
	discovery bool
	tsih      uint16
	initiator string
	isid      [6]byte
	nexus     *scsi.Nexus
	depth     uint32

	// immediate counts immediate commands in flight; they take no CmdSN,
	// so this bounds them instead (RFC 7143 §11.17.1 "Immediate command
	// reject").
	immediate atomic.Int32

	// sn packs ExpCmdSN (high 32 bits) and MaxCmdSN (low 32 bits) so the
	// writer reads a consistent pair without a lock.
	sn atomic.Uint64

	mu struct {
		sync.Mutex
		conn  *conn
		tasks map[uint32]*task // by ITT: every task not yet released
		free  []*task          // recycled tasks (reuse stays under this mutex)
		// ahead holds CmdSNs received beyond ExpCmdSN (a gap), so that
		// ExpCmdSN can advance over them once the gap fills.
		ahead  map[uint32]struct{}
		closed bool
	}
	// taskDone is signalled (under mu) whenever a task leaves execution,
	// for task management functions waiting on aborted tasks.
	taskDone *sync.Cond
	// ended is closed once the session is over and its I_T nexus detached.
	ended chan struct{}
}

func newSession(srv *Server, tgt *Target, discovery bool, initiator string, isid [6]byte, tsih uint16, cmdSN uint32) *session {
	s := &session{
		srv:       srv,
		tgt:       tgt,
		discovery: discovery,
		tsih:      tsih,
		initiator: initiator,
		isid:      isid,
		depth:     uint32(srv.opts.QueueDepth),
		ended:     make(chan struct{}),
	}
	s.mu.tasks = make(map[uint32]*task, srv.opts.QueueDepth)
	s.mu.ahead = make(map[uint32]struct{})
	s.taskDone = sync.NewCond(&s.mu.Mutex)
	s.sn.Store(uint64(cmdSN)<<32 | uint64(cmdSN+s.depth-1))
	if tgt != nil {
		s.nexus = &scsi.Nexus{
			InitiatorName:      initiator,
			ISID:               isid,
			TargetName:         tgt.Name,
			RelativeTargetPort: 1,
			TPGT:               1,
		}
	}
	return s
}

// cmdSNs returns ExpCmdSN and MaxCmdSN.
func (s *session) cmdSNs() (exp, max uint32) {
	v := s.sn.Load()
	return uint32(v >> 32), uint32(v)
}

// snLess reports a < b in serial number arithmetic (RFC 1982, as RFC 7143
// §4.2.2.1 requires for sequence numbers).
func snLess(a, b uint32) bool { return a != b && int32(a-b) < 0 }

// snInWindow reports exp <= sn <= max in serial arithmetic.
func snInWindow(sn, exp, max uint32) bool {
	return !snLess(sn, exp) && !snLess(max, sn)
}

// acceptCmdSN checks a non-immediate command's CmdSN against the window
// (RFC 7143 §4.2.2.1) and advances ExpCmdSN. It returns false for a CmdSN
// outside the window: the caller drops the PDU silently.
func (s *session) acceptCmdSN(sn uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		v := s.sn.Load()
		exp, max := uint32(v>>32), uint32(v)
		if !snInWindow(sn, exp, max) {
			return false
		}
		if _, dup := s.mu.ahead[sn]; dup {
			return false
		}
		if sn != exp {
			s.mu.ahead[sn] = struct{}{}
			return true
		}
		exp++
		for {
			if _, ok := s.mu.ahead[exp]; !ok {
				break
			}
			delete(s.mu.ahead, exp)
			exp++
		}
		if s.sn.CompareAndSwap(v, uint64(exp)<<32|uint64(max)) {
			return true
		}
	}
}

// credit opens the command window by one: a non-immediate command has
// completed, so the initiator may send one more. MaxCmdSN never decreases.
func (s *session) credit() {
	for {
		v := s.sn.Load()
		if s.sn.CompareAndSwap(v, v&^0xffffffff|uint64(uint32(v)+1)) {
			return
		}
	}
}

func (s *session) targetName() string {
	if s.tgt == nil {
		return ""
	}
	return s.tgt.Name
}

// newTaskLocked takes a task from the session's free list.
func (s *session) newTaskLocked() *task {
	if n := len(s.mu.free); n > 0 {
		t := s.mu.free[n-1]
		s.mu.free = s.mu.free[:n-1]
		return t
	}
	return new(task)
}

// freeTaskLocked recycles t, keeping its generation so that waiters can
// tell it was reused.
func (s *session) freeTaskLocked(t *task) {
	gen := t.gen + 1
	*t = task{gen: gen}
	if len(s.mu.free) < int(s.depth)+8 {
		s.mu.free = append(s.mu.free, t)
	}
}

// abortMatching aborts every task for which match returns true (RFC 7143
// §4.2.3.3, SAM-5 §7): tasks still receiving data are released at once,
// tasks in execution are waited for, and queued responses are dropped by
// the writer. It returns when no matched task is still executing, so no
// write of an aborted command can land after the caller responds.
func (s *session) abortMatching(match func(*task) bool) int {
	type ref struct {
		t   *task
		gen uint32
	}
	var release []*task
	var wait []ref
	s.mu.Lock()
	for _, t := range s.mu.tasks {
		if !match(t) || t.aborted.Load() {
			continue
		}
		t.aborted.Store(true)
		switch {
		case t.state == taskReceiving && !t.reading:
			delete(s.mu.tasks, t.itt)
			release = append(release, t)
		case t.state == taskExecuting:
			wait = append(wait, ref{t, t.gen})
		}
	}
	s.mu.Unlock()
	for _, t := range release {
		t.c.releaseTask(t)
	}
	s.mu.Lock()
	for {
		busy := false
		for _, r := range wait {
			if r.t.gen == r.gen && r.t.state == taskExecuting {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		s.taskDone.Wait()
	}
	s.mu.Unlock()
	return len(release) + len(wait)
}

// abortConnTasks aborts every task of connection c (it has closed).
func (s *session) abortConnTasks(c *conn) {
	s.abortMatching(func(t *task) bool { return t.c == c })
}

// waitConnIdle waits until connection c has no task left except skip.
func (s *session) waitConnIdle(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		busy := false
		for _, t := range s.mu.tasks {
			if t.c == c {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		s.taskDone.Wait()
	}
}

// terminate ends the session for reinstatement: its connection is closed,
// its tasks finish and its I_T nexus is detached before the new session
// proceeds, so no old command runs alongside the new session.
func (s *session) terminate(cause error) {
	s.mu.Lock()
	c := s.mu.conn
	s.mu.Unlock()
	if c == nil {
		s.end()
	} else {
		c.close(cause)
	}
	<-s.ended
}

// end forgets the session once its last connection is gone (ERL 0).
func (s *session) end() {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	s.mu.closed = true
	s.mu.Unlock()
	s.srv.dropSession(s)
	if s.tgt != nil {
		s.tgt.SCSI.Detach(s.nexus)
	}
	close(s.ended)
}
