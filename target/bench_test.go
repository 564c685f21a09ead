package target

import (
	"io"
	"testing"

	"hastor/target/pdu"
)

// rawClient drives a logged-in connection with preallocated PDUs, so that
// allocations measured by the benchmarks are the target's.
type rawClient struct {
	i    *ini
	cmd  []byte
	resp [pdu.BHSLen]byte
	data []byte
}

func newRawClient(b testing.TB, ts *testServer, cdb []byte, write bool, n int) *rawClient {
	i := ts.loggedIn(b, nil)
	clearUA(b, i)
	var h pdu.Header
	h.SetOpcode(pdu.OpSCSICmd, false)
	f := byte(pdu.FlagFinal | pdu.AttrSimple)
	if write {
		f |= pdu.FlagWrite
	} else {
		f |= pdu.FlagRead
	}
	h.SetFlags(f)
	h.SetITT(1)
	h.PutU32(20, uint32(n))
	copy(h[32:], cdb)
	rc := &rawClient{i: i, data: make([]byte, n)}
	if write {
		h.SetDataSegmentLength(n)
		rc.cmd = append(h[:], pattern(n, 1)...)
	} else {
		rc.cmd = h[:]
	}
	return rc
}

// do sends one command with CmdSN sn and reads its whole response.
func (rc *rawClient) do(b testing.TB, sn uint32) {
	h := (*pdu.Header)(rc.cmd[:pdu.BHSLen])
	h.PutU32(24, sn)
	if _, err := rc.i.nc.Write(rc.cmd); err != nil {
		b.Fatal(err)
	}
	for {
		if _, err := io.ReadFull(rc.i.br, rc.resp[:]); err != nil {
			b.Fatal(err)
		}
		r := (*pdu.Header)(&rc.resp)
		n := r.DataSegmentLength()
		n += pdu.Pad(n)
		if n > 0 {
			if _, err := io.ReadFull(rc.i.br, rc.data[:n]); err != nil {
				b.Fatal(err)
			}
		}
		if r.Opcode() == pdu.OpSCSIResp || r.Flags()&pdu.FlagStatus != 0 {
			if r[3] != 0 {
				b.Fatalf("status %d", r[3])
			}
			return
		}
	}
}

// BenchmarkRead4K measures one 4 KiB READ round trip through the whole
// target (TCP loopback, PDU parsing, SCSI layer on an in-memory device,
// Data-In with status). allocs/op shows the steady-state data path
// allocating nothing.
func BenchmarkRead4K(b *testing.B) { benchIO(b, read10(8, 8), false) }

// BenchmarkWrite4K is BenchmarkRead4K for a WRITE with immediate data.
func BenchmarkWrite4K(b *testing.B) { benchIO(b, write10(8, 8), true) }

func benchIO(b *testing.B, cdb []byte, write bool) {
	ts := newTestServer(b)
	rc := newRawClient(b, ts, cdb, write, 4096)
	sn := rc.i.cmdSN
	for range 100 { // warm pools and maps
		rc.do(b, sn)
		sn++
	}
	b.ReportAllocs()
	b.SetBytes(4096)
	b.ResetTimer()
	for b.Loop() {
		rc.do(b, sn)
		sn++
	}
}

// The steady-state data path allocates nothing: a READ or WRITE round trip
// through the whole target (reader, execution, SCSI layer, writer) makes
// no heap allocation.
func TestDataPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, c := range []struct {
		name  string
		cdb   []byte
		write bool
	}{{"read", read10(8, 8), false}, {"write", write10(8, 8), true}} {
		t.Run(c.name, func(t *testing.T) {
			ts := newTestServer(t)
			rc := newRawClient(t, ts, c.cdb, c.write, 4096)
			sn := rc.i.cmdSN
			for range 200 {
				rc.do(t, sn)
				sn++
			}
			allocs := testing.AllocsPerRun(500, func() {
				rc.do(t, sn)
				sn++
			})
			if allocs != 0 {
				t.Errorf("%v allocations per command", allocs)
			}
		})
	}
}
