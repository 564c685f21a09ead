package target

import (
	"bytes"
	"testing"
	"time"

	"hastor/target/login"
	"hastor/target/pdu"
)

// Data-In honours the initiator's MaxRecvDataSegmentLength and bursts
// (RFC 7143 §13.12, §13.13): ini.recv fails on any oversized segment.
func TestDataInHonoursMaxRecvDataSegmentLength(t *testing.T) {
	ts := newTestServer(t)
	i := ts.loggedIn(t, login.Text{{Key: "MaxRecvDataSegmentLength", Value: "4096"}, {Key: "MaxBurstLength", Value: "16384"}})
	clearUA(t, i)
	data := pattern(64<<10, 5)
	if r, err := i.command(0, write10(0, 128), uint32(len(data)), data, false); err != nil || r.status != 0 {
		t.Fatalf("write: %v %d", err, r.status)
	}
	r, err := i.command(0, read10(0, 128), uint32(len(data)), nil, true)
	if err != nil || r.status != 0 || !bytes.Equal(r.data, data) {
		t.Fatalf("read: %v status %d", err, r.status)
	}
}

// A login whose text spans two PDUs (C bit, RFC 7143 §11.12.2).
func TestLoginTextAcrossPDUs(t *testing.T) {
	ts := newTestServer(t)
	i := dialIni(t, ts.addr)
	text := login.Text{{Key: "InitiatorName", Value: "iqn.2026-11.dev.hastor:ini"}, {Key: "SessionType", Value: "Normal"},
		{Key: "TargetName", Value: testIQN}, {Key: "HeaderDigest", Value: "None"}, {Key: "DataDigest", Value: "None"}}.Append(nil)
	half := len(text) / 2
	send := func(part []byte, cont bool) pdu.Header {
		var h pdu.Header
		h.SetOpcode(pdu.OpLoginReq, true)
		f := byte(1<<2 | 3)
		if cont {
			f |= pdu.FlagContinue
		} else {
			f |= pdu.FlagTransit
		}
		h.SetFlags(f)
		copy(h[8:14], i.isid[:])
		h.SetITT(1)
		h.PutU32(24, 1)
		if err := i.send(&h, part); err != nil {
			t.Fatal(err)
		}
		rh, _ := i.mustRecv()
		return rh
	}
	if rh := send(text[:half], true); rh.Transit() || rh[36] != 0 {
		t.Fatalf("continued PDU: transit %v status %#x", rh.Transit(), rh[36])
	}
	rh := send(text[half:], false)
	if !rh.Transit() || rh[36] != 0 || rh.TSIH() == 0 {
		t.Fatalf("final PDU: transit %v status %#x tsih %d", rh.Transit(), rh[36], rh.TSIH())
	}
}

// The target pings an idle initiator with NOP-In and drops a connection
// whose initiator does not answer (RFC 7143 §11.19).
func TestNOPInPings(t *testing.T) {
	ts := newTestServer(t, func(o *Options, _ *Target) {
		o.NopInInterval = 50 * time.Millisecond
		o.NopInTimeout = 200 * time.Millisecond
	})
	i := ts.loggedIn(t, nil)
	h, _ := i.mustRecv()
	if h.Opcode() != pdu.OpNOPIn || h.ITT() != pdu.ReservedTag || h.TTT() == pdu.ReservedTag {
		t.Fatalf("want a NOP-In ping, got %v ITT %#x TTT %#x", h.Opcode(), h.ITT(), h.TTT())
	}
	// Answer it: the connection stays up and serves commands.
	var ans pdu.Header
	ans.SetOpcode(pdu.OpNOPOut, true)
	ans.SetFlags(pdu.FlagFinal)
	ans.SetITT(pdu.ReservedTag)
	ans.SetTTT(h.TTT())
	ans.PutU32(24, i.cmdSN)
	i.send(&ans, nil)
	clearUAIgnoringPings(t, i)
	// Stop answering: the target must close the connection.
	i.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, _, err := i.recv()
		if err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatal("connection not closed after an unanswered NOP-In")
			}
			return
		}
		if h.Opcode() != pdu.OpNOPIn {
			t.Fatalf("unexpected %v", h.Opcode())
		}
	}
}

