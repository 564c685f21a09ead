package target

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"hastor/blockdev"
	"hastor/target/login"
	"hastor/target/pdu"
	"hastor/target/scsi"
)

const testIQN = "iqn.2026-11.dev.hastor:test"

type testServer struct {
	srv    *Server
	addr   string
	dev    *blockdev.Mem
	faulty *blockdev.Faulty
}

type serverOpt func(*Options, *Target)

func withAuth(a Auth) serverOpt          { return func(_ *Options, t *Target) { t.Auth = a } }
func withDiscoveryAuth(a Auth) serverOpt { return func(o *Options, _ *Target) { o.Discovery = a } }
func withACL(a ACL) serverOpt            { return func(_ *Options, t *Target) { t.ACL = a } }

func newTestServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	dev := blockdev.NewMem(64<<20, 512)
	faulty := blockdev.NewFaulty(dev)
	lu, err := scsi.NewLU(scsi.LUConfig{Dev: faulty, BlockSize: 512, VolumeID: "test-vol-0", WriteCache: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := scsi.NewTarget(testIQN, []*scsi.LU{lu})
	if err != nil {
		t.Fatal(err)
	}
	tg := &Target{Name: testIQN, Alias: "test", SCSI: st}
	o := Options{
		Targets:    []*Target{tg},
		Limits:     DefaultLimits(),
		QueueDepth: 32,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, f := range opts {
		f(&o, tg)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		sctx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer c2()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{srv: srv, addr: ln.Addr().String(), dev: dev, faulty: faulty}
}

func (ts *testServer) loggedIn(t testing.TB, keys login.Text) *ini {
	t.Helper()
	return ts.loggedInISID(t, keys, 1)
}

func (ts *testServer) loggedInISID(t testing.TB, keys login.Text, isid byte) *ini {
	t.Helper()
	i := dialIni(t, ts.addr)
	i.isid[5] = isid
	if st, err := i.login(loginOpts{initiator: "iqn.2026-11.dev.hastor:ini", target: testIQN, keys: keys}); err != nil || st != 0 {
		t.Fatalf("login: status %#x err %v", st, err)
	}
	return i
}

func read10(lba uint32, blocks uint16) []byte {
	c := make([]byte, 10)
	c[0] = 0x28
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

func write10(lba uint32, blocks uint16) []byte {
	c := read10(lba, blocks)
	c[0] = 0x2a
	return c
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// clearUA runs TEST UNIT READY until no unit attention is pending.
func clearUA(t testing.TB, i *ini) {
	t.Helper()
	for range 5 {
		r, err := i.command(0, []byte{0, 0, 0, 0, 0, 0}, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if r.status == 0 {
			return
		}
	}
}

func TestLoginWriteReadAcrossBurstsAndDigests(t *testing.T) {
	for _, digest := range []string{"None", "CRC32C"} {
		for _, initialR2T := range []string{"No", "Yes"} {
			t.Run(digest+"/InitialR2T="+initialR2T, func(t *testing.T) {
				ts := newTestServer(t)
				i := ts.loggedIn(t, login.Text{{Key: "HeaderDigest", Value: digest}, {Key: "DataDigest", Value: digest},
					{Key: "MaxRecvDataSegmentLength", Value: "8192"}, {Key: "InitialR2T", Value: initialR2T},
					{Key: "ImmediateData", Value: "Yes"}, {Key: "MaxBurstLength", Value: "65536"},
					{Key: "FirstBurstLength", Value: "16384"}, {Key: "MaxOutstandingR2T", Value: "2"}})
				if i.hd != (digest == "CRC32C") || i.dd != (digest == "CRC32C") {
					t.Fatalf("digests not negotiated: %v", i.params)
				}
				clearUA(t, i)
				// 300 KiB: immediate data, unsolicited Data-Out, then R2Ts of
				// MaxBurstLength, two outstanding at a time.
				data := pattern(600*512, 3)
				r, err := i.command(0, write10(100, 600), uint32(len(data)), data, false)
				if err != nil || r.status != 0 {
					t.Fatalf("write: %+v %v", r, err)
				}
				r, err = i.command(0, read10(100, 600), uint32(len(data)), nil, true)
				if err != nil || r.status != 0 {
					t.Fatalf("read: status %d %v", r.status, err)
				}
				if !bytes.Equal(r.data, data) {
					t.Fatal("read data differs from written data")
				}
			})
		}
	}
}

func TestResidualUnderflowAndOverflow(t *testing.T) {
	ts := newTestServer(t)
	i := ts.loggedIn(t, nil)
	clearUA(t, i)
	// INQUIRY with allocation length 255: fewer bytes come back (underflow).
	r, err := i.command(0, []byte{0x12, 0, 0, 0, 255, 0}, 255, nil, true)
	if err != nil || r.status != 0 {
		t.Fatalf("inquiry: %+v %v", r, err)
	}
	if r.flags&pdu.FlagUnderflow == 0 || int(r.residual) != 255-len(r.data) {
		t.Errorf("inquiry residual: flags %#x residual %d data %d", r.flags, r.residual, len(r.data))
	}
	// READ of 2 blocks with EDTL of 1 block (overflow, RFC 7143 §11.4.5.2).
	r, err = i.command(0, read10(0, 2), 512, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.flags&pdu.FlagOverflow == 0 || r.residual != 512 {
		t.Errorf("read overflow: flags %#x residual %d status %d", r.flags, r.residual, r.status)
	}
}

func TestManyCommandsInFlight(t *testing.T) {
	ts := newTestServer(t)
	i := ts.loggedIn(t, nil)
	clearUA(t, i)
	// Send 32 writes back to back, then collect the responses in any order.
	const n = 32
	itts := map[uint32]bool{}
	for k := range n {
		itt, _ := sendWriteData(t, i, uint32(k*8), pattern(4096, byte(k)))
		itts[itt] = true
	}
	var maxCmdSN uint32
	for range n {
		h, _ := i.mustRecv()
		if h.Opcode() != pdu.OpSCSIResp || h[3] != 0 || !itts[h.ITT()] {
			t.Fatalf("unexpected response %v status %d itt %d", h.Opcode(), h[3], h.ITT())
		}
		delete(itts, h.ITT())
		maxCmdSN = h.MaxCmdSN()
	}
	if snLess(maxCmdSN, i.cmdSN) {
		t.Errorf("window did not reopen: MaxCmdSN %d, next CmdSN %d", maxCmdSN, i.cmdSN)
	}
	for k := range n {
		r, err := i.command(0, read10(uint32(k*8), 8), 4096, nil, true)
		if err != nil || r.status != 0 || !bytes.Equal(r.data, pattern(4096, byte(k))) {
			t.Fatalf("read back %d: %v status %d", k, err, r.status)
		}
	}
}

func TestNOPOutPingAndCmdSN(t *testing.T) {
	ts := newTestServer(t)
	i := ts.loggedIn(t, nil)
	// A non-immediate NOP-Out consumes a CmdSN (RFC 7143 §11.18).
	var h pdu.Header
	h.SetOpcode(pdu.OpNOPOut, false)
	h.SetFlags(pdu.FlagFinal)
	h.SetITT(i.nextITT())
	h.SetTTT(pdu.ReservedTag)
	h.PutU32(24, i.cmdSN)
	i.cmdSN++
	if err := i.send(&h, []byte("ping-data")); err != nil {
		t.Fatal(err)
	}
	rh, data := i.mustRecv()
	if rh.Opcode() != pdu.OpNOPIn || string(data) != "ping-data" || rh.ExpCmdSN() != i.cmdSN {
		t.Fatalf("NOP-In %v data %q ExpCmdSN %d want %d", rh.Opcode(), data, rh.ExpCmdSN(), i.cmdSN)
	}
	// The next command with the next CmdSN is accepted.
	clearUA(t, i)
}

func TestDiscoverySendTargets(t *testing.T) {
	ts := newTestServer(t)
	i := dialIni(t, ts.addr)
	if st, err := i.login(loginOpts{initiator: "iqn.2026-11.dev.hastor:ini"}); err != nil || st != 0 {
		t.Fatalf("discovery login: %#x %v", st, err)
	}
	var h pdu.Header
	h.SetOpcode(pdu.OpTextReq, false)
	h.SetFlags(pdu.FlagFinal)
	h.SetITT(i.nextITT())
	h.SetTTT(pdu.ReservedTag)
	h.PutU32(24, i.cmdSN)
	i.send(&h, login.Text{{Key: "SendTargets", Value: "All"}}.Append(nil))
	rh, data := i.mustRecv()
	if rh.Opcode() != pdu.OpTextResp {
		t.Fatalf("got %v", rh.Opcode())
	}
	want := "TargetName=" + testIQN + "\x00TargetAddress=" + ts.addr + ",1\x00"
	if string(data) != want {
		t.Fatalf("SendTargets = %q, want %q", data, want)
	}
}

func TestCHAP(t *testing.T) {
	a := Auth{CHAP: &login.Secret{Name: "alice", Secret: "alice-secret-12"}, Mutual: &login.Secret{Name: "tgt", Secret: "target-secret-34"}}
	ts := newTestServer(t, withAuth(a), withDiscoveryAuth(Auth{CHAP: a.CHAP}))
	cases := []struct {
		name   string
		o      loginOpts
		status uint16
		fails  bool
	}{
		{"mutual", loginOpts{chapUser: "alice", chapPass: "alice-secret-12", mutualPass: "target-secret-34"}, 0, false},
		{"wrong secret", loginOpts{chapUser: "alice", chapPass: "wrong-secret-99"}, pdu.LoginAuthFailed, true},
		{"wrong user", loginOpts{chapUser: "bob", chapPass: "alice-secret-12"}, pdu.LoginAuthFailed, true},
		{"one-way only but mutual required", loginOpts{chapUser: "alice", chapPass: "alice-secret-12"}, pdu.LoginAuthFailed, true},
		{"no auth", loginOpts{}, pdu.LoginAuthFailed, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			i := dialIni(t, ts.addr)
			c.o.initiator = "iqn.2026-11.dev.hastor:ini"
			c.o.target = testIQN
			st, err := i.login(c.o)
			if !c.fails && (err != nil || st != 0) {
				t.Fatalf("login failed: %#x %v", st, err)
			}
			if c.fails && st != c.status {
				t.Fatalf("status %#x (err %v), want %#x", st, err, c.status)
			}
		})
	}
	t.Run("discovery one-way", func(t *testing.T) {
		i := dialIni(t, ts.addr)
		if st, err := i.login(loginOpts{initiator: "iqn.x:y", chapUser: "alice", chapPass: "alice-secret-12"}); err != nil || st != 0 {
			t.Fatalf("discovery CHAP: %#x %v", st, err)
		}
	})
}

type denyAll struct{}

func (denyAll) Permits(string, netip.Addr) bool { return false }

func TestACLDenied(t *testing.T) {
	ts := newTestServer(t, withACL(denyAll{}))
	i := dialIni(t, ts.addr)
	st, _ := i.login(loginOpts{initiator: "iqn.2026-11.dev.hastor:ini", target: testIQN})
	if st != pdu.LoginForbidden {
		t.Fatalf("status %#x, want %#x", st, pdu.LoginForbidden)
	}
	i = dialIni(t, ts.addr)
	st, _ = i.login(loginOpts{initiator: "iqn.2026-11.dev.hastor:ini", target: "iqn.2026-11.dev.hastor:nope"})
	if st != pdu.LoginTargetNotFound {
		t.Fatalf("unknown target status %#x", st)
	}
}

// Malformed input closes that connection only; other sessions go on.
func TestMalformedPDUsCloseOnlyThatConnection(t *testing.T) {
	ts := newTestServer(t)
	good := ts.loggedIn(t, nil)
	clearUA(t, good)
	bad := []func(i *ini){
		func(i *ini) { // data segment over MaxRecvDataSegmentLength
			var h pdu.Header
			h.SetOpcode(pdu.OpNOPOut, true)
			h.SetFlags(pdu.FlagFinal)
			h.SetITT(1)
			h.SetDataSegmentLength(1 << 23)
			i.nc.Write(h[:])
		},
		func(i *ini) { // Data-Out with a wrong offset for an R2T
			var h pdu.Header
			h.SetOpcode(pdu.OpSCSICmd, false)
			h.SetFlags(pdu.FlagFinal | pdu.FlagWrite | pdu.AttrSimple)
			h.SetITT(9)
			h.PutU32(20, 8192)
			h.PutU32(24, i.cmdSN)
			copy(h[32:], write10(0, 16))
			i.send(&h, nil)
			var d pdu.Header
			d.SetOpcode(pdu.OpDataOut, false)
			d.SetFlags(pdu.FlagFinal)
			d.SetITT(9)
			d.SetTTT(pdu.ReservedTag)
			d.PutU32(40, 4096)
			i.send(&d, make([]byte, 512))
		},
		func(i *ini) { i.nc.Write(bytes.Repeat([]byte{0xff}, 200)) },
	}
	for k, f := range bad {
		i := ts.loggedInISID(t, nil, byte(10+k))
		f(i)
		i.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := i.recv(); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("case %d: connection not closed", k)
				}
				break
			}
		}
	}
	clearUA(t, good)
	r, err := good.command(0, read10(0, 1), 512, nil, true)
	if err != nil || r.status != 0 {
		t.Fatalf("healthy session disturbed: %v %d", err, r.status)
	}
}

func TestConcurrentSessionsLoginLogout(t *testing.T) {
	ts := newTestServer(t)
	var wg sync.WaitGroup
	for s := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				i := dialIni(t, ts.addr)
				i.isid[5] = byte(s)
				if st, err := i.login(loginOpts{initiator: "iqn.2026-11.dev.hastor:ini", target: testIQN}); err != nil || st != 0 {
					t.Errorf("login: %#x %v", st, err)
					return
				}
				for k := range 4 {
					i.command(0, write10(uint32(s*64+k), 1), 512, pattern(512, byte(k)), false)
				}
				var h pdu.Header
				h.SetOpcode(pdu.OpLogout, true)
				h.SetFlags(pdu.FlagFinal)
				h.SetITT(i.nextITT())
				h.PutU32(24, i.cmdSN)
				i.send(&h, nil)
				rh, _, err := i.recv()
				if err != nil || rh.Opcode() != pdu.OpLogoutResp || rh[2] != 0 {
					t.Errorf("logout: %v %v", rh.Opcode(), err)
				}
				i.nc.Close()
			}
		}()
	}
	wg.Wait()
}

func TestSessionReinstatement(t *testing.T) {
	ts := newTestServer(t)
	a := ts.loggedIn(t, nil)
	clearUA(t, a)
	b := ts.loggedIn(t, nil) // same ISID and initiator name: reinstates
	clearUA(t, b)
	a.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := a.recv(); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("old connection still open: %v", err)
	}
	if r, err := b.command(0, read10(0, 1), 512, nil, true); err != nil || r.status != 0 {
		t.Fatalf("new session: %v", err)
	}
}
