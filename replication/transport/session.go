package transport

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// maxReorder bounds how far ahead of the next expected sequence number a
// message may arrive.
const maxReorder = 1 << 20

// inlineMeta is the meta size kept inside a message's own allocation:
// most messages' meta fits, and then costs no allocation of its own.
const inlineMeta = 32

// outMsg is a message sent and not yet acknowledged.
type outMsg struct {
	seq  uint64
	ch   Channel
	typ  uint8
	meta []byte
	data []byte
	done func(error)
	conn *conn
	at   time.Time
	inl  [inlineMeta]byte
}

func (m *outMsg) size() int64 { return int64(headerSize + len(m.meta) + len(m.data)) }

// inMsg is a message received and not yet delivered.
type inMsg struct {
	seq  uint64
	typ  uint8
	meta []byte
	data []byte
	inl  [inlineMeta]byte
}

type txState struct {
	next    uint64
	unacked []*outMsg // in seq order
	bytes   int64
}

type rxState struct {
	expect     uint64
	pending    map[uint64]*inMsg
	queue      []*inMsg
	delivered  uint64 // last seq handed to the handler (and acknowledged)
	delivering bool   // a goroutine is draining queue
	batch      []*inMsg
}

// Session is one session with the peer: see the package comment.
type Session struct {
	l  *Link
	id uint64

	mu struct {
		sync.Mutex
		dead  bool
		err   error
		conns []*conn
		up    bool
		upRan bool // Handler.Up has returned: delivery may start
		rr    int  // round-robin start for pickLocked
		tx    [2]txState
		rx    [2]rxState
	}
	cond     *sync.Cond // on mu: window space, received messages, death
	prev     *Session
	upDone   chan struct{}
	downDone chan struct{}
	deliver  sync.WaitGroup
}

func newSession(l *Link, id uint64, prev *Session) *Session {
	s := &Session{l: l, id: id, prev: prev, upDone: make(chan struct{}), downDone: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu.Mutex)
	for ch := range s.mu.rx {
		s.mu.rx[ch] = rxState{expect: 1, pending: map[uint64]*inMsg{}}
	}
	return s
}

// ID returns the session's identifier.
func (s *Session) ID() uint64 { return s.id }

func (s *Session) isDead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.dead
}

// attach adds an authenticated connection; the first one starts the
// session (Up). It fails once the session is dead.
func (s *Session) attach(c *conn) bool {
	s.mu.Lock()
	if s.mu.dead {
		s.mu.Unlock()
		return false
	}
	s.mu.conns = append(s.mu.conns, c)
	first := !s.mu.up
	s.mu.up = true
	s.mu.Unlock()
	s.l.log.Debug("replication connection up", "path", c.path, "kind", c.kind, "session", s.id)
	if first {
		if s.prev != nil {
			<-s.prev.downDone
			s.prev = nil
		}
		s.l.sessions.Add(1)
		s.l.log.Info("replication session started", "session", s.id)
		s.l.h.Up(s)
		s.mu.Lock()
		s.mu.upRan = true
		s.mu.Unlock()
		close(s.upDone)
		for ch := range Channel(2) {
			s.drain(ch)
		}
	}
	return true
}

// detach removes a dead connection and re-sends what it carried; the
// session ends with its last connection.
func (s *Session) detach(c *conn, err error) {
	s.mu.Lock()
	for i, x := range s.mu.conns {
		if x == c {
			s.mu.conns = append(s.mu.conns[:i], s.mu.conns[i+1:]...)
			break
		}
	}
	if s.mu.dead {
		s.mu.Unlock()
		return
	}
	s.l.log.Debug("replication connection lost", "path", c.path, "kind", c.kind, "err", err)
	if len(s.mu.conns) == 0 {
		s.mu.Unlock()
		s.Close(fmt.Errorf("%w: no connection left (last: %v)", ErrSessionLost, err))
		return
	}
	for ch := range s.mu.tx {
		for _, m := range s.mu.tx[ch].unacked {
			if m.conn == c {
				nc := s.pickLocked(m.ch)
				m.conn = nc
				nc.enqueue(frame{msg: m})
				s.l.retransmits.Add(1)
			}
		}
	}
	// Acks sent on the dead connection may be lost: repeat them.
	s.reackLocked()
	s.mu.Unlock()
}

