package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// recorder is a Handler that checks order and content of what it gets.
type recorder struct {
	mu       sync.Mutex
	sess     *Session
	next     [2]uint64 // next expected counter per channel
	got      [2]int
	bad      error
	ups      int
	downs    int
	upCh     chan *Session
	downCh   chan error
	blockDel chan struct{} // when set, Deliver waits on it
}

func newRecorder() *recorder {
	return &recorder{upCh: make(chan *Session, 16), downCh: make(chan error, 16)}
}

func (r *recorder) Up(s *Session) {
	r.mu.Lock()
	r.sess, r.next = s, [2]uint64{}
	r.ups++
	r.mu.Unlock()
	r.upCh <- s
}

func (r *recorder) Deliver(s *Session, ch Channel, typ uint8, meta, data []byte) {
	r.mu.Lock()
	block := r.blockDel
	r.mu.Unlock()
	if block != nil {
		<-block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := binary.LittleEndian.Uint64(meta)
	if n != r.next[ch] && r.bad == nil {
		r.bad = fmt.Errorf("channel %d: got message %d, want %d", ch, n, r.next[ch])
	}
	r.next[ch] = n + 1
	if !bytes.Equal(data, payload(n, len(data))) && r.bad == nil {
		r.bad = fmt.Errorf("channel %d: message %d: corrupt data", ch, n)
	}
	r.got[ch]++
}

func (r *recorder) Down(s *Session, err error) {
	r.mu.Lock()
	r.downs++
	r.mu.Unlock()
	r.downCh <- err
}

func payload(n uint64, size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(n*31 + uint64(i))
	}
	return p
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// pair starts a dialing and an accepting Link over paths loopback paths.
func pair(t *testing.T, paths int, mod func(a, b *Config)) (*Link, *Link, *recorder, *recorder) {
	var pa, pb []Path
	for range paths {
		la, lb := freeAddr(t), freeAddr(t)
		pa = append(pa, Path{Local: la, Remote: lb})
		pb = append(pb, Path{Local: lb, Remote: la})
	}
	ca := Config{Resource: "r0", LocalNode: "alpha", PeerNode: "beta", Paths: pa, Dial: true, Secret: []byte("s3cret-s3cret"),
		ReconnectInterval: 20 * time.Millisecond, PingInterval: 100 * time.Millisecond, Timeout: time.Second}
	cb := Config{Resource: "r0", LocalNode: "beta", PeerNode: "alpha", Paths: pb, Secret: []byte("s3cret-s3cret"),
		ReconnectInterval: 20 * time.Millisecond, PingInterval: 100 * time.Millisecond, Timeout: time.Second}
	if mod != nil {
		mod(&ca, &cb)
	}
	ra, rb := newRecorder(), newRecorder()
	a, err := New(ca, ra)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cb, rb)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.Run(ctx) }()
	go func() { defer wg.Done(); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return a, b, ra, rb
}

func waitUp(t *testing.T, r *recorder) *Session {
	t.Helper()
	select {
	case s := <-r.upCh:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("no session came up")
	}
	return nil
}

