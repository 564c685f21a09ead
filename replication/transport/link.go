package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Path is one replication path: this node's address and the peer's, as
// "ip:port". The acceptor listens on Local; the dialer dials Remote from
// Local's IP.
type Path struct{ Local, Remote string }

// Channel selects a message's ordering domain and connection kind.
type Channel uint8

// Channels.
const (
	// Data carries writes and resync: striped over the data connections.
	Data Channel = 0
	// Control carries acks and state changes: on the control connections.
	Control Channel = 1
)

// Config configures a Link.
type Config struct {
	// Resource, LocalNode and PeerNode are checked in the handshake.
	Resource, LocalNode, PeerNode string
	// Paths are the address pairs; at least one.
	Paths []Path
	// ConnsPerPath is the number of data connections per path (default 2);
	// each path also has one control connection.
	ConnsPerPath int
	// Dial: this node dials every connection; the peer accepts. Exactly
	// one of the two nodes dials.
	Dial bool
	// Secret is the shared secret of the HMAC-SHA256 challenge-response.
	Secret []byte
	// TLS, when set, wraps every connection; the handshake runs inside.
	// The dialer verifies the peer's certificate for the name PeerNode.
	TLS *tls.Config
	// CRC adds a CRC32C of every frame.
	CRC bool
	// PingInterval is how often each connection is pinged (default 1s);
	// Timeout how long after that an unanswered connection is closed
	// (default 6s).
	PingInterval, Timeout time.Duration
	// KoCount: the session ends when a message has waited for its
	// acknowledgement longer than Timeout × KoCount; 0 turns this off.
	KoCount int
	// ReconnectInterval is how often lost connections are re-dialled
	// (default 1s).
	ReconnectInterval time.Duration
	// Window bounds the bytes of unacknowledged Data messages; Send
	// waits beyond it (default 64 MiB).
	Window int64
	// Alloc allocates received message data (default make); Free takes
	// back data the transport drops (duplicates, or undelivered when a
	// session ends). Both may be nil.
	Alloc func(n int) []byte
	Free  func([]byte)
	// Logger receives connection and session events.
	Logger *slog.Logger
}

// Msg is a message to send.
type Msg struct {
	// Type is the caller's message type, 0..MaxUserType.
	Type uint8
	// Meta is a small header (at most MaxMeta bytes); Send copies it.
	Meta []byte
	// Data is the payload (at most MaxData bytes). The transport owns it
	// from Send until Done is called.
	Data []byte
	// Done, if set, is called exactly once when the transport no longer
	// references Data: with nil once the peer acknowledged the message,
	// or an error wrapping ErrSessionLost. It must not block.
	Done func(error)
}

// Handler receives a Link's sessions and messages.
type Handler interface {
	// Up: a new session started.
	Up(s *Session)
	// Deliver: the next message of channel ch, in send order, exactly
	// once. data (from Config.Alloc) now belongs to the handler; meta is
	// valid only during the call.
	Deliver(s *Session, ch Channel, typ uint8, meta, data []byte)
	// Down: the session ended. No Deliver for s follows.
	Down(s *Session, err error)
}

// Stats are a Link's counters.
type Stats struct {
	Paths []PathStats
	// Sessions is the number of sessions started; Retransmits the
	// messages re-sent after their connection died.
	Sessions, Retransmits uint64
}

// PathStats describe one path.
type PathStats struct {
	Local, Remote string
	// DataConns is the number of data connections configured, DataUp
	// how many are up; ControlUp whether the control connection is.
	DataConns, DataUp int
	ControlUp         bool
	// BytesSent and BytesReceived count frame bytes on this path.
	BytesSent, BytesReceived int64
}

// Link maintains the connections of one resource to its peer.
type Link struct {
	cfg Config
	h   Handler
	log *slog.Logger

	mu struct {
		sync.Mutex
		sess *Session
		// ended are the IDs of recent sessions that ended here: a
		// connection still carrying one is refused, so that both sides
		// agree the session is over and the dialer starts a new one.
		ended [16]uint64
		next  int
	}
	sessions, retransmits atomic.Uint64
	sent, recv            []atomic.Int64 // per path
	wg                    sync.WaitGroup
}

