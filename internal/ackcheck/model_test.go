package ackcheck

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func newModel(t testing.TB, count uint64) *Model {
	t.Helper()
	m, err := NewModel(Layout{BlockSize: 4096, First: 0, Count: count})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func stamp(b Block, s Seq) Observation { return Observation{Kind: KindStamp, Seq: s} }

var zero = Observation{Kind: KindZero}

func mustIssue(t *testing.T, m *Model, b Block) Seq {
	t.Helper()
	s, err := m.Issue(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestModelCases walks the cases the doc comment promises.
func TestModelCases(t *testing.T) {
	m := newModel(t, 16)
	// Block 1: two acknowledged writes.
	s1 := mustIssue(t, m, 1)
	if _, err := m.Issue(1); !errors.Is(err, ErrBusy) {
		t.Fatalf("second write in flight: %v", err)
	}
	m.Ack(1, s1)
	s2 := mustIssue(t, m, 1)
	m.Ack(1, s2)
	// Block 2: one acknowledged write, then one with an unknown outcome.
	s3 := mustIssue(t, m, 2)
	m.Ack(2, s3)
	s4 := mustIssue(t, m, 2)
	m.Fail(2, s4)
	if _, err := m.Issue(2); !errors.Is(err, ErrPoisoned) {
		t.Fatalf("write after unknown outcome: %v", err)
	}
	// Block 3: only an unknown write. Block 4: a write still in flight.
	s5 := mustIssue(t, m, 3)
	m.Fail(3, s5)
	s6 := mustIssue(t, m, 4)
	if err := m.Ack(4, s6+1); !errors.Is(err, ErrNotPending) {
		t.Fatalf("ack of a write never issued: %v", err)
	}
	if _, err := m.Issue(16); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("out of range: %v", err)
	}
	other := mustIssue(t, m, 5) // a seq issued for another block
	m.Ack(5, other)

	cases := []struct {
		name string
		b    Block
		obs  Observation
		want Outcome
	}{
		{"last acked", 1, stamp(1, s2), OutcomeAcked},
		{"older than acked (lost write)", 1, stamp(1, s1), ViolationStale},
		{"zero after ack (lost write)", 1, zero, ViolationLost},
		{"never issued for block", 1, stamp(1, other), ViolationPhantom},
		{"from the future", 1, stamp(1, 999), ViolationPhantom},
		{"corrupt", 1, Observation{Kind: KindCorrupt, Detail: "x"}, ViolationCorrupt},
		{"acked, unknown not landed", 2, stamp(2, s3), OutcomeAcked},
		{"unknown landed", 2, stamp(2, s4), OutcomeUnacked},
		{"zero with acked", 2, zero, ViolationLost},
		{"only unknown, not landed", 3, zero, OutcomeInitial},
		{"only unknown, landed", 3, stamp(3, s5), OutcomeUnacked},
		{"in flight, not landed", 4, zero, OutcomeInitial},
		{"in flight, landed", 4, stamp(4, s6), OutcomeUnacked},
		{"untouched zero", 9, zero, OutcomeInitial},
		{"untouched stamped", 9, stamp(9, s2), ViolationPhantom},
		{"untouched garbage", 9, Observation{Kind: KindCorrupt}, ViolationCorrupt},
	}
	for _, c := range cases {
		v := m.Check(c.b, c.obs)
		if v.Outcome != c.want {
			t.Errorf("%s: %v, want %v", c.name, v, c.want)
		}
		if v.Outcome.Violation() != (c.want >= ViolationLost) {
			t.Errorf("%s: Violation() wrong", c.name)
		}
	}

	// The same verdicts after a save/load round trip.
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if v := m2.Check(c.b, c.obs); v.Outcome != c.want {
			t.Errorf("after load, %s: %v, want %v", c.name, v, c.want)
		}
	}
	if _, err := m2.Issue(4); !errors.Is(err, ErrBusy) {
		t.Fatalf("loaded model lost the in-flight write: %v", err)
	}
	if s, _ := m2.Issue(6); s != other+1 {
		t.Fatalf("loaded model reissues seq %d, want %d", s, other+1)
	}
}

// TestNegativeControl: a device that returns an older write than the one it
// acknowledged, or zeros, is reported.
func TestNegativeControl(t *testing.T) {
	m := newModel(t, 8)
	p := make([]byte, 4096)
	var old Seq
	for i := range 3 {
		s := mustIssue(t, m, 2)
		m.Ack(2, s)
		if i == 1 {
			old = s
		}
	}
	Stamp(p, 2, old)
	v := m.Check(2, Decode(p, 2))
	if v.Outcome != ViolationStale || !v.Outcome.Violation() {
		t.Fatalf("stale block not reported: %v", v)
	}
	var rep Report
	rep.Add(v)
	rep.Add(m.Check(2, Decode(make([]byte, 4096), 2)))
	if rep.OK() || len(rep.Violations) != 2 || !strings.Contains(rep.String(), "STALE") || !strings.Contains(rep.String(), "LOST") {
		t.Fatalf("report: %s", rep.String())
	}
}

// TestModelRandomized drives the model with random writes, outcomes and
// crashes against a simulated device that honours acknowledgements, and
// checks that no violation is reported; then it corrupts the simulated
// device in ways a buggy target would and checks that each is reported.
func TestModelRandomized(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		const n = 64
		m := newModel(t, n)
		disk := map[Block]Seq{}     // what the simulated device holds
		prev := map[Block]Seq{}     // the previous landed seq per block
		inflight := map[Block]Seq{} // issued, not completed
		for range 2000 {
			b := Block(rng.Uint64N(n))
			if s, ok := inflight[b]; ok {
				// Complete it: acked (landed), or unknown (landed or not).
				delete(inflight, b)
				switch rng.IntN(10) {
				case 0:
					m.Fail(b, s)
					if rng.IntN(2) == 0 {
						prev[b], disk[b] = disk[b], s
					}
				default:
					prev[b], disk[b] = disk[b], s
					m.Ack(b, s)
				}
				continue
			}
			if !m.Free(b) {
				continue
			}
			s, err := m.Issue(b)
			if err != nil {
				t.Fatal(err)
			}
			inflight[b] = s
		}
		// Crash: in-flight writes land or not.
		for b, s := range inflight {
			if rng.IntN(2) == 0 {
				prev[b], disk[b] = disk[b], s
			}
		}
		obs := func(b Block) Observation {
			if s := disk[b]; s != 0 {
				return stamp(b, s)
			}
			return zero
		}
		for b := range Block(n) {
			if v := m.Check(b, obs(b)); v.Outcome.Violation() {
				t.Fatalf("seed %d: honest device reported: %v", seed, v)
			}
		}
		// A buggy device: roll an acknowledged block back one write.
		lost := 0
		for b := range Block(n) {
			v := m.Check(b, obs(b))
			if v.Outcome != OutcomeAcked {
				continue
			}
			rolled := prev[b]
			var o Observation = zero
			if rolled != 0 {
				o = stamp(b, rolled)
			}
			if w := m.Check(b, o); !w.Outcome.Violation() {
				t.Fatalf("seed %d: rollback of block %d to %d not reported: %v", seed, b, rolled, w)
			}
			lost++
		}
		if lost == 0 {
			t.Fatalf("seed %d: no acknowledged block to roll back", seed)
		}
	}
}

