package scsi

import (
	"bytes"
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"hastor/blockdev"
)

func cdbORWrite(lba uint64, n uint32, flags byte) []byte {
	return cdbRW(opORWrite16, lba, n, flags)
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// SBC-3 "ORWRITE (16)": the Data-Out data is ORed into the blocks
// (libiscsi OrWrite.Verify: 0 | A5h = A5h, A5h | 5Ah = FFh), at the start
// and the end of the LU, for both block sizes.
func TestORWrite_SBC3(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		lu := newTestLU(t, withBlockSize(bs))
		n := newNexus(t, lu)
		nb := lu.Capacity()
		for _, lba := range []uint64{0, nb - 3} {
			expectGood(t, run(t, lu, n, cdbRW(opWrite16, lba, 3, 0), fill(3*bs, 0)))
			expectGood(t, run(t, lu, n, cdbORWrite(lba, 3, 0), fill(3*bs, 0xA5)))
			r, d := runData(t, lu, n, cdbRW(opRead16, lba, 3, 0), nil)
			expectGood(t, r)
			if !bytes.Equal(d, fill(3*bs, 0xA5)) {
				t.Fatalf("bs %d LBA %d: not A5h after the first ORWRITE", bs, lba)
			}
			expectGood(t, run(t, lu, n, cdbORWrite(lba, 3, 0), fill(3*bs, 0x5A)))
			_, d = runData(t, lu, n, cdbRW(opRead16, lba, 3, 0), nil)
			if !bytes.Equal(d, fill(3*bs, 0xFF)) {
				t.Fatalf("bs %d LBA %d: not FFh after the second ORWRITE", bs, lba)
			}
		}
		// An arbitrary pattern, not a multiple of 8 bytes away from
		// anything: byte-exact OR.
		old, in := pattern(2*bs, 3), pattern(2*bs, 200)
		expectGood(t, run(t, lu, n, cdbRW(opWrite16, 10, 2, 0), old))
		expectGood(t, run(t, lu, n, cdbORWrite(10, 2, 0), in))
		_, d := runData(t, lu, n, cdbRW(opRead16, 10, 2, 0), nil)
		for i := range d {
			if d[i] != old[i]|in[i] {
				t.Fatalf("byte %d: %#x, want %#x", i, d[i], old[i]|in[i])
			}
		}
	}
}

// ORWRITE field checks, as for WRITE (16) (libiscsi OrWrite.BeyondEol,
// ZeroBlocks, Protect, DpoFua): LBA OUT OF RANGE even for 0 blocks,
// ORPROTECT≠0 rejected, DPO/FUA/FUA_NV accepted, MAXIMUM TRANSFER LENGTH,
// read-only LU, and the usage data agrees with the decoder.
func TestORWriteFields_SBC3(t *testing.T) {
	lu := newTestLU(t, withMaxTransfer(64<<10))
	n := newNexus(t, lu)
	nb := lu.Capacity()
	if cmd := lu.Decode(cdbORWrite(0, 0, 0)); cmd.Dir != DirNone || !cmd.Valid() {
		t.Fatalf("0 blocks: %+v", cmd)
	}
	expectGood(t, run(t, lu, n, cdbORWrite(0, 0, 0), nil))
	for _, c := range []struct {
		lba uint64
		n   uint32
	}{{nb, 0}, {nb + 1, 0}, {1 << 63, 0}, {^uint64(0), 0}, {nb, 1}, {nb - 1, 2}, {1 << 63, 1}, {^uint64(0), 8}} {
		r := run(t, lu, n, cdbORWrite(c.lba, c.n, 0), fill(int(c.n)*512, 1))
		expectSense(t, r, SenseIllegalRequest, ascLBAOutOfRange)
	}
	for p := byte(1); p < 8; p++ {
		expectInvalidCDB(t, run(t, lu, n, cdbORWrite(0, 1, p<<5), fill(512, 1)), 1, 7)
	}
	for _, flags := range []byte{0x10, 0x08, 0x18, 0x02, 0x1A} {
		expectGood(t, run(t, lu, n, cdbORWrite(0, 1, flags), fill(512, 1)))
	}
	if cmd := lu.Decode(cdbORWrite(0, 1, 0x18)); !cmd.FUA || !cmd.DPO {
		t.Fatal("DPO/FUA not decoded")
	}
	expectInvalidCDB(t, run(t, lu, n, cdbORWrite(0, 129, 0), nil), 10, 7)
	c := cdbORWrite(0, 1, 0)
	c[14] = 0x1F // GROUP NUMBER: ignored
	expectGood(t, run(t, lu, n, c, fill(512, 1)))
	c[14] = 0x20
	expectInvalidCDB(t, run(t, lu, n, c, fill(512, 1)), 14, 5)

	ro := newTestLU(t, withReadOnly())
	rn := newNexus(t, ro)
	expectSense(t, run(t, ro, rn, cdbORWrite(0, 1, 0), fill(512, 1)), SenseDataProtect, ascWriteProtected)

	// Usage data: DPO and FUA (libiscsi OrWrite.DpoFua).
	_, one := runData(t, lu, n, rsoc(false, 1, opORWrite16, 0, 64), nil)
	if one[1]&0x07 != 0x03 || one[5]&0x18 != 0x18 {
		t.Fatalf("ORWRITE one-command data % x", one)
	}
}

