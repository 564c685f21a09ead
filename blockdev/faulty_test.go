package blockdev

import (
	"errors"
	"testing"
)

func TestFaultyContract(t *testing.T) {
	testDeviceContract(t, NewFaulty(NewMem(4<<20, 4096)), 4096)
}

func TestFaultyFailAfter(t *testing.T) {
	m := NewMem(64*512, 512)
	f := NewFaulty(m)
	p := NewPool()
	b := p.Get(512)
	errBoom := errors.New("boom")

	f.FailAfter(OpWrite, 2, errBoom)
	for i := range 5 {
		_, err := f.WriteAt(b.B, int64(i)*512)
		if i < 2 && err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i >= 2 && !errors.Is(err, errBoom) {
			t.Fatalf("write %d = %v, want errBoom", i, err)
		}
	}
	// Other operations are unaffected, and failed writes did nothing.
	if _, err := f.ReadAt(b.B, 0); err != nil {
		t.Fatal(err)
	}
	if d := m.Dirty(); len(d) != 2 {
		t.Errorf("%d blocks written, want 2 (failed writes must not reach the device)", len(d))
	}
	if got := f.Count(OpWrite); got != 5 {
		t.Errorf("Count(OpWrite) = %d, want 5", got)
	}

	f.FailAfter(OpFlush, 0, nil)
	if err := f.Flush(); !errors.Is(err, ErrInjected) {
		t.Errorf("Flush = %v, want ErrInjected", err)
	}
	f.Reset()
	if _, err := f.WriteAt(b.B, 0); err != nil {
		t.Errorf("write after Reset: %v", err)
	}
	if err := f.Flush(); err != nil {
		t.Errorf("flush after Reset: %v", err)
	}
}

func TestFaultySetFault(t *testing.T) {
	m := NewMem(64*512, 512)
	f := NewFaulty(m)
	p := NewPool()
	b := p.Get(512)
	errMedium := errors.New("medium error")
	// A bad block at 10: reads and writes touching it fail.
	f.SetFault(func(op Op, off int64, n int) error {
		if (op == OpRead || op == OpWrite || op == OpWriteFUA) && off <= 10*512 && 10*512 < off+int64(n) {
			return errMedium
		}
		return nil
	})
	if _, err := f.ReadAt(b.B, 9*512); err != nil {
		t.Errorf("read of good block: %v", err)
	}
	if _, err := f.ReadAt(b.B, 10*512); !errors.Is(err, errMedium) {
		t.Errorf("read of bad block = %v", err)
	}
	if _, err := f.WriteAtFUA(b.B, 10*512); !errors.Is(err, errMedium) {
		t.Errorf("FUA write of bad block = %v", err)
	}
	if err := f.Discard(10*512, 512); err != nil {
		t.Errorf("discard: %v", err)
	}
	f.SetFault(nil)
	if _, err := f.ReadAt(b.B, 10*512); err != nil {
		t.Errorf("read after SetFault(nil): %v", err)
	}
	for op := range numOps {
		if op.String() == "" || op.String()[0] == 'O' {
			t.Errorf("Op %d has no name: %q", op, op.String())
		}
	}
}

// plainDevice hides the optional interfaces of the device it wraps.
type plainDevice struct{ Device }

func TestFaultyWithoutOptionalInterfaces(t *testing.T) {
	m := NewMem(64*512, 512)
	f := NewFaulty(plainDevice{m})
	p := NewPool()
	b := p.Get(512)
	b.B[0] = 1
	// Emulated FUA: WriteAt then Flush, so durable at return.
	if _, err := f.WriteAtFUA(b.B, 0); err != nil {
		t.Fatal(err)
	}
	m.Crash()
	r := p.Get(512)
	if _, err := f.ReadAt(r.B, 0); err != nil || r.B[0] != 1 {
		t.Errorf("emulated FUA write lost by Crash (err %v)", err)
	}
	if err := f.Discard(0, 512); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Discard = %v, want errors.ErrUnsupported", err)
	}
	if f.Unwrap() != (plainDevice{m}) {
		t.Error("Unwrap returned another device")
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

// TestFaultyWithCrash shows the intended use: a write that failed never
// happened, a write not flushed is lost on Crash, a flushed one survives.
func TestFaultyWithCrash(t *testing.T) {
	m := NewMem(64*4096, 4096)
	f := NewFaulty(m)
	p := NewPool()
	b := p.Get(4096)
	for i := range b.B {
		b.B[i] = 0xaa
	}
	if _, err := f.WriteAt(b.B, 0); err != nil {
		t.Fatal(err)
	}
	f.FailAfter(OpFlush, 0, nil)
	if err := f.Flush(); err == nil {
		t.Fatal("flush did not fail")
	}
	m.Crash()
	r := p.Get(4096)
	if _, err := f.ReadAt(r.B, 0); err != nil {
		t.Fatal(err)
	}
	if !allZero(r.B) {
		t.Error("write survived a crash although its flush failed")
	}
}