func clearUAIgnoringPings(t *testing.T, i *ini) {
	t.Helper()
	r, err := i.command(0, []byte{0, 0, 0, 0, 0, 0}, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	_ = r
}

// Connection reinstatement: a login with the session's TSIH and the same
// CID replaces the old connection and keeps the session (RFC 7143 §6.3.4).
func TestConnectionReinstatement(t *testing.T) {
	ts := newTestServer(t)
	a := ts.loggedIn(t, nil)
	clearUA(t, a)
	b := dialIni(t, ts.addr)
	b.isid = a.isid
	b.tsih = a.tsih
	b.cmdSN = a.cmdSN
	if st, err := b.login(loginOpts{initiator: "iqn.2026-11.dev.hastor:ini", target: testIQN}); err != nil || st != 0 {
		t.Fatalf("reinstatement login: %#x %v", st, err)
	}
	if b.tsih != a.tsih {
		t.Fatalf("new TSIH %d, want the session's %d", b.tsih, a.tsih)
	}
	if r, err := b.command(0, read10(0, 1), 512, nil, true); err != nil || r.status != 0 {
		t.Fatalf("command on the reinstated connection: %v %d", err, r.status)
	}
	a.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := a.recv(); err == nil {
		t.Fatal("old connection still open")
	}
	// An unknown TSIH is refused.
	c := dialIni(t, ts.addr)
	c.isid = a.isid
	c.tsih = a.tsih + 100
	if st, _ := c.login(loginOpts{initiator: "iqn.2026-11.dev.hastor:ini", target: testIQN}); st != pdu.LoginSessionNotFound {
		t.Fatalf("unknown TSIH: status %#x", st)
	}
}

// A long SendTargets answer is split with the C bit and fetched with the
// Target Transfer Tag (RFC 7143 §11.10).
func TestTextResponseContinuation(t *testing.T) {
	ts := newTestServer(t)
	i := dialIni(t, ts.addr)
	if st, err := i.login(loginOpts{initiator: "iqn.2026-11.dev.hastor:ini", keys: login.Text{{Key: "MaxRecvDataSegmentLength", Value: "512"}}}); err != nil || st != 0 {
		t.Fatalf("login: %#x %v", st, err)
	}
	// Ask with many unknown keys so that the answer exceeds 512 bytes.
	req := login.Text{{Key: "SendTargets", Value: "All"}}
	for k := range 40 {
		req = append(req, login.KV{Key: "X-hastor-test-key-" + string(rune('a'+k%26)) + string(rune('a'+k/26)), Value: "1"})
	}
	var all []byte
	ttt := uint32(pdu.ReservedTag)
	itt := i.nextITT()
	for n := 0; ; n++ {
		var h pdu.Header
		h.SetOpcode(pdu.OpTextReq, false)
		h.SetFlags(pdu.FlagFinal)
		h.SetITT(itt)
		h.SetTTT(ttt)
		h.PutU32(24, i.cmdSN)
		i.cmdSN++
		var body []byte
		if n == 0 {
			body = req.Append(nil)
		}
		i.send(&h, body)
		rh, data := i.mustRecv()
		all = append(all, data...)
		if rh.Final() {
			break
		}
		if !rh.Continue() || rh.TTT() == pdu.ReservedTag {
			t.Fatalf("partial text response without C bit or TTT")
		}
		ttt = rh.TTT()
		if n > 10 {
			t.Fatal("too many parts")
		}
	}
	kv, err := login.ParseText(all)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := kv.Get("TargetName"); v != testIQN {
		t.Fatalf("TargetName=%q in %q", v, all)
	}
	if v, _ := kv.Get("X-hastor-test-key-aa"); v != login.NotUnderstood {
		t.Fatalf("unknown key answered %q", v)
	}
}
