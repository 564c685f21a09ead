package blockdev

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Op names a kind of Device operation, for fault injection.
type Op uint8

// Operations a Faulty can fail.
const (
	OpRead     Op = iota // ReadAt
	OpWrite              // WriteAt
	OpWriteFUA           // WriteAtFUA (counted apart from OpWrite)
	OpFlush              // Flush
	OpDiscard            // Discard
	numOps
)

func (op Op) String() string {
	switch op {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpWriteFUA:
		return "write-fua"
	case OpFlush:
		return "flush"
	case OpDiscard:
		return "discard"
	}
	return fmt.Sprintf("Op(%d)", uint8(op))
}

// FaultFunc decides whether one operation fails: it returns nil to let it
// run, or the error to return instead. off and n are the byte range (0, 0
// for OpFlush). It may be called concurrently.
type FaultFunc func(op Op, off int64, n int) error

// Faulty wraps a Device and fails chosen operations, for tests. A failed
// operation is not passed to the wrapped device at all: nothing is read,
// written, flushed or discarded (combine with Mem.Crash to model writes
// that were lost). Injected errors wrap the configured error, so
// errors.Is works on them.
//
// Faulty always implements FUAWriter and Discarder. If the wrapped device
// lacks WriteAtFUA, Faulty emulates it with WriteAt then Flush; if it lacks
// Discard, Discard fails with an error wrapping errors.ErrUnsupported.
// Close is passed through and never injected. Faulty is safe for
// concurrent use, including changing faults while I/O runs.
type Faulty struct {
	d      Device
	fn     atomic.Pointer[FaultFunc]
	rules  [numOps]atomic.Pointer[failRule]
	counts [numOps]atomic.Int64
}

type failRule struct {
	after int64
	err   error
	seen  atomic.Int64
}

var (
	_ Device    = (*Faulty)(nil)
	_ FUAWriter = (*Faulty)(nil)
	_ Discarder = (*Faulty)(nil)
)

// NewFaulty wraps d, initially injecting nothing.
func NewFaulty(d Device) *Faulty { return &Faulty{d: d} }

// Unwrap returns the wrapped device.
func (f *Faulty) Unwrap() Device { return f.d }

// FailAfter lets the next n operations of kind op succeed and fails every
// later one with err (ErrInjected if err is nil), until Reset or another
// FailAfter for op. n = 0 fails from the next call on.
func (f *Faulty) FailAfter(op Op, n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.rules[op].Store(&failRule{after: int64(n), err: err})
}

// SetFault installs fn, consulted before the FailAfter rules on every
// operation; nil removes it.
func (f *Faulty) SetFault(fn FaultFunc) {
	if fn == nil {
		f.fn.Store(nil)
		return
	}
	f.fn.Store(&fn)
}

// Reset removes every fault; counts are kept.
func (f *Faulty) Reset() {
	f.fn.Store(nil)
	for i := range f.rules {
		f.rules[i].Store(nil)
	}
}

// Count returns how many operations of kind op were attempted, failed or
// not.
func (f *Faulty) Count(op Op) int64 { return f.counts[op].Load() }

// fault counts the operation and returns the error to inject, if any.
func (f *Faulty) fault(op Op, off int64, n int) error {
	f.counts[op].Add(1)
	if fn := f.fn.Load(); fn != nil {
		if err := (*fn)(op, off, n); err != nil {
			return fmt.Errorf("blockdev: %v at %d+%d: %w", op, off, n, err)
		}
	}
	if r := f.rules[op].Load(); r != nil && r.seen.Add(1) > r.after {
		return fmt.Errorf("blockdev: %v at %d+%d: %w", op, off, n, r.err)
	}
	return nil
}

// ReadAt implements Device.
func (f *Faulty) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fault(OpRead, off, len(p)); err != nil {
		return 0, err
	}
	return f.d.ReadAt(p, off)
}

// WriteAt implements Device.
func (f *Faulty) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fault(OpWrite, off, len(p)); err != nil {
		return 0, err
	}
	return f.d.WriteAt(p, off)
}

// WriteAtFUA implements FUAWriter.
func (f *Faulty) WriteAtFUA(p []byte, off int64) (int, error) {
	if err := f.fault(OpWriteFUA, off, len(p)); err != nil {
		return 0, err
	}
	if w, ok := f.d.(FUAWriter); ok {
		return w.WriteAtFUA(p, off)
	}
	n, err := f.d.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	return n, f.d.Flush()
}

// Flush implements Device.
func (f *Faulty) Flush() error {
	if err := f.fault(OpFlush, 0, 0); err != nil {
		return err
	}
	return f.d.Flush()
}

// Discard implements Discarder.
func (f *Faulty) Discard(off, n int64) error {
	if err := f.fault(OpDiscard, off, int(n)); err != nil {
		return err
	}
	if d, ok := f.d.(Discarder); ok {
		return d.Discard(off, n)
	}
	return fmt.Errorf("blockdev: discard at %d+%d: %w", off, n, errors.ErrUnsupported)
}

// Size implements Device.
func (f *Faulty) Size() int64 { return f.d.Size() }

// Close implements Device; it is never failed.
func (f *Faulty) Close() error { return f.d.Close() }