// reackLocked sends the cumulative acknowledgement of each channel again.
// Acks are idempotent, so a lost one is repaired by the next.
func (s *Session) reackLocked() {
	for ch := range s.mu.rx {
		if d := s.mu.rx[ch].delivered; d > 0 {
			if c := s.pickLocked(Control); c != nil {
				c.enqueue(frame{typ: typeAck, ch: Channel(ch), seq: d})
			}
		}
	}
}

// pickLocked returns the live connection for channel ch with the fewest
// queued bytes, preferring connections of ch's kind. Ties (idle
// connections) go round-robin, so that every connection carries traffic.
func (s *Session) pickLocked(ch Channel) *conn {
	want := kindData
	if ch == Control {
		want = kindControl
	}
	var best, any *conn
	n := len(s.mu.conns)
	s.mu.rr++
	for i := range n {
		c := s.mu.conns[(s.mu.rr+i)%n]
		if c.isClosed() {
			continue
		}
		if any == nil || c.queued.Load() < any.queued.Load() {
			any = c
		}
		if c.kind == want && (best == nil || c.queued.Load() < best.queued.Load()) {
			best = c
		}
	}
	if best == nil {
		best = any
	}
	if best == nil && n > 0 {
		best = s.mu.conns[0]
	}
	return best
}

// Send sends m on channel ch. It waits while the Data window is full. It
// fails with ErrSessionLost (after calling m.Done) once the session is
// over. ctx is checked only while waiting for the window.
func (s *Session) Send(ctx context.Context, ch Channel, m Msg) error {
	if m.Type > MaxUserType || len(m.Meta) > MaxMeta || len(m.Data) > MaxData || ch > Control {
		err := fmt.Errorf("%w: message type %d, meta %d, data %d", ErrProtocol, m.Type, len(m.Meta), len(m.Data))
		if m.Done != nil {
			m.Done(err)
		}
		return err
	}
	om := &outMsg{ch: ch, typ: m.Type, data: m.Data, done: m.Done, at: time.Now()}
	om.meta = append(om.inl[:0:len(om.inl)], m.Meta...)
	s.mu.Lock()
	tx := &s.mu.tx[ch]
	for ch == Data && !s.mu.dead && tx.bytes > 0 && tx.bytes+om.size() > s.l.cfg.Window && ctx.Err() == nil {
		s.cond.Wait()
	}
	if s.mu.dead || ctx.Err() != nil {
		err := s.mu.err
		if err == nil {
			err = ctx.Err()
		}
		s.mu.Unlock()
		if m.Done != nil {
			m.Done(err)
		}
		return err
	}
	tx.next++
	om.seq = tx.next
	tx.unacked = append(tx.unacked, om)
	tx.bytes += om.size()
	c := s.pickLocked(ch)
	om.conn = c
	c.enqueue(frame{msg: om})
	s.mu.Unlock()
	return nil
}

// acked records the peer's cumulative acknowledgement of channel ch.
func (s *Session) acked(ch Channel, seq uint64) {
	s.mu.Lock()
	tx := &s.mu.tx[ch]
	n := 0
	for n < len(tx.unacked) && tx.unacked[n].seq <= seq {
		n++
	}
	done := make([]*outMsg, n)
	copy(done, tx.unacked[:n])
	for _, m := range done {
		tx.bytes -= m.size()
	}
	tx.unacked = append(tx.unacked[:0], tx.unacked[n:]...)
	if n > 0 {
		s.cond.Broadcast()
	}
	s.mu.Unlock()
	for _, m := range done {
		if m.done != nil {
			m.done(nil)
		}
	}
}

// received queues a message for in-order delivery, dropping duplicates.
func (s *Session) received(ch Channel, m *inMsg) error {
	if err := s.queueIn(ch, m); err != nil {
		return err
	}
	s.drain(ch)
	return nil
}

// queueIn puts m in channel ch's reorder buffer and moves what is now in
// order to the delivery queue.
func (s *Session) queueIn(ch Channel, m *inMsg) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rx := &s.mu.rx[ch]
	if s.mu.dead || m.seq < rx.expect || rx.pending[m.seq] != nil {
		s.l.cfg.Free(m.data)
		return nil
	}
	if m.seq-rx.expect > maxReorder {
		s.l.cfg.Free(m.data)
		return fmt.Errorf("%w: sequence number %d far ahead of %d", ErrProtocol, m.seq, rx.expect)
	}
	rx.pending[m.seq] = m
	for {
		x := rx.pending[rx.expect]
		if x == nil {
			break
		}
		delete(rx.pending, rx.expect)
		rx.queue = append(rx.queue, x)
		rx.expect++
	}
	return nil
}

