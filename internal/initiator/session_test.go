package initiator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"hastor/internal/hastordtest"
	"hastor/target/pdu"
)

const (
	testIQN = "iqn.2026-11.dev.hastor:initiator-test"
	testIni = "iqn.2026-11.dev.hastor:go-initiator"
)

func config(path, extraTarget, iscsi string) string {
	return `state_dir: {{STATE}}
portals: ["127.0.0.1:{{PORT}}"]
iscsi:
  nop_in_interval: 0s
` + iscsi + `targets:
  - iqn: ` + testIQN + `
` + extraTarget + `    luns:
      - lun: 0
        volume_id: initiator-test-lun0
        path: ` + path + `
        size: 16MiB
`
}

func start(t *testing.T, extraTarget, iscsi string) *hastordtest.Daemon {
	t.Helper()
	img := filepath.Join(hastordtest.DiskDir(t), "lun0.img")
	return hastordtest.Start(t, hastordtest.Options{Config: config(img, extraTarget, iscsi)})
}

func connect(t *testing.T, ctx context.Context, addr string, o Options) *Session {
	t.Helper()
	s, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if o.InitiatorName == "" {
		o.InitiatorName = testIni
	}
	if o.TargetName == "" {
		o.TargetName = testIQN
	}
	if err := s.Login(ctx, o); err != nil {
		t.Fatalf("login: %v", err)
	}
	return s
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>9)
	}
	return b
}

func TestSessionIO(t *testing.T) {
	d := start(t, "", "")
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"immediate", Options{}},
		{"initial-r2t", Options{InitialR2T: true, NoImmediateData: true, MaxRecvDataSegmentLength: 8192}},
		{"small-bursts", Options{FirstBurstLength: 4096, MaxBurstLength: 16384, MaxRecvDataSegmentLength: 4096}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s := connect(t, ctx, d.Addr, tc.o)
			if err := s.WaitReady(ctx, 0); err != nil {
				t.Fatalf("WaitReady: %v", err)
			}
			c, err := s.ReadCapacity16(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			if c.BlockSize != 512 || c.Blocks != 16<<20/512 {
				t.Fatalf("capacity %+v", c)
			}
			// Sizes around the immediate-data, first-burst and R2T limits.
			for i, n := range []int{512, 4096, 65536, 65536 + 512, 1 << 20} {
				want := pattern(n, byte(i)+byte(len(tc.name)))
				lba := LBA(i * 4096)
				if err := s.Write16(ctx, 0, lba, want, 512, i%2 == 0); err != nil {
					t.Fatalf("write %d bytes: %v", n, err)
				}
				got, err := s.Read16(ctx, 0, lba, uint32(n/512), 512)
				if err != nil {
					t.Fatalf("read %d bytes: %v", n, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("read back %d bytes differ", n)
				}
			}
			if err := s.SynchronizeCache(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}
			if err := s.Logout(ctx); err != nil {
				t.Fatalf("logout: %v", err)
			}
			if _, err := s.Do(ctx, 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0); !errors.Is(err, ErrClosed) {
				t.Fatalf("command after logout: %v, want ErrClosed", err)
			}
		})
	}
	d.CheckLog(t)
}