// waitConns waits until the link has all its connections.
func waitConns(t *testing.T, l *Link) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		st := l.Stats()
		ok := true
		for _, p := range st.Paths {
			if p.DataUp < p.DataConns || !p.ControlUp {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("connections did not all come up: %+v", l.Stats())
}

func send(t *testing.T, s *Session, ch Channel, n uint64, size int, done func(error)) error {
	var meta [8]byte
	binary.LittleEndian.PutUint64(meta[:], n)
	return s.Send(context.Background(), ch, Msg{Type: 1, Meta: meta[:], Data: payload(n, size), Done: done})
}

// waitGot waits until r received n messages on ch.
func waitGot(t *testing.T, r *recorder, ch Channel, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		got, bad := r.got[ch], r.bad
		r.mu.Unlock()
		if bad != nil {
			t.Fatal(bad)
		}
		if got >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("received %d of %d messages on channel %d", r.got[ch], n, ch)
}

// TestInOrderExactlyOnce: messages of random sizes on both channels, over
// two paths of two data connections each, arrive once, in order, intact;
// and every Done is called with nil.
func TestInOrderExactlyOnce(t *testing.T) {
	a, _, ra, rb := pair(t, 2, nil)
	s := waitUp(t, ra)
	waitUp(t, rb)
	waitConns(t, a)
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	var acked sync.WaitGroup
	acked.Add(2 * n)
	for i := range uint64(n) {
		for ch := range Channel(2) {
			size := rng.IntN(16 << 10)
			if err := send(t, s, ch, i, size, func(err error) {
				if err != nil {
					t.Error(err)
				}
				acked.Done()
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitGot(t, rb, Data, n)
	waitGot(t, rb, Control, n)
	acked.Wait()
	st := a.Stats()
	for i, p := range st.Paths {
		if p.BytesSent < 1<<20 {
			t.Errorf("path %d carried almost nothing: %+v", i, st)
		}
	}
}

// TestConnectionLossLosesNothing closes random connections while messages
// stream: nothing is lost, duplicated or reordered, and the connections
// come back and are used again.
func TestConnectionLossLosesNothing(t *testing.T) {
	a, _, ra, rb := pair(t, 2, nil)
	s := waitUp(t, ra)
	waitUp(t, rb)
	waitConns(t, a)
	const n = 30000
	stop := make(chan struct{})
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			s.mu.Lock()
			var cs []*conn
			for _, c := range s.mu.conns {
				if !c.isClosed() {
					cs = append(cs, c)
				}
			}
			// Keep at least one connection: losing all ends the session.
			if len(cs) > 1 {
				cs[rng.IntN(len(cs))].nc.Close()
			}
			s.mu.Unlock()
		}
	}()
	for i := range uint64(n) {
		if err := send(t, s, Data, i, int(i%5000), nil); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := send(t, s, Control, i/3, 16, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitGot(t, rb, Data, n)
	close(stop)
	killer.Wait()
	ra.mu.Lock()
	rb.mu.Lock()
	if rb.ups != 1 || ra.ups != 1 {
		t.Fatalf("sessions: %d/%d, want 1", ra.ups, rb.ups)
	}
	rb.mu.Unlock()
	ra.mu.Unlock()
	if a.Stats().Retransmits == 0 {
		t.Log("no retransmission happened (connections died idle)")
	}
	waitConns(t, a)
	before := a.Stats()
	for i := uint64(n); i < n+2000; i++ {
		send(t, s, Data, i, 4096, nil)
	}
	waitGot(t, rb, Data, n+2000)
	after := a.Stats()
	for i := range after.Paths {
		if after.Paths[i].BytesSent <= before.Paths[i].BytesSent {
			t.Errorf("path %d unused after its connections came back", i)
		}
	}
}

// TestSessionLoss: when every connection is gone the session ends,
// unacknowledged messages fail with ErrSessionLost, Down is called, and a
// new session follows.
func TestSessionLoss(t *testing.T) {
	_, b, ra, rb := pair(t, 1, nil)
	s := waitUp(t, ra)
	waitUp(t, rb)
	block := make(chan struct{})
	rb.mu.Lock()
	rb.blockDel = block // nothing is delivered, so nothing is acked
	rb.mu.Unlock()
	failed := make(chan error, 1)
	send(t, s, Data, 0, 100, func(err error) { failed <- err })
	time.Sleep(50 * time.Millisecond)
	bs := b.Session()
	bs.Close(errors.New("test"))
	close(block)
	if err := <-failed; !errors.Is(err, ErrSessionLost) {
		t.Fatalf("Done: %v, want ErrSessionLost", err)
	}
	select {
	case <-ra.downCh:
	case <-time.After(20 * time.Second):
		t.Fatal("no Down")
	}
	s2 := waitUp(t, ra)
	if s2.ID() == s.ID() {
		t.Fatal("the new session has the old ID")
	}
	if err := send(t, s, Data, 1, 1, nil); !errors.Is(err, ErrSessionLost) {
		t.Fatalf("Send on a dead session: %v", err)
	}
}

// TestWrongSecret: a peer with another secret never gets a session.
func TestWrongSecret(t *testing.T) {
	_, b, ra, _ := pair(t, 1, func(a, b *Config) { b.Secret = []byte("another-secret") })
	select {
	case <-ra.upCh:
		t.Fatal("a session came up with different secrets")
	case <-time.After(500 * time.Millisecond):
	}
	if b.Session() != nil {
		t.Fatal("acceptor has a session")
	}
}

// TestCRC: with CRC on, messages arrive intact (the corruption case is
// covered by FuzzFrame's decoder checks and the CRC unit test).
func TestCRC(t *testing.T) {
	a, _, ra, rb := pair(t, 1, func(a, b *Config) { a.CRC, b.CRC = true, true })
	s := waitUp(t, ra)
	waitUp(t, rb)
	waitConns(t, a)
	for i := range uint64(1000) {
		send(t, s, Data, i, 3000, nil)
	}
	waitGot(t, rb, Data, 1000)
}

func TestFrameCRCDetectsFlip(t *testing.T) {
	var hb [headerSize]byte
	h := header{typ: 1, seq: 7, metaLen: 3, dataLen: 5}
	h.encode(hb[:])
	meta, data := []byte("abc"), []byte("hello")
	c := frameCRC(hb[:], meta, data)
	data[2] ^= 1
	if frameCRC(hb[:], meta, data) == c {
		t.Fatal("CRC missed a flipped bit")
	}
}

func FuzzFrame(f *testing.F) {
	var hb [headerSize]byte
	(&header{typ: 1, seq: 1, metaLen: 8, dataLen: 4096}).encode(hb[:])
	f.Add(hb[:])
	(&header{typ: typeAck, ch: Control, seq: 9}).encode(hb[:])
	f.Add(hb[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			return
		}
		if h.metaLen > MaxMeta || h.dataLen > MaxData || h.ch > Control {
			t.Fatalf("accepted %+v", h)
		}
	})
}

func FuzzHello(f *testing.F) {
	h := hello{version: protoVersion, session: 5, resource: "r0", from: "a", to: "b"}
	f.Add(h.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := readHello(bytes.NewReader(b))
		if err != nil {
			return
		}
		if got.session == 0 || got.version != protoVersion {
			t.Fatalf("accepted %+v", got)
		}
	})
}

// TestKoCount: a peer that stops consuming (its handler blocks) is given
// timeout × ko-count, then the session ends on the sender's side, so a
// slow peer cannot freeze the sender forever.
func TestKoCount(t *testing.T) {
	_, _, ra, rb := pair(t, 1, func(a, b *Config) {
		a.Timeout, a.KoCount = 200*time.Millisecond, 2
	})
	s := waitUp(t, ra)
	waitUp(t, rb)
	block := make(chan struct{})
	defer close(block)
	rb.mu.Lock()
	rb.blockDel = block
	rb.mu.Unlock()
	failed := make(chan error, 1)
	send(t, s, Data, 0, 100, func(err error) { failed <- err })
	select {
	case err := <-failed:
		if !errors.Is(err, ErrSessionLost) {
			t.Fatalf("Done: %v, want ErrSessionLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the session outlived timeout × ko-count")
	}
}
