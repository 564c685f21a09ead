package target

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"hastor/blockdev"
	"hastor/target/pdu"
)

// blockWrites makes writes at byte offset off wait until release is
// closed, and reports on started when one begins.
func blockWrites(ts *testServer, off int64) (started chan struct{}, release chan struct{}) {
	started = make(chan struct{}, 16)
	release = make(chan struct{})
	ts.faulty.SetFault(func(op blockdev.Op, o int64, n int) error {
		if (op == blockdev.OpWrite || op == blockdev.OpWriteFUA) && o == off {
			started <- struct{}{}
			<-release
		}
		return nil
	})
	return started, release
}

// sendWrite sends a WRITE(10) of one block with immediate data and does
// not wait for its response.
func sendWrite(t *testing.T, i *ini, lba uint32, seed byte) (itt, cmdSN uint32) {
	t.Helper()
	return sendWriteData(t, i, lba, pattern(512, seed))
}

// sendWriteData sends a WRITE(10) of data (whole blocks) as immediate data
// and does not wait for its response.
func sendWriteData(t *testing.T, i *ini, lba uint32, data []byte) (itt, cmdSN uint32) {
	t.Helper()
	itt = i.nextITT()
	cmdSN = i.cmdSN
	var h pdu.Header
	h.SetOpcode(pdu.OpSCSICmd, false)
	h.SetFlags(pdu.FlagFinal | pdu.FlagWrite | pdu.AttrSimple)
	h.SetITT(itt)
	h.PutU32(20, uint32(len(data)))
	h.PutU32(24, i.cmdSN)
	i.cmdSN++
	copy(h[32:], write10(lba, uint16(len(data)/512)))
	if err := i.send(&h, data); err != nil {
		t.Fatal(err)
	}
	return itt, cmdSN
}

func sendTMF(t *testing.T, i *ini, fn byte, lun uint64, ref, refCmdSN uint32) {
	t.Helper()
	var h pdu.Header
	h.SetOpcode(pdu.OpTaskReq, true)
	h.SetFlags(pdu.FlagFinal | fn)
	h.SetLUN(lun << 48)
	h.SetITT(i.nextITT())
	h.PutU32(20, ref)
	h.PutU32(24, i.cmdSN)
	h.PutU32(32, refCmdSN)
	if err := i.send(&h, nil); err != nil {
		t.Fatal(err)
	}
}

