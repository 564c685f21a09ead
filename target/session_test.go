package target

import "testing"

// RFC 7143 §4.2.2.1: serial number arithmetic, the command window, and
// MaxCmdSN that never decreases.
func TestCmdSNWindow(t *testing.T) {
	srv := &Server{opts: Options{QueueDepth: 4}}
	s := newSession(srv, nil, true, "iqn.x", [6]byte{}, 1, 0xfffffffe)
	exp, max := s.cmdSNs()
	if exp != 0xfffffffe || max != 1 {
		t.Fatalf("initial window %d..%d", exp, max)
	}
	if !snInWindow(0, exp, max) || snInWindow(2, exp, max) || snInWindow(0xfffffffd, exp, max) {
		t.Fatal("window membership across the wrap is wrong")
	}
	// Out of window: dropped, nothing moves.
	if s.acceptCmdSN(2) || s.acceptCmdSN(0xfffffffd) {
		t.Fatal("accepted a CmdSN outside the window")
	}
	// A gap: 0xffffffff arrives before 0xfffffffe.
	if !s.acceptCmdSN(0xffffffff) {
		t.Fatal("in-window CmdSN refused")
	}
	if e, _ := s.cmdSNs(); e != 0xfffffffe {
		t.Fatalf("ExpCmdSN moved over a gap: %d", e)
	}
	if s.acceptCmdSN(0xffffffff) {
		t.Fatal("duplicate CmdSN accepted")
	}
	if !s.acceptCmdSN(0xfffffffe) {
		t.Fatal("expected CmdSN refused")
	}
	if e, _ := s.cmdSNs(); e != 0 {
		t.Fatalf("ExpCmdSN %d after the gap filled, want 0", e)
	}
	// The window is full until commands complete.
	if !s.acceptCmdSN(0) || !s.acceptCmdSN(1) || s.acceptCmdSN(2) {
		t.Fatal("window of 4 not enforced")
	}
	s.credit()
	s.credit()
	if _, m := s.cmdSNs(); m != 3 {
		t.Fatalf("MaxCmdSN %d after two completions, want 3", m)
	}
	if !s.acceptCmdSN(2) {
		t.Fatal("credit did not open the window")
	}
}

func TestLUNNumber(t *testing.T) {
	cases := map[uint64]uint64{
		0:                  0,
		0x0005000000000000: 5,
		0x4105000000000000: 0x105, // flat addressing
		0x0100000000000000: 1<<64 - 1,
		0x0000000000000001: 1<<64 - 1,
		0xc000000000000000: 1<<64 - 1,
	}
	for in, want := range cases {
		if got := lunNumber(in); got != want {
			t.Errorf("lunNumber(%#x) = %#x, want %#x", in, got, want)
		}
	}
}
