package target

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"hastor/target/login"
	"hastor/target/pdu"
)

// panicCatcher is a slog handler that records panics the connection code
// recovered, so the fuzzer can fail on them.
type panicCatcher struct {
	mu     sync.Mutex
	panics []string
}

func (p *panicCatcher) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicCatcher) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		p.mu.Lock()
		p.panics = append(p.panics, b.String())
		p.mu.Unlock()
	}
	return nil
}
func (p *panicCatcher) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicCatcher) WithGroup(string) slog.Handler      { return p }

// loginBytes is a one-PDU login straight to full feature phase.
func loginBytes(digests bool) []byte {
	d := "None"
	if digests {
		d = "CRC32C"
	}
	text := login.Text{
		{Key: "InitiatorName", Value: "iqn.2026-11.dev.hastor:fuzz"}, {Key: "TargetName", Value: testIQN},
		{Key: "SessionType", Value: "Normal"}, {Key: "HeaderDigest", Value: d}, {Key: "DataDigest", Value: d},
		{Key: "InitialR2T", Value: "No"}, {Key: "MaxRecvDataSegmentLength", Value: "8192"},
		{Key: "MaxBurstLength", Value: "16384"}, {Key: "FirstBurstLength", Value: "8192"},
	}.Append(nil)
	var h pdu.Header
	h.SetOpcode(pdu.OpLoginReq, true)
	h.SetFlags(pdu.FlagTransit | 1<<2 | 3)
	copy(h[8:14], []byte{0x80, 0, 0, 0, 0, 1})
	h.SetITT(1)
	h.PutU32(24, 1)
	h.SetDataSegmentLength(len(text))
	out := append(h[:], text...)
	return append(out, make([]byte, pdu.Pad(len(text)))...)
}

// cmdPDU builds a SCSI Command PDU for the seed corpus.
func cmdPDU(cmdSN uint32, flags byte, edtl uint32, cdb []byte, data []byte) []byte {
	var h pdu.Header
	h.SetOpcode(pdu.OpSCSICmd, false)
	h.SetFlags(flags)
	h.SetITT(cmdSN + 100)
	h.PutU32(20, edtl)
	h.PutU32(24, cmdSN)
	copy(h[32:], cdb)
	h.SetDataSegmentLength(len(data))
	out := append(h[:], data...)
	return append(out, make([]byte, pdu.Pad(len(data)))...)
}

// FuzzConnection feeds arbitrary bytes to a logged-in connection: the
// PDU framing, every handler and the SCSI layer must never panic, and the
// connection must end cleanly.
func FuzzConnection(f *testing.F) {
	f.Add(cmdPDU(1, pdu.FlagFinal|pdu.FlagRead|1, 512, read10(0, 1), nil))
	f.Add(cmdPDU(1, pdu.FlagWrite|1, 16384, write10(0, 32), make([]byte, 4096)))
	f.Add(cmdPDU(1, pdu.FlagFinal|1, 0, []byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil))
	var nop pdu.Header
	nop.SetOpcode(pdu.OpNOPOut, true)
	nop.SetFlags(pdu.FlagFinal)
	nop.SetITT(5)
	nop.SetDataSegmentLength(4)
	f.Add(append(nop[:], 'p', 'i', 'n', 'g'))
	var tmf pdu.Header
	tmf.SetOpcode(pdu.OpTaskReq, true)
	tmf.SetFlags(pdu.FlagFinal | pdu.TMFLUNReset)
	f.Add(tmf[:])
	var lo pdu.Header
	lo.SetOpcode(pdu.OpLogout, true)
	lo.SetFlags(pdu.FlagFinal)
	f.Add(append(cmdPDU(1, pdu.FlagFinal|1, 0, []byte{0, 0, 0, 0, 0, 0}, nil), lo[:]...))

	ts := newTestServer(f)
	pc := &panicCatcher{}
	ts.srv.log = slog.New(pc)
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		c := newConn(context.Background(), ts.srv, server)
		ts.srv.mu.Lock()
		ts.srv.mu.conns[c] = struct{}{}
		ts.srv.wg.Add(1)
		ts.srv.mu.Unlock()
		served := make(chan struct{})
		go func() { c.serve(); close(served) }()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(loginBytes(len(data) > 0 && data[0]&1 == 1))
		client.Write(data)
		client.Close()
		select {
		case <-served:
		case <-time.After(20 * time.Second):
			t.Fatalf("connection did not end after input % x", data[:min(len(data), 64)])
		}
		pc.mu.Lock()
		defer pc.mu.Unlock()
		if len(pc.panics) > 0 {
			t.Fatalf("recovered panic: %s", pc.panics[0])
		}
	})
}

var _ = binary.BigEndian