// TestManyInFlight runs more concurrent commands than the target's CmdSN
// window (queue_depth 16) so that the window must be respected.
func TestManyInFlight(t *testing.T) {
	d := start(t, "", "  queue_depth: 16\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := connect(t, ctx, d.Addr, Options{})
	if err := s.WaitReady(ctx, 0); err != nil {
		t.Fatal(err)
	}
	const workers, perWorker = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				lba := LBA(w*64 + i%8*8)
				want := pattern(4096, byte(w^i))
				if err := s.Write16(ctx, 0, lba, want, 512, false); err != nil {
					errs <- fmt.Errorf("worker %d write: %w", w, err)
					return
				}
				got, err := s.Read16(ctx, 0, lba, 8, 512)
				if err != nil {
					errs <- fmt.Errorf("worker %d read: %w", w, err)
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("worker %d: data differ at LBA %d", w, lba)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	d.CheckLog(t)
}

// TestNOPInAnswered: with target pings every second, an idle session
// survives because the reader answers each NOP-In.
func TestNOPInAnswered(t *testing.T) {
	cfg := config(filepath.Join(hastordtest.DiskDir(t), "lun0.img"), "", "")
	cfg = bytesReplace(cfg, "nop_in_interval: 0s", "nop_in_interval: 1s\n  nop_in_timeout: 1s")
	d := hastordtest.Start(t, hastordtest.Options{Config: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := connect(t, ctx, d.Addr, Options{})
	if err := s.WaitReady(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// Idle for several ping intervals; a missing answer would make the
	// target drop the connection after nop_in_timeout.
	time.Sleep(3500 * time.Millisecond)
	if err := s.TestUnitReady(ctx, 0); err != nil {
		t.Fatalf("after idle pings: %v\n%s", err, d.Log())
	}
	if err := s.Logout(ctx); err != nil {
		t.Fatal(err)
	}
}

func bytesReplace(s, old, new string) string {
	return string(bytes.Replace([]byte(s), []byte(old), []byte(new), 1))
}

func TestCHAP(t *testing.T) {
	d := start(t, "    auth:\n      chap: {username: alice, secret: alice-secret-123}\n", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := connect(t, ctx, d.Addr, Options{CHAPUser: "alice", CHAPSecret: "alice-secret-123"})
	if err := s.WaitReady(ctx, 0); err != nil {
		t.Fatal(err)
	}
	s.Logout(ctx)

	bad, err := Dial(ctx, d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.Login(ctx, Options{InitiatorName: testIni, TargetName: testIQN, CHAPUser: "alice", CHAPSecret: "wrong-secret-0000"})
	var le *LoginError
	if !errors.Is(err, ErrLogin) || !errors.As(err, &le) || le.Status != pdu.LoginAuthFailed {
		t.Fatalf("bad secret: %v, want login status %#x", err, pdu.LoginAuthFailed)
	}
	if _, err := bad.Do(ctx, 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0); err == nil {
		t.Fatal("command after failed login succeeded")
	}
}

// TestConnectionLossFailsOutstanding: kill -9 the target with commands in
// flight; every one of them must fail with ErrConnLost, none may hang.
func TestConnectionLossFailsOutstanding(t *testing.T) {
	d := start(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := connect(t, ctx, d.Addr, Options{})
	if err := s.WaitReady(ctx, 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, lost int
	var other []error
	started := make(chan struct{}, 16)
	for w := range 16 {
		wg.Go(func() {
			data := pattern(64<<10, byte(w))
			for {
				err := s.Write16(ctx, 0, LBA(w*128), data, 512, false)
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrConnLost):
					lost++
				default:
					other = append(other, err)
				}
				mu.Unlock()
				select {
				case started <- struct{}{}:
				default:
				}
				if err != nil {
					return
				}
			}
		})
	}
	for range 16 {
		<-started
	}
	d.Kill()
	wg.Wait()
	<-s.Done()
	if lost == 0 || len(other) > 0 {
		t.Fatalf("after kill: %d ok, %d lost, other errors %v", ok, lost, other)
	}
	if !errors.Is(s.Err(), ErrConnLost) {
		t.Fatalf("session error %v", s.Err())
	}
	t.Logf("%d writes acknowledged, %d failed with the connection", ok, lost)
}

// TestBadTargetInput feeds the initiator a target that answers the login
// and then sends garbage: the session must fail with an error, not panic
// or hang.
func TestBadTargetInput(t *testing.T) {
	for i, tc := range []struct {
		junk []byte
		want error
	}{
		{append(dataInHeader(1, 0, 1<<20), make([]byte, 64)...), ErrProtocol}, // beyond the buffer
		{dataInHeader(77, 0, 0), ErrProtocol},                                 // unknown ITT
		{r2tHeader(99), ErrProtocol},                                          // unknown ITT
		{append([]byte{0x3e, 0x80}, make([]byte, 46)...), ErrProtocol},        // bad opcode
		{bytes.Repeat([]byte{0xff}, 48), ErrProtocol},                         // huge segment
		{[]byte{0x21}, ErrConnLost},                                           // truncated, then EOF
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			addr := fakeTarget(t, tc.junk)
			s := connect(t, ctx, addr, Options{})
			_, err := s.Do(ctx, 0, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 512)
			if err == nil || ctx.Err() != nil {
				t.Fatalf("err %v (ctx %v)", err, ctx.Err())
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v: want %v", err, tc.want)
			}
		})
	}
}

func dataInHeader(itt, off uint32, n int) []byte {
	var h pdu.Header
	pdu.BuildDataIn(&h, 0, itt, 0, 0, 0, off, 0, n)
	h.SetSN(0, 2, 10)
	return h[:]
}

func r2tHeader(itt uint32) []byte {
	var h pdu.Header
	pdu.BuildR2T(&h, 0, itt, 1, 0, 0, 512)
	h.SetSN(0, 2, 10)
	return h[:]
}

// fakeTarget accepts one connection, answers the security and operational
// login requests with success, waits for one command and sends junk.
func fakeTarget(t *testing.T, junk []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		read := func() (pdu.Header, bool) {
			var h pdu.Header
			if _, err := ioReadFullConn(c, h[:]); err != nil {
				return h, false
			}
			n := h.DataSegmentLength()
			buf := make([]byte, n+pdu.Pad(n))
			if _, err := ioReadFullConn(c, buf); err != nil {
				return h, false
			}
			return h, true
		}
		for stage := range 2 {
			h, ok := read()
			if !ok {
				return
			}
			var r pdu.Header
			nsg := []int{pdu.StageOperational, pdu.StageFullFeature}[stage]
			pdu.BuildLoginResponse(&r, true, stage, nsg, h.ISID(), 1, h.ITT(), 0)
			r.SetSN(uint32(stage), 1, 10)
			c.Write(r[:])
		}
		if _, ok := read(); !ok {
			return
		}
		c.Write(junk)
	})
	return ln.Addr().String()
}

func ioReadFullConn(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
