package ackcheck

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hastor/internal/initiator"
)

// ErrNoFreeBlock: every block of the range is busy or poisoned.
var ErrNoFreeBlock = errors.New("ackcheck: no block free to write")

// ByteOffset is an offset on the device in bytes.
type ByteOffset int64

// Device is where the checker writes and reads. Its methods are called
// from many goroutines at once.
type Device interface {
	// WriteAt writes p at off (a whole number of blocks); fua asks for
	// Force Unit Access. A nil error means the write was acknowledged.
	WriteAt(ctx context.Context, p []byte, off ByteOffset, fua bool) error
	// ReadAt fills p from off.
	ReadAt(ctx context.Context, p []byte, off ByteOffset) error
}

// statusError classifies a Device error: errors that match it (errors.As
// of *initiator.SCSIError does) mean the command completed with an error
// status and the device is still usable; any other error ends Run.
func statusError(err error) bool {
	var se *initiator.SCSIError
	return errors.As(err, &se)
}

// sessionDevice is a LUN reached through an initiator session.
type sessionDevice struct {
	s         *initiator.Session
	lun       uint64
	blockSize int
}

// SessionDevice returns a Device for lun on s, whose logical block is
// blockSize bytes (from READ CAPACITY).
func SessionDevice(s *initiator.Session, lun uint64, blockSize int) Device {
	return &sessionDevice{s: s, lun: lun, blockSize: blockSize}
}

func (d *sessionDevice) lba(off ByteOffset, n int) (initiator.LBA, error) {
	if off < 0 || int64(off)%int64(d.blockSize) != 0 || n%d.blockSize != 0 {
		return 0, fmt.Errorf("ackcheck: %d bytes at %d not in %d-byte blocks", n, off, d.blockSize)
	}
	return initiator.LBA(int64(off) / int64(d.blockSize)), nil
}

func (d *sessionDevice) WriteAt(ctx context.Context, p []byte, off ByteOffset, fua bool) error {
	lba, err := d.lba(off, len(p))
	if err != nil {
		return err
	}
	return d.s.Write16(ctx, d.lun, lba, p, d.blockSize, fua)
}

func (d *sessionDevice) ReadAt(ctx context.Context, p []byte, off ByteOffset) error {
	lba, err := d.lba(off, len(p))
	if err != nil {
		return err
	}
	data, err := d.s.Read16(ctx, d.lun, lba, uint32(len(p)/d.blockSize), d.blockSize)
	if err != nil {
		return err
	}
	copy(p, data)
	return nil
}

// RunOptions configure Run.
type RunOptions struct {
	// QueueDepth is the number of writes in flight (default 32). The
	// model's range must hold at least twice as many blocks.
	QueueDepth int
	// FUA sets Force Unit Access on every write.
	FUA bool
	// Writes stops Run after this many writes were issued (0: no limit).
	Writes int64
	// Duration stops Run after this long (0: until ctx ends).
	Duration time.Duration
	// Seed makes the block choice reproducible.
	Seed uint64
	// OnAck, when set, is called after each acknowledged write with the
	// number acknowledged so far, from the writer goroutines: keep it
	// short. A test uses it to crash the target at a chosen point.
	OnAck func(acked int64)
}

// Stats count what Run did.
type Stats struct {
	Issued int64 // writes sent
	Acked  int64 // writes acknowledged with GOOD
	// Unknown writes have an unknown outcome: in flight when the
	// connection died or ctx ended, or completed with an error status.
	Unknown int64
	// Failed counts the Unknown writes that completed with an error status.
	Failed int64
}