// New validates cfg and returns a Link; Run starts it.
func New(cfg Config, h Handler) (*Link, error) {
	if len(cfg.Paths) == 0 {
		return nil, fmt.Errorf("%w: no paths", ErrConfig)
	}
	if len(cfg.Secret) == 0 {
		return nil, fmt.Errorf("%w: empty secret", ErrConfig)
	}
	if len(cfg.Resource) > maxName || len(cfg.LocalNode) > maxName || len(cfg.PeerNode) > maxName {
		return nil, fmt.Errorf("%w: names longer than %d bytes", ErrConfig, maxName)
	}
	for i, p := range cfg.Paths {
		if _, _, err := net.SplitHostPort(p.Local); err != nil {
			return nil, fmt.Errorf("%w: paths[%d].local %q: %w", ErrConfig, i, p.Local, err)
		}
		if _, _, err := net.SplitHostPort(p.Remote); err != nil {
			return nil, fmt.Errorf("%w: paths[%d].remote %q: %w", ErrConfig, i, p.Remote, err)
		}
	}
	if cfg.ConnsPerPath <= 0 {
		cfg.ConnsPerPath = 2
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 6 * time.Second
	}
	if cfg.ReconnectInterval <= 0 {
		cfg.ReconnectInterval = time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 64 << 20
	}
	if cfg.Alloc == nil {
		cfg.Alloc = func(n int) []byte { return make([]byte, n) }
	}
	if cfg.Free == nil {
		cfg.Free = func([]byte) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Link{cfg: cfg, h: h, log: cfg.Logger, sent: make([]atomic.Int64, len(cfg.Paths)), recv: make([]atomic.Int64, len(cfg.Paths))}
	return l, nil
}

// Run keeps the connections up until ctx ends, then ends the session and
// returns once every goroutine has stopped.
func (l *Link) Run(ctx context.Context) error {
	var lns []net.Listener
	if !l.cfg.Dial {
		for i, p := range l.cfg.Paths {
			ln, err := net.Listen("tcp", p.Local)
			if err != nil {
				for _, x := range lns {
					x.Close()
				}
				return fmt.Errorf("replication path %d: listen on %s: %w", i, p.Local, err)
			}
			lns = append(lns, ln)
		}
		for i, ln := range lns {
			l.wg.Add(1)
			go func() { defer l.wg.Done(); l.acceptLoop(ctx, ln, i) }()
		}
	} else {
		for i := range l.cfg.Paths {
			for k := 0; k <= l.cfg.ConnsPerPath; k++ {
				kind := kindData
				if k == l.cfg.ConnsPerPath {
					kind = kindControl
				}
				l.wg.Add(1)
				go func() { defer l.wg.Done(); l.dialLoop(ctx, i, kind) }()
			}
		}
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	l.mu.Lock()
	s := l.mu.sess
	l.mu.Unlock()
	if s != nil {
		s.Close(fmt.Errorf("%w: shutting down", ErrSessionLost))
	}
	l.wg.Wait()
	if s != nil {
		<-s.downDone
	}
	return nil
}

// Session returns the current session, or nil.
func (l *Link) Session() *Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.mu.sess; s != nil && !s.isDead() {
		return s
	}
	return nil
}

// Stats returns the counters.
func (l *Link) Stats() Stats {
	st := Stats{Sessions: l.sessions.Load(), Retransmits: l.retransmits.Load()}
	for i, p := range l.cfg.Paths {
		st.Paths = append(st.Paths, PathStats{Local: p.Local, Remote: p.Remote, DataConns: l.cfg.ConnsPerPath,
			BytesSent: l.sent[i].Load(), BytesReceived: l.recv[i].Load()})
	}
	if s := l.Session(); s != nil {
		s.mu.Lock()
		for _, c := range s.mu.conns {
			if c.kind == kindData {
				st.Paths[c.path].DataUp++
			} else {
				st.Paths[c.path].ControlUp = true
			}
		}
		s.mu.Unlock()
	}
	return st
}

// sessionEnded records that session id ended.
func (l *Link) sessionEnded(id uint64) {
	l.mu.Lock()
	l.mu.ended[l.mu.next%len(l.mu.ended)] = id
	l.mu.next++
	l.mu.Unlock()
}

func randomID() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// dialSession returns the live session to join, or a new one.
func (l *Link) dialSession() *Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.mu.sess; s != nil && !s.isDead() {
		return s
	}
	s := newSession(l, randomID(), l.mu.sess)
	l.mu.sess = s
	return s
}