// drain hands channel ch's queued messages to the handler in order and
// acknowledges them. The goroutine that finds messages queued and nobody
// delivering does it (usually a connection's reader, so a message reaches
// the handler without a hand-off); the others leave them to it.
func (s *Session) drain(ch Channel) {
	s.mu.Lock()
	rx := &s.mu.rx[ch]
	if rx.delivering || len(rx.queue) == 0 || s.mu.dead || !s.mu.upRan {
		s.mu.Unlock()
		return
	}
	rx.delivering = true
	s.deliver.Add(1)
	defer s.deliver.Done()
	for len(rx.queue) > 0 && !s.mu.dead {
		rx.batch = append(rx.batch[:0], rx.queue...)
		clear(rx.queue)
		rx.queue = rx.queue[:0]
		s.mu.Unlock()
		for _, m := range rx.batch {
			s.l.h.Deliver(s, ch, m.typ, m.meta, m.data)
		}
		last := rx.batch[len(rx.batch)-1].seq
		clear(rx.batch)
		s.mu.Lock()
		rx.delivered = last
		if c := s.pickLocked(Control); c != nil && !s.mu.dead {
			c.enqueue(frame{typ: typeAck, ch: ch, seq: last})
		}
	}
	rx.delivering = false
	if s.mu.dead {
		s.freeRxLocked(ch)
	}
	s.mu.Unlock()
}

// freeRxLocked drops channel ch's undelivered messages.
func (s *Session) freeRxLocked(ch Channel) {
	rx := &s.mu.rx[ch]
	for _, m := range rx.queue {
		s.l.cfg.Free(m.data)
	}
	for _, m := range rx.pending {
		s.l.cfg.Free(m.data)
	}
	rx.queue, rx.pending = nil, nil
}

// Close ends the session: its connections are closed, unacknowledged
// messages fail with ErrSessionLost, and Handler.Down follows once
// delivery has stopped. It does not wait for that.
func (s *Session) Close(err error) {
	s.mu.Lock()
	if s.mu.dead {
		s.mu.Unlock()
		return
	}
	s.mu.dead = true
	s.mu.err = fmt.Errorf("%w: %w", ErrSessionLost, err)
	conns := append([]*conn(nil), s.mu.conns...)
	var failed []*outMsg
	for ch := range s.mu.tx {
		failed = append(failed, s.mu.tx[ch].unacked...)
		s.mu.tx[ch].unacked = nil
		s.mu.tx[ch].bytes = 0
	}
	up := s.mu.up
	for ch := range s.mu.rx {
		if !s.mu.rx[ch].delivering {
			s.freeRxLocked(Channel(ch))
		}
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	s.l.sessionEnded(s.id) // after s.mu: the Link's lock comes first
	for _, c := range conns {
		c.close(err)
	}
	for _, m := range failed {
		if m.done != nil {
			m.done(s.mu.err)
		}
	}
	go func() {
		if up {
			<-s.upDone
			s.deliver.Wait()
			s.l.log.Info("replication session ended", "session", s.id, "err", err)
			s.l.h.Down(s, s.mu.err)
		} else if s.prev != nil {
			<-s.prev.downDone
		}
		close(s.downDone)
	}()
}

// checkKo ends the session when a message waits for its acknowledgement
// longer than Timeout × KoCount.
func (s *Session) checkKo(now time.Time) {
	if s.l.cfg.KoCount <= 0 {
		return
	}
	limit := s.l.cfg.Timeout * time.Duration(s.l.cfg.KoCount)
	s.mu.Lock()
	var late bool
	for ch := range s.mu.tx {
		if u := s.mu.tx[ch].unacked; len(u) > 0 && now.Sub(u[0].at) > limit {
			late = true
		}
	}
	s.mu.Unlock()
	if late {
		s.Close(fmt.Errorf("the peer acknowledged nothing for %v (timeout × ko-count)", limit))
	}
}