// FUA or WCE=0 make the ORWRITE result durable before GOOD (SBC-3 "write
// caching"); with WCE=1 and no FUA it is not (blockdev.Mem.Crash).
func TestORWriteDurability_SBC3(t *testing.T) {
	mem := blockdev.NewMem(1<<20, 512)
	lu := newTestLU(t, withDev(mem), withWriteCache())
	n := newNexus(t, lu)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 1, 2, 0x08), fill(1024, 0x01))) // durable base
	expectGood(t, run(t, lu, n, cdbORWrite(1, 1, 0), fill(512, 0x02)))
	expectGood(t, run(t, lu, n, cdbORWrite(2, 1, 0x08), fill(512, 0x04)))
	mem.Crash()
	_, d := runData(t, lu, n, cdbRW(opRead10, 1, 2, 0), nil)
	if !bytes.Equal(d[:512], fill(512, 0x01)) {
		t.Fatal("cached ORWRITE survived a crash")
	}
	if !bytes.Equal(d[512:], fill(512, 0x05)) {
		t.Fatal("FUA ORWRITE lost")
	}
	expectGood(t, run(t, lu, n, modeSelect6(cachingPage(false)), cachingPage(false)))
	expectGood(t, run(t, lu, n, cdbORWrite(1, 1, 0), fill(512, 0x08)))
	mem.Crash()
	_, d = runData(t, lu, n, cdbRW(opRead10, 1, 1, 0), nil)
	if !bytes.Equal(d, fill(512, 0x09)) {
		t.Fatal("ORWRITE with WCE=0 lost")
	}
}

// A failed read writes nothing (MEDIUM ERROR); a cancelled ORWRITE is
// TASK ABORTED and writes nothing; a Data-Out that ends inside a block is
// INVALID FIELD IN COMMAND INFORMATION UNIT; a short one in whole blocks
// ORs only those.
func TestORWriteErrors(t *testing.T) {
	f := blockdev.NewFaulty(blockdev.NewMem(1<<20, 512))
	lu := newTestLU(t, withDev(f))
	n := newNexus(t, lu)
	f.SetFault(func(op blockdev.Op, off int64, _ int) error {
		if op == blockdev.OpRead && off == 7*512 {
			return blockdev.ErrInjected
		}
		return nil
	})
	writes := f.Count(blockdev.OpWriteFUA) + f.Count(blockdev.OpWrite)
	expectSense(t, run(t, lu, n, cdbORWrite(7, 1, 0), fill(512, 1)), SenseMediumError, ascUnrecoveredReadError)
	if f.Count(blockdev.OpWriteFUA)+f.Count(blockdev.OpWrite) != writes {
		t.Fatal("ORWRITE wrote after its read failed")
	}
	f.Reset()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cmd := lu.Decode(cdbORWrite(8, 1, 0))
	buf := alignedBuf(512)
	copy(buf, fill(512, 0xFF))
	if r := lu.Execute(ctx, n, &cmd, buf); r.Status != StatusTaskAborted {
		t.Fatalf("cancelled ORWRITE: status %#x", r.Status)
	}
	_, d := runData(t, lu, n, cdbRW(opRead10, 8, 1, 0), nil)
	if !bytes.Equal(d, make([]byte, 512)) {
		t.Fatal("cancelled ORWRITE wrote")
	}

	cmd = lu.Decode(cdbORWrite(9, 2, 0))
	buf = alignedBuf(700)
	copy(buf, fill(700, 0x10))
	expectSense(t, lu.Execute(context.Background(), n, &cmd, buf), SenseIllegalRequest, ascInvalidFieldInCmdIU)
	buf = alignedBuf(512)
	copy(buf, fill(512, 0x10))
	expectGood(t, lu.Execute(context.Background(), n, &cmd, buf))
	_, d = runData(t, lu, n, cdbRW(opRead10, 9, 2, 0), nil)
	if !bytes.Equal(d[:512], fill(512, 0x10)) || !bytes.Equal(d[512:], make([]byte, 512)) {
		t.Fatal("short ORWRITE: wrong blocks changed")
	}
}