// acceptSession returns the session with id, ending another live one, or
// nil when id is a session that already ended here.
func (l *Link) acceptSession(id uint64) *Session {
	l.mu.Lock()
	old := l.mu.sess
	if old != nil && old.id == id && !old.isDead() {
		l.mu.Unlock()
		return old
	}
	if old != nil && old.id == id {
		l.mu.Unlock()
		return nil // it ended (or is ending) here
	}
	for _, e := range l.mu.ended {
		if e == id {
			l.mu.Unlock()
			return nil
		}
	}
	s := newSession(l, id, old)
	l.mu.sess = s
	l.mu.Unlock()
	if old != nil {
		old.Close(fmt.Errorf("%w: the peer started a new session", ErrSessionLost))
	}
	return s
}

func (l *Link) dialLoop(ctx context.Context, path int, kind connKind) {
	p := l.cfg.Paths[path]
	host, _, _ := net.SplitHostPort(p.Local)
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}}
	var lastErr string
	for ctx.Err() == nil {
		s := l.dialSession()
		nc, err := d.DialContext(ctx, "tcp", p.Remote)
		if err == nil {
			if l.cfg.TLS != nil {
				tc := l.cfg.TLS.Clone()
				if tc.ServerName == "" {
					tc.ServerName = l.cfg.PeerNode
				}
				nc = tls.Client(nc, tc)
			}
			if err = dialHandshake(nc, &l.cfg, kind, path, s.id); err != nil {
				nc.Close()
			}
		}
		if err == nil {
			lastErr = ""
			l.serve(s, nc, path, kind)
			continue // a connection that worked is re-dialled at once
		} else if ctx.Err() == nil && err.Error() != lastErr {
			lastErr = err.Error()
			lvl := slog.LevelDebug
			if errors.Is(err, ErrAuth) || errors.Is(err, ErrProtocol) {
				lvl = slog.LevelWarn
			}
			l.log.Log(ctx, lvl, "replication connection failed", "path", path, "remote", p.Remote, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(l.cfg.ReconnectInterval):
		}
	}
}

func (l *Link) acceptLoop(ctx context.Context, ln net.Listener, path int) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				l.log.Error("replication listener failed", "path", path, "err", err)
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.cfg.TLS != nil {
				nc = tls.Server(nc, l.cfg.TLS)
			}
			h, err := acceptHandshake(nc, &l.cfg)
			if err != nil {
				nc.Close()
				l.log.Warn("refused a replication connection", "path", path, "from", nc.RemoteAddr().String(), "err", err)
				return
			}
			s := l.acceptSession(h.session)
			if ctx.Err() != nil || s == nil {
				nc.Close()
				return
			}
			l.serve(s, nc, path, h.kind)
		}()
	}
}

// serve runs one authenticated connection until it dies.
func (l *Link) serve(s *Session, nc net.Conn, path int, kind connKind) {
	c := newConn(s, nc, path, kind)
	if !s.attach(c) {
		nc.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.writeLoop() }()
	go func() { defer wg.Done(); c.pingLoop() }()
	err := c.readLoop()
	c.close(err)
	s.detach(c, err)
	wg.Wait()
}