// Run writes stamped blocks at random free blocks of m's range, QueueDepth
// at a time, recording each in m, until ctx ends, Duration passes, Writes
// were issued, or the device fails. It returns nil when it stopped because
// of ctx, Duration or Writes, and the device's error when the device
// failed (a lost connection: the expected end of a crash test).
func Run(ctx context.Context, dev Device, m *Model, o RunOptions) (Stats, error) {
	if o.QueueDepth <= 0 {
		o.QueueDepth = 32
	}
	l := m.Layout()
	if l.Count < uint64(2*o.QueueDepth) {
		return Stats{}, fmt.Errorf("ackcheck: %d blocks is too few for %d writes in flight", l.Count, o.QueueDepth)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.Duration > 0 {
		var c2 context.CancelFunc
		runCtx, c2 = context.WithTimeout(runCtx, o.Duration)
		defer c2()
	}
	r := &runner{dev: dev, m: m, o: o, ctx: runCtx, cancel: cancel, rng: rand.New(rand.NewPCG(o.Seed, 0x61636b636865636b))}
	var wg sync.WaitGroup
	for range o.QueueDepth {
		wg.Go(r.worker)
	}
	wg.Wait()
	st := Stats{Issued: r.issued.Load(), Acked: r.acked.Load(), Unknown: r.unknown.Load(), Failed: r.failed.Load()}
	r.mu.Lock()
	defer r.mu.Unlock()
	return st, r.err
}

type runner struct {
	dev    Device
	o      RunOptions
	ctx    context.Context
	cancel context.CancelFunc

	mu  sync.Mutex // guards m, rng and err
	m   *Model
	rng *rand.Rand
	err error

	issued, acked, unknown, failed atomic.Int64
}

// pickLocked chooses a free block and issues a write to it.
func (r *runner) pickLocked() (Block, Seq, error) {
	l := r.m.Layout()
	for range 64 {
		b := l.First + Block(r.rng.Uint64N(l.Count))
		if r.m.Free(b) {
			s, err := r.m.Issue(b)
			return b, s, err
		}
	}
	start := r.rng.Uint64N(l.Count)
	for i := range l.Count {
		b := l.First + Block((start+i)%l.Count)
		if r.m.Free(b) {
			s, err := r.m.Issue(b)
			return b, s, err
		}
	}
	return 0, 0, ErrNoFreeBlock
}

func (r *runner) stop(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.cancel()
}

func (r *runner) worker() {
	bs := r.m.Layout().BlockSize
	buf := make([]byte, bs)
	for r.ctx.Err() == nil {
		if r.o.Writes > 0 && r.issued.Add(1) > r.o.Writes {
			r.issued.Add(-1)
			return
		}
		r.mu.Lock()
		b, s, err := r.pickLocked()
		r.mu.Unlock()
		if err != nil {
			if r.o.Writes > 0 {
				r.issued.Add(-1)
			}
			r.stop(err)
			return
		}
		if r.o.Writes == 0 {
			r.issued.Add(1)
		}
		Stamp(buf, b, s)
		werr := r.dev.WriteAt(r.ctx, buf, ByteOffset(uint64(b)*uint64(bs)), r.o.FUA)
		r.mu.Lock()
		if werr == nil {
			err = r.m.Ack(b, s)
		} else {
			err = r.m.Fail(b, s)
		}
		r.mu.Unlock()
		if err != nil {
			r.stop(err) // journal failure: the model can no longer be trusted
			return
		}
		switch {
		case werr == nil:
			n := r.acked.Add(1)
			if r.o.OnAck != nil {
				r.o.OnAck(n)
			}
		case statusError(werr):
			r.unknown.Add(1)
			r.failed.Add(1)
		default:
			r.unknown.Add(1)
			if r.ctx.Err() == nil {
				r.stop(fmt.Errorf("ackcheck: write of block %d: %w", b, werr))
			}
			return
		}
	}
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// All checks every block of the range, not only the touched ones
	// (untouched blocks must read as zeros).
	All bool
	// QueueDepth is the number of reads in flight (default 16).
	QueueDepth int
	// MaxBlocksPerRead bounds one read command (default 16).
	MaxBlocksPerRead int
}

// Report is the result of Verify.
type Report struct {
	Checked int
	// Counts by outcome.
	Initial, Acked, Unacked int
	// Violations, ascending by block.
	Violations []Verdict
}

// OK reports whether no violation was found.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d blocks checked: %d initial, %d last-acked, %d unacked-landed, %d violations",
		r.Checked, r.Initial, r.Acked, r.Unacked, len(r.Violations))
	for i, v := range r.Violations {
		if i == 20 {
			fmt.Fprintf(&b, "\n  ... %d more", len(r.Violations)-i)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(v.String())
	}
	return b.String()
}

// Add counts one verdict.
func (r *Report) Add(v Verdict) {
	r.Checked++
	switch v.Outcome {
	case OutcomeInitial:
		r.Initial++
	case OutcomeAcked:
		r.Acked++
	case OutcomeUnacked:
		r.Unacked++
	default:
		r.Violations = append(r.Violations, v)
	}
}

// Verify reads back the blocks m touched (or all of its range) and judges
// each with m.Check. It returns an error only when the device fails; the
// device's content is judged in the Report. m must not change meanwhile.
func Verify(ctx context.Context, dev Device, m *Model, o VerifyOptions) (*Report, error) {
	if o.QueueDepth <= 0 {
		o.QueueDepth = 16
	}
	if o.MaxBlocksPerRead <= 0 {
		o.MaxBlocksPerRead = 16
	}
	l := m.Layout()
	type span struct {
		first Block
		n     int
	}
	var spans []span
	add := func(b Block) {
		if k := len(spans) - 1; k >= 0 && spans[k].first+Block(spans[k].n) == b && spans[k].n < o.MaxBlocksPerRead {
			spans[k].n++
			return
		}
		spans = append(spans, span{first: b, n: 1})
	}
	if o.All {
		for i := range l.Count {
			add(l.First + Block(i))
		}
	} else {
		for _, b := range m.Touched() {
			add(b)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan span)
	var (
		mu       sync.Mutex
		rep      Report
		firstErr error
		wg       sync.WaitGroup
	)
	for range o.QueueDepth {
		wg.Go(func() {
			buf := make([]byte, o.MaxBlocksPerRead*l.BlockSize)
			for sp := range work {
				p := buf[:sp.n*l.BlockSize]
				if err := dev.ReadAt(ctx, p, ByteOffset(uint64(sp.first)*uint64(l.BlockSize))); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("ackcheck: read blocks %d+%d: %w", sp.first, sp.n, err)
					}
					mu.Unlock()
					cancel()
					continue
				}
				verdicts := make([]Verdict, sp.n)
				for i := range sp.n {
					b := sp.first + Block(i)
					verdicts[i] = m.Check(b, Decode(p[i*l.BlockSize:(i+1)*l.BlockSize], b))
				}
				mu.Lock()
				for _, v := range verdicts {
					rep.Add(v)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, sp := range spans {
		select {
		case work <- sp:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(rep.Violations, func(a, b Verdict) int {
		switch {
		case a.Block < b.Block:
			return -1
		case a.Block > b.Block:
			return 1
		}
		return 0
	})
	return &rep, nil
}
