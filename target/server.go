package target

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"hastor/blockdev"
	"hastor/target/login"
	"hastor/target/scsi"
)

// Auth holds the CHAP credentials a login must present. A nil CHAP means no
// authentication; Mutual requires CHAP.
type Auth struct {
	CHAP   *login.Secret
	Mutual *login.Secret
}

func (a Auth) required() bool { return a.CHAP != nil }

// ACL decides which initiators may log in to a target. config.ACL implements
// it.
type ACL interface {
	Permits(initiatorName string, addr netip.Addr) bool
}

// Target is one iSCSI target: a name, its authentication and access rules,
// and the SCSI target device behind it.
type Target struct {
	Name  string
	Alias string
	Auth  Auth
	ACL   ACL // nil permits everyone
	SCSI  *scsi.Target
}

func (t *Target) permits(name string, addr netip.Addr) bool {
	return t.ACL == nil || t.ACL.Permits(name, addr)
}

// Options configure a Server. Zero durations disable the feature they time.
type Options struct {
	Targets []*Target
	// Portals are the listen addresses (host:port) advertised by
	// SendTargets; a wildcard host is replaced by the address the initiator
	// reached.
	Portals []string
	// Discovery is the CHAP required for discovery sessions.
	Discovery Auth
	// Limits are the operational parameters the target offers.
	Limits login.Limits
	// QueueDepth is the CmdSN window: commands in flight per session.
	QueueDepth int
	// NopInInterval is the idle time after which the target pings the
	// initiator; NopInTimeout how long it waits for the answer before it
	// drops the connection.
	NopInInterval time.Duration
	NopInTimeout  time.Duration
	// LoginTimeout bounds the whole login phase of a connection.
	LoginTimeout time.Duration
	// MaxTransferBytes bounds the data buffer of one command.
	MaxTransferBytes int
	Pool             *blockdev.Pool
	Logger           *slog.Logger
}

// Server is an iSCSI target server.
type Server struct {
	opts    Options
	log     *slog.Logger
	targets map[string]*Target

	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		conns     map[*conn]struct{}
		sessions  map[uint16]*session // by TSIH
		nextTSIH  uint16
		closed    bool
	}
	wg sync.WaitGroup // connection goroutines
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("target: server closed")

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Pool == nil {
		opts.Pool = blockdev.NewPool()
	}
	if opts.QueueDepth <= 0 {
		opts.QueueDepth = 128
	}
	if opts.LoginTimeout == 0 {
		opts.LoginTimeout = 30 * time.Second
	}
	if opts.MaxTransferBytes == 0 {
		opts.MaxTransferBytes = 8 << 20
	}
	if opts.Limits.MaxRecvDataSegmentLength == 0 {
		opts.Limits = DefaultLimits()
	}
	s := &Server{opts: opts, log: opts.Logger, targets: make(map[string]*Target)}
	for _, t := range opts.Targets {
		if _, dup := s.targets[t.Name]; dup {
			return nil, fmt.Errorf("target: duplicate target name %q", t.Name)
		}
		s.targets[t.Name] = t
	}
	s.mu.listeners = make(map[net.Listener]struct{})
	s.mu.conns = make(map[*conn]struct{})
	s.mu.sessions = make(map[uint16]*session)
	return s, nil
}

// DefaultLimits are the negotiation limits used when Options.Limits is zero.
func DefaultLimits() login.Limits {
	return login.Limits{
		MaxRecvDataSegmentLength: 262144,
		MaxBurstLength:           1048576,
		FirstBurstLength:         65536,
		MaxOutstandingR2T:        8,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       20,
		ImmediateData:            true,
		InitialR2T:               false,
		HeaderDigests:            []string{login.DigestNone, login.DigestCRC32C},
		DataDigests:              []string{login.DigestNone, login.DigestCRC32C},
	}
}

// Serve accepts connections on ln until ctx ends or Shutdown is called.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.mu.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.mu.closed
			s.mu.Unlock()
			if closed || ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("target: accept: %w", err)
		}
		backoff = 0
		c := newConn(ctx, s, nc)
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.mu.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown closes all listeners and connections and waits for connection
// goroutines to finish or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.closed = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	for c := range s.mu.conns {
		c.close(errShutdown)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errShutdown = errors.New("target: server shutting down")

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// bindSession attaches c to a session at the end of login. For a new
// session (tsih 0) it reinstates any session with the same initiator port
// and target (RFC 7143 §6.3.5); for a known TSIH it performs connection
// reinstatement. It returns a login status on failure.
func (s *Server) bindSession(c *conn, st *loginState) (*session, uint16) {
	s.mu.Lock()
	var old *session
	var sess *session
	if st.tsih == 0 {
		for _, o := range s.mu.sessions {
			if o.initiator == st.initiatorName && o.isid == st.isid && o.tgt == st.target && o.discovery == st.discovery {
				old = o
				delete(s.mu.sessions, o.tsih)
				break
			}
		}
		tsih := s.allocTSIHLocked()
		if tsih == 0 {
			s.mu.Unlock()
			return nil, 0x0302 // out of resources
		}
		sess = newSession(s, st.target, st.discovery, st.initiatorName, st.isid, tsih, st.cmdSN)
		s.mu.sessions[tsih] = sess
	} else {
		sess = s.mu.sessions[st.tsih]
		if sess == nil || sess.initiator != st.initiatorName || sess.isid != st.isid || sess.tgt != st.target {
			s.mu.Unlock()
			return nil, 0x020a // session does not exist
		}
	}
	s.mu.Unlock()

	if old != nil {
		s.log.Info("session reinstatement", "initiator", old.initiator, "tsih", old.tsih)
		old.terminate(errReinstated)
	}
	sess.mu.Lock()
	prev := sess.mu.conn
	if prev != nil && prev.cid != st.cid {
		sess.mu.Unlock()
		return nil, 0x0206 // too many connections
	}
	sess.mu.conn = c
	sess.mu.Unlock()
	if prev != nil {
		s.log.Info("connection reinstatement", "initiator", sess.initiator, "tsih", sess.tsih, "cid", st.cid)
		prev.close(errReinstated)
		prev.waitTasks()
	}
	if sess.tgt != nil && st.tsih == 0 {
		sess.tgt.SCSI.Attach(sess.nexus)
	}
	return sess, 0
}

var errReinstated = errors.New("target: reinstated by a new login")

func (s *Server) allocTSIHLocked() uint16 {
	for i := 0; i < 65535; i++ {
		s.mu.nextTSIH++
		if s.mu.nextTSIH == 0 {
			s.mu.nextTSIH = 1
		}
		if _, used := s.mu.sessions[s.mu.nextTSIH]; !used {
			return s.mu.nextTSIH
		}
	}
	return 0
}

// dropSession forgets a session whose last connection ended (ERL 0: no
// connection recovery, so the session ends with its connection).
func (s *Server) dropSession(sess *session) {
	s.mu.Lock()
	if s.mu.sessions[sess.tsih] == sess {
		delete(s.mu.sessions, sess.tsih)
	}
	s.mu.Unlock()
}

// sessionsOf returns the live sessions of target t.
func (s *Server) sessionsOf(t *Target) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for _, sess := range s.mu.sessions {
		if sess.tgt == t {
			out = append(out, sess)
		}
	}
	return out
}

func (s *Server) newChallengeSource() *login.CHAP {
	return &login.CHAP{Rand: rand.Reader}
}
