package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// frame is one frame waiting to be written: a message, or a transport
// frame (ack, ping, pong) when msg is nil.
type frame struct {
	msg *outMsg
	typ uint8
	ch  Channel
	seq uint64
}

func (f *frame) size() int64 {
	if f.msg != nil {
		return f.msg.size()
	}
	return headerSize
}

// conn is one authenticated TCP connection of a session.
type conn struct {
	s    *Session
	nc   net.Conn
	path int
	kind connKind

	queued   atomic.Int64 // bytes handed to the writer, not yet written
	lastRecv atomic.Int64 // unix nanoseconds
	closed   atomic.Bool
	done     chan struct{}

	mu struct {
		sync.Mutex
		q    []frame
		wake chan struct{}
	}
	once sync.Once
	wbuf net.Buffers // the writer's: WriteTo consumes it, and here it costs no allocation
}

func newConn(s *Session, nc net.Conn, path int, kind connKind) *conn {
	c := &conn{s: s, nc: nc, path: path, kind: kind, done: make(chan struct{})}
	c.mu.wake = make(chan struct{}, 1)
	c.lastRecv.Store(time.Now().UnixNano())
	return c
}

func (c *conn) isClosed() bool { return c.closed.Load() }

// close closes the connection once; the writer and pinger stop.
func (c *conn) close(error) {
	c.once.Do(func() {
		c.closed.Store(true)
		c.nc.Close()
		close(c.done)
	})
}

// enqueue hands a frame to the writer.
func (c *conn) enqueue(f frame) {
	c.queued.Add(f.size())
	c.mu.Lock()
	c.mu.q = append(c.mu.q, f)
	c.mu.Unlock()
	select {
	case c.mu.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes queued frames, several per writev.
func (c *conn) writeLoop() {
	crc := c.s.l.cfg.CRC
	var q []frame
	var bufs net.Buffers
	ctl := make([][headerSize]byte, 0, 64)
	for {
		select {
		case <-c.done:
			return
		case <-c.mu.wake:
		}
		c.mu.Lock()
		q, c.mu.q = c.mu.q, q[:0]
		c.mu.Unlock()
		if len(q) == 0 {
			continue
		}
		bufs = bufs[:0]
		ctl = ctl[:0]
		var n int64
		for i := range q {
			f := &q[i]
			h := header{typ: f.typ, ch: f.ch, seq: f.seq}
			var meta, data []byte
			if m := f.msg; m != nil {
				h = header{typ: m.typ, ch: m.ch, seq: m.seq, metaLen: len(m.meta), dataLen: len(m.data)}
				meta, data = m.meta, m.data
			}
			// Headers are encoded into this writer's own buffer: a
			// message being re-sent may be in two writers at once.
			ctl = append(ctl, [headerSize]byte{})
			hb := ctl[len(ctl)-1][:]
			h.encode(hb)
			if crc {
				binary.LittleEndian.PutUint32(hb[24:], frameCRC(hb, meta, data))
			}
			bufs = append(bufs, hb)
			if len(meta) > 0 {
				bufs = append(bufs, meta)
			}
			if len(data) > 0 {
				bufs = append(bufs, data)
			}
			n += f.size()
		}
		// (A reallocation of ctl leaves the earlier headers in the old
		// array, which bufs still references: nothing to fix up.)
		c.wbuf = bufs
		_, err := c.wbuf.WriteTo(c.nc)
		c.queued.Add(-n)
		c.s.l.sent[c.path].Add(n)
		clear(q)
		if err != nil {
			c.close(err)
			return
		}
	}
}

// readLoop reads frames until the connection fails.
func (c *conn) readLoop() error {
	cfg := &c.s.l.cfg
	br := bufio.NewReaderSize(c.nc, 64<<10)
	var hb [headerSize]byte
	for {
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			return err
		}
		h, err := decodeHeader(hb[:])
		if err != nil {
			return err
		}
		var m *inMsg
		var meta, data []byte
		if h.typ <= MaxUserType {
			m = &inMsg{seq: h.seq, typ: h.typ}
			if h.metaLen <= len(m.inl) {
				meta = m.inl[:h.metaLen]
			} else {
				meta = make([]byte, h.metaLen)
			}
			if _, err := io.ReadFull(br, meta); err != nil {
				return err
			}
			m.meta = meta
		}
		if h.dataLen > 0 {
			data = cfg.Alloc(h.dataLen)
			if _, err := io.ReadFull(br, data); err != nil {
				cfg.Free(data)
				return err
			}
		}
		if cfg.CRC {
			want := h.crc
			binary.LittleEndian.PutUint32(hb[24:], 0)
			if got := frameCRC(hb[:], meta, data); got != want {
				cfg.Free(data)
				return fmt.Errorf("%w: CRC32C mismatch (frame type %d, seq %d)", ErrProtocol, h.typ, h.seq)
			}
		}
		c.lastRecv.Store(time.Now().UnixNano())
		c.s.l.recv[c.path].Add(int64(headerSize + h.metaLen + h.dataLen))
		switch h.typ {
		case typePing:
			c.enqueue(frame{typ: typePong})
		case typePong:
		case typeAck:
			c.s.acked(h.ch, h.seq)
		default:
			m.data = data
			if err := c.s.received(h.ch, m); err != nil {
				return err
			}
		}
	}
}

// pingLoop pings the peer and closes the connection when it stays silent
// for Timeout after a ping was due; it also checks the session's ko-count.
func (c *conn) pingLoop() {
	cfg := &c.s.l.cfg
	t := time.NewTicker(cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			if silent := now.Sub(time.Unix(0, c.lastRecv.Load())); silent > cfg.PingInterval+cfg.Timeout {
				c.close(fmt.Errorf("no answer for %v", silent.Round(time.Millisecond)))
				return
			}
			c.enqueue(frame{typ: typePing})
			c.s.checkKo(now)
			if c.kind == kindControl {
				c.s.mu.Lock()
				c.s.reackLocked()
				c.s.mu.Unlock()
			}
		}
	}
}