func TestJournalReplay(t *testing.T) {
	m := newModel(t, 32)
	var j bytes.Buffer
	if err := m.SetJournal(&j, true); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for range 500 {
		b := Block(rng.Uint64N(32))
		if !m.Free(b) {
			continue
		}
		s := mustIssue(t, m, b)
		switch rng.IntN(20) {
		case 0:
			m.Fail(b, s)
		case 1: // left in flight
		default:
			m.Ack(b, s)
		}
	}
	// A torn last line is ignored.
	j.WriteString("A 3")
	r, err := LoadJournal(&j)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	m.Save(&a)
	r.Save(&b)
	if a.String() != b.String() {
		t.Fatalf("journal replay differs:\n%s\n%s", a.String(), b.String())
	}
	for _, bad := range []string{"", "I 1 1\n", "L 4096 0 8\nI 9 1\n", "L 4096 0 8\nA 1 1\n", "L 4096 0 8\nI 1 2\nI 2 1\n", "L 100 0 8\n"} {
		if _, err := LoadJournal(strings.NewReader(bad)); err == nil {
			t.Errorf("journal %q accepted", bad)
		}
	}
}

func FuzzLoad(f *testing.F) {
	m := newModel(f, 8)
	s, _ := m.Issue(1)
	m.Ack(1, s)
	var buf bytes.Buffer
	m.Save(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte("L 4096 0 8\nI 1 1\nA 1 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := Load(bytes.NewReader(data)); err == nil {
			m.Check(1, zero)
		}
		if m, err := LoadJournal(bytes.NewReader(data)); err == nil {
			m.Check(1, zero)
		}
	})
}