// ABORT TASK on a write blocked in the device: the TMF response comes only
// after the write left the device, and the aborted write gets no response
// (RFC 7143 §4.2.3.3, SAM-5 §7.2).
func TestAbortTaskWaitsForExecutingWrite(t *testing.T) {
	ts := newTestServer(t)
	i := ts.loggedIn(t, nil)
	clearUA(t, i)
	started, release := blockWrites(ts, 40*512)
	itt, cmdSN := sendWrite(t, i, 40, 1)
	<-started
	sendTMF(t, i, pdu.TMFAbortTask, 0, itt, cmdSN)
	got := make(chan pdu.Header, 4)
	go func() {
		for {
			h, _, err := i.recv()
			if err != nil {
				close(got)
				return
			}
			got <- h
		}
	}()
	select {
	case h := <-got:
		t.Fatalf("%v arrived while the aborted write was still in the device", h.Opcode())
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	h := <-got
	if h.Opcode() != pdu.OpTaskResp || h[2] != pdu.TMFComplete {
		t.Fatalf("got %v response %d, want TMF response 0", h.Opcode(), h[2])
	}
	ts.faulty.SetFault(nil)
	// No SCSI Response for the aborted write: the next PDU is for the TUR.
	tur := i.nextITT()
	var th pdu.Header
	th.SetOpcode(pdu.OpSCSICmd, false)
	th.SetFlags(pdu.FlagFinal | pdu.AttrSimple)
	th.SetITT(tur)
	th.PutU32(24, i.cmdSN)
	i.cmdSN++
	i.send(&th, nil)
	h = <-got
	if h.Opcode() != pdu.OpSCSIResp || h.ITT() != tur {
		t.Fatalf("got %v for ITT %#x, want the TUR response (ITT %#x)", h.Opcode(), h.ITT(), tur)
	}
}

// ABORT TASK for a task that already completed: "task does not exist".
func TestAbortCompletedTask(t *testing.T) {
	ts := newTestServer(t)
	i := ts.loggedIn(t, nil)
	clearUA(t, i)
	if r, err := i.command(0, write10(5, 1), 512, pattern(512, 9), false); err != nil || r.status != 0 {
		t.Fatal(err)
	}
	sendTMF(t, i, pdu.TMFAbortTask, 0, i.itt, i.cmdSN-1)
	h, _ := i.mustRecv()
	if h.Opcode() != pdu.OpTaskResp || h[2] != pdu.TMFNoTask {
		t.Fatalf("got %v response %d, want 1 (task does not exist)", h.Opcode(), h[2])
	}
}

// LUN RESET aborts tasks of every session on the LUN and sets a unit
// attention on every I_T nexus, the requester's included (SAM-5 §6.3.3).
func TestLUNResetAcrossSessions(t *testing.T) {
	ts := newTestServer(t)
	a, b, done, release := tmfDuringBlockedWrite(t, ts, pdu.TMFLUNReset, 77)
	select {
	case <-done:
		t.Fatal("LUN RESET answered before the other session's write left the device")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if h := <-done; h.Opcode() != pdu.OpTaskResp || h[2] != pdu.TMFComplete {
		t.Fatalf("LUN RESET: %v %d", h.Opcode(), h[2])
	}
	ts.faulty.SetFault(nil)
	for _, i := range []*ini{a, b} {
		r, err := i.command(0, []byte{0, 0, 0, 0, 0, 0}, 0, nil, false)
		if err != nil || r.status != 2 || len(r.sense) < 14 || r.sense[2]&0xf != 6 || r.sense[12] != 0x29 {
			t.Fatalf("want UNIT ATTENTION 29h after LUN RESET, got status %d sense % x (%v)", r.status, r.sense, err)
		}
	}
}

// CLEAR TASK SET aborts the other session's command on the LUN, and that
// session, not the requester, gets UNIT ATTENTION 2Fh/00h (SAM-5 "CLEAR
// TASK SET", TAS=0).
func TestClearTaskSetAcrossSessions(t *testing.T) {
	ts := newTestServer(t)
	a, b, done, release := tmfDuringBlockedWrite(t, ts, pdu.TMFClearTaskSet, 78)
	waitAborted(t, ts)
	close(release)
	if h := <-done; h.Opcode() != pdu.OpTaskResp || h[2] != pdu.TMFComplete {
		t.Fatalf("CLEAR TASK SET: %v %d", h.Opcode(), h[2])
	}
	ts.faulty.SetFault(nil)
	if r, err := a.command(0, []byte{0, 0, 0, 0, 0, 0}, 0, nil, false); err != nil || r.status != 0 {
		t.Fatalf("requester: want GOOD, got status %d sense % x (%v)", r.status, r.sense, err)
	}
	r, err := b.command(0, []byte{0, 0, 0, 0, 0, 0}, 0, nil, false)
	if err != nil || r.status != 2 || len(r.sense) < 14 || r.sense[2]&0xf != 6 || r.sense[12] != 0x2F || r.sense[13] != 0 {
		t.Fatalf("want UNIT ATTENTION 2Fh/00h, got status %d sense % x (%v)", r.status, r.sense, err)
	}
}

// TARGET COLD RESET answers, then closes every connection to the target.
func TestTargetColdResetClosesConnections(t *testing.T) {
	ts := newTestServer(t)
	a := ts.loggedInISID(t, nil, 1)
	b := ts.loggedInISID(t, nil, 2)
	clearUA(t, a)
	sendTMF(t, a, pdu.TMFTargetColdReset, 0, 0, 0)
	h, _ := a.mustRecv()
	if h.Opcode() != pdu.OpTaskResp || h[2] != pdu.TMFComplete {
		t.Fatalf("cold reset: %v %d", h.Opcode(), h[2])
	}
	for _, i := range []*ini{a, b} {
		i.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, _, err := i.recv()
			if err != nil {
				if bytes.Contains([]byte(err.Error()), []byte("timeout")) {
					t.Fatal("connection still open after TARGET COLD RESET")
				}
				break
			}
		}
	}
}

// Unknown task management functions and TASK REASSIGN get their own
// responses (RFC 7143 §11.6.1).
func TestTMFUnsupported(t *testing.T) {
	ts := newTestServer(t)
	i := ts.loggedIn(t, nil)
	for fn, want := range map[byte]byte{pdu.TMFTaskReassign: pdu.TMFReassignNotSupp, 15: pdu.TMFNotSupported} {
		sendTMF(t, i, fn, 0, 0, 0)
		h, _ := i.mustRecv()
		if h.Opcode() != pdu.OpTaskResp || h[2] != want {
			t.Errorf("function %d: response %d, want %d", fn, h[2], want)
		}
	}
	sendTMF(t, i, pdu.TMFLUNReset, 7, 0, 0)
	if h, _ := i.mustRecv(); h[2] != pdu.TMFNoLUN {
		t.Errorf("LUN RESET of an absent LUN: response %d", h[2])
	}
}

// tmfDuringBlockedWrite logs in two sessions a and b, starts a WRITE of
// LBA lba in b that blocks in the device until release is closed, and then
// sends task management function fn for LUN 0 in a. The TMF response
// arrives on done.
func tmfDuringBlockedWrite(t *testing.T, ts *testServer, fn byte, lba uint32) (a, b *ini, done chan pdu.Header, release chan struct{}) {
	t.Helper()
	a = ts.loggedInISID(t, nil, 1)
	b = ts.loggedInISID(t, nil, 2)
	clearUA(t, a)
	clearUA(t, b)
	started, release := blockWrites(ts, int64(lba)*512)
	sendWrite(t, b, lba, byte(lba))
	<-started
	done = make(chan pdu.Header, 1)
	go func() {
		sendTMF(t, a, fn, 0, 0, 0)
		h, _ := a.mustRecv()
		done <- h
	}()
	return a, b, done, release
}

// waitAborted waits until some task of the server is marked aborted.
func waitAborted(t *testing.T, ts *testServer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var sessions []*session
		ts.srv.mu.Lock()
		for _, s := range ts.srv.mu.sessions {
			sessions = append(sessions, s)
		}
		ts.srv.mu.Unlock()
		for _, s := range sessions {
			s.mu.Lock()
			for _, tk := range s.mu.tasks {
				if tk.aborted.Load() {
					s.mu.Unlock()
					return
				}
			}
			s.mu.Unlock()
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no task was aborted within 10s")
}

// A command that the reader runs itself (the only one in flight) and that
// waits in the device longer than inlineBudget does not stop the
// connection: the reader role moves to a new goroutine, which answers a
// NOP-Out and runs the next command while the first still waits.
func TestSlowInlineCommandDoesNotBlockReading(t *testing.T) {
	ts := newTestServer(t)
	i := ts.loggedIn(t, nil)
	clearUA(t, i)
	started, release := blockWrites(ts, 90*512)
	witt, _ := sendWrite(t, i, 90, 4)
	<-started
	var h pdu.Header
	h.SetOpcode(pdu.OpNOPOut, true)
	h.SetFlags(pdu.FlagFinal)
	h.SetITT(i.nextITT())
	h.SetTTT(pdu.ReservedTag)
	h.PutU32(24, i.cmdSN)
	if err := i.send(&h, []byte("still-there")); err != nil {
		t.Fatal(err)
	}
	rh, data := i.mustRecv()
	if rh.Opcode() != pdu.OpNOPIn || string(data) != "still-there" {
		t.Fatalf("got %v %q while the write waits, want the NOP-In", rh.Opcode(), data)
	}
	// Another command runs while the first is still in the device.
	r, err := i.command(0, []byte{0, 0, 0, 0, 0, 0}, 0, nil, false)
	if err != nil || r.status != 0 {
		t.Fatalf("TEST UNIT READY during the slow write: %v status %d", err, r.status)
	}
	close(release)
	ts.faulty.SetFault(nil)
	rh, _ = i.mustRecv()
	if rh.Opcode() != pdu.OpSCSIResp || rh.ITT() != witt || rh[3] != 0 {
		t.Fatalf("slow write: got %v ITT %#x status %d", rh.Opcode(), rh.ITT(), rh[3])
	}
	// And the connection goes on as before, with commands run inline again.
	for k := 0; k < 20; k++ {
		if r, err := i.command(0, write10(uint32(100+k), 1), 512, pattern(512, byte(k)), false); err != nil || r.status != 0 {
			t.Fatalf("write %d after the hand-off: %v status %d", k, err, r.status)
		}
	}
}

// PERSISTENT RESERVE OUT with PREEMPT AND ABORT, as fence_scsi fences a
// node: the preempted session's write that is in the device when the
// preemption arrives is aborted (it gets no response) and has ended before
// the preempting command's GOOD status; the preempted session then sees
// REGISTRATIONS PREEMPTED and its writes conflict.
func TestPreemptAndAbortAcrossSessions(t *testing.T) {
	ts := newTestServer(t)
	a := ts.loggedInISID(t, nil, 1)
	b := ts.loggedInISID(t, nil, 2)
	clearUA(t, a)
	clearUA(t, b)
	prout := func(i *ini, sa, typ byte, key, saKey uint64) (scsiResult, error) {
		p := make([]byte, 24)
		binary.BigEndian.PutUint64(p[0:8], key)
		binary.BigEndian.PutUint64(p[8:16], saKey)
		return i.command(0, []byte{0x5F, sa, typ, 0, 0, 0, 0, 0, 24, 0}, 24, p, false)
	}
	const weRegsOnly = 0x5 // WRITE EXCLUSIVE, REGISTRANTS ONLY
	for _, step := range []struct {
		i        *ini
		sa, typ  byte
		key, sak uint64
	}{{a, 0x00, 0, 0, 0xA}, {b, 0x00, 0, 0, 0xB}, {b, 0x01, weRegsOnly, 0xB, 0}} {
		if r, err := prout(step.i, step.sa, step.typ, step.key, step.sak); err != nil || r.status != 0 {
			t.Fatalf("PERSISTENT RESERVE OUT %#x: status %#x sense % x (%v)", step.sa, r.status, r.sense, err)
		}
	}
	started, release := blockWrites(ts, 77*512)
	sendWrite(t, b, 77, 7)
	<-started
	type result struct {
		r   scsiResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := prout(a, 0x05, weRegsOnly, 0xA, 0xB)
		done <- result{r, err}
	}()
	waitAborted(t, ts)
	select {
	case <-done:
		t.Fatal("PREEMPT AND ABORT completed while the preempted write was still in the device")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if res := <-done; res.err != nil || res.r.status != 0 {
		t.Fatalf("PREEMPT AND ABORT: status %#x sense % x (%v)", res.r.status, res.r.sense, res.err)
	}
	ts.faulty.SetFault(nil)
	// The aborted write never answers: b's next response is its TEST UNIT
	// READY's, with the unit attention.
	r, err := b.command(0, []byte{0, 0, 0, 0, 0, 0}, 0, nil, false)
	if err != nil || r.status != 2 || len(r.sense) < 14 || r.sense[2]&0xf != 6 || r.sense[12] != 0x2A || r.sense[13] != 0x05 {
		t.Fatalf("preempted session: want UNIT ATTENTION 2Ah/05h, got status %#x sense % x (%v)", r.status, r.sense, err)
	}
	w := []byte{0x2A, 0, 0, 0, 0, 78, 0, 0, 1, 0}
	if r, err := b.command(0, w, 512, pattern(512, 1), false); err != nil || r.status != 0x18 {
		t.Fatalf("preempted session's write: status %#x (%v), want RESERVATION CONFLICT", r.status, err)
	}
	if r, err := a.command(0, w, 512, pattern(512, 1), false); err != nil || r.status != 0 {
		t.Fatalf("holder's write: status %#x (%v)", r.status, err)
	}
}