// Concurrent overlapping ORWRITEs are uninterrupted sequences (SBC-3
// "ORWRITE (16)"): each sets its own bit in every byte of a shared range,
// and every bit survives, as if they ran one after the other. Without the
// stripe lock, read-modify-write races lose bits. Ranges straddle stripe
// boundaries and vary in length. The device yields the processor before
// each write so that unprotected read-modify-writes would interleave.
func TestORWriteConcurrentAtomic_SBC3(t *testing.T) {
	f := blockdev.NewFaulty(blockdev.NewMem(8<<20, 512))
	f.SetFault(func(op blockdev.Op, _ int64, _ int) error {
		if op != blockdev.OpRead {
			runtime.Gosched()
		}
		return nil
	})
	lu := newTestLU(t, withDev(f))
	const workers, rounds = 8, 40
	stripe := uint64(1) << lu.stripes.shift
	base := 3*stripe - 4 // the hot range crosses a stripe boundary
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := &Nexus{InitiatorName: "iqn.or", ISID: [6]byte{byte(w)}}
			lu.Attach(n)
			defer lu.Detach(n)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for r := 0; r < rounds; r++ {
				// Round r of worker w sets bit w of every byte in a
				// random sub-range that always covers [base, base+8).
				lo := base - uint64(rng.IntN(4))
				nb := uint32(base+8-lo) + uint32(rng.IntN(4))
				data := fill(int(nb)*512, 1<<w)
				for {
					res := run(t, lu, n, cdbORWrite(lo, nb, 0), data)
					if res.Status == StatusCheckCondition && parseSense(t, res.SenseData()).key == SenseUnitAttention {
						continue
					}
					expectGood(t, res)
					break
				}
			}
		}()
	}
	wg.Wait()
	n := newNexus(t, lu)
	_, d := runData(t, lu, n, cdbRW(opRead16, base, 8, 0), nil)
	if !bytes.Equal(d, fill(8*512, 0xFF)) {
		t.Fatalf("lost ORWRITE bits: first byte %#x", d[0])
	}
}

// While an ORWRITE holds its stripes (paused inside its read), a WRITE to
// the same blocks waits and lands after the ORWRITE's write, so the WRITE's
// data is what remains; a WRITE elsewhere and READs of the same blocks go
// ahead (stripes.go).
func TestORWriteExcludesWrites(t *testing.T) {
	f := blockdev.NewFaulty(blockdev.NewMem(1<<20, 512))
	lu := newTestLU(t, withDev(f))
	n := newNexus(t, lu)
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 5, 1, 0), fill(512, 0x01)))
	reading, release := make(chan struct{}), make(chan struct{})
	var paused atomic.Bool
	f.SetFault(func(op blockdev.Op, off int64, _ int) error {
		if op == blockdev.OpRead && off == 5*512 && paused.CompareAndSwap(false, true) {
			close(reading)
			<-release
		}
		return nil
	})
	orDone := make(chan Response)
	go func() { orDone <- run(t, lu, n, cdbORWrite(5, 1, 0), fill(512, 0x02)) }()
	<-reading
	// The stripe of LBA 5 is held exclusively; others are free.
	sp := lu.stripes.span(5, 1)
	if lu.stripes.locks[sp.lo1].TryRLock() {
		t.Fatal("ORWRITE does not hold its stripe")
	}
	far := LBA(1) << lu.stripes.shift
	if sp2 := lu.stripes.span(far, 1); sp2.lo1 == sp.lo1 {
		t.Fatal("test expects different stripes")
	}
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, uint64(far), 1, 0), fill(512, 0x07)))
	r, d := runData(t, lu, n, cdbRW(opRead10, 5, 1, 0), nil)
	expectGood(t, r)
	if !bytes.Equal(d, fill(512, 0x01)) {
		t.Fatalf("READ during the ORWRITE: %#x", d[0])
	}
	n2 := newNexus(t, lu)
	wDone := make(chan Response)
	go func() { wDone <- run(t, lu, n2, cdbRW(opWrite10, 5, 1, 0), fill(512, 0x40)) }()
	close(release)
	expectGood(t, <-orDone)
	expectGood(t, <-wDone)
	f.SetFault(nil)
	_, d = runData(t, lu, n, cdbRW(opRead10, 5, 1, 0), nil)
	if !bytes.Equal(d, fill(512, 0x40)) {
		t.Fatalf("LBA 5 is %#x, want the later WRITE's 40h", d[0])
	}
}
