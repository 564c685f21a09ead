package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"sync"
	"testing"

	"hastor/blockdev"
)

func cdbCAW(lba uint64, n byte, flags byte) []byte {
	c := make([]byte, 16)
	c[0], c[1] = opCompareAndWrite, flags
	binary.BigEndian.PutUint64(c[2:10], lba)
	c[13] = n
	return c
}

// SBC-3 "COMPARE AND WRITE": matching verify data writes the write data;
// a mismatch writes nothing and reports MISCOMPARE with the offset of the
// first differing byte (libiscsi CompareAndWrite.Simple, .Miscompare), at
// both ends of the LU and for both block sizes. NUMBER OF LOGICAL BLOCKS 0
// does nothing.
func TestCompareAndWrite_SBC3(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		lu := newTestLU(t, withBlockSize(bs))
		n := newNexus(t, lu)
		for _, lba := range []uint64{0, lu.Capacity() - 3} {
			old, neu := pattern(3*bs, 1), pattern(3*bs, 2)
			expectGood(t, run(t, lu, n, cdbRW(opWrite16, lba, 3, 0), old))
			expectGood(t, run(t, lu, n, cdbCAW(lba, 3, 0), append(append([]byte(nil), old...), neu...)))
			_, d := runData(t, lu, n, cdbRW(opRead16, lba, 3, 0), nil)
			if !bytes.Equal(d, neu) {
				t.Fatalf("bs %d LBA %d: write data not written", bs, lba)
			}
			// The medium now holds neu: comparing with old fails at the
			// first byte where they differ, and nothing is written.
			stale := append([]byte(nil), neu...)
			stale[2*bs+5] ^= 0xFF
			r := run(t, lu, n, cdbCAW(lba, 3, 0), append(stale, fill(3*bs, 0xEE)...))
			p := expectSense(t, r, SenseMiscompare, ascMiscompare)
			if !p.valid || p.info != uint64(2*bs+5) {
				t.Fatalf("bs %d: INFORMATION %d (valid %v), want %d", bs, p.info, p.valid, 2*bs+5)
			}
			_, d = runData(t, lu, n, cdbRW(opRead16, lba, 3, 0), nil)
			if !bytes.Equal(d, neu) {
				t.Fatalf("bs %d LBA %d: a miscompare wrote", bs, lba)
			}
		}
		if cmd := lu.Decode(cdbCAW(0, 0, 0)); !cmd.Valid() || cmd.Dir != DirNone {
			t.Fatalf("0 blocks: %+v", cmd)
		}
		expectGood(t, run(t, lu, n, cdbCAW(0, 0, 0), nil))
	}
}

// COMPARE AND WRITE field checks: LBA OUT OF RANGE, more than MAXIMUM
// COMPARE AND WRITE LENGTH, WRPROTECT≠0 and reserved bits rejected with the
// field pointer, DPO/FUA/FUA_NV accepted (DPOFUA=1), a read-only LU, a
// Data-Out buffer that is not whole (INVALID FIELD IN COMMAND INFORMATION
// UNIT, nothing written), and durability with FUA or WCE=0.
func TestCompareAndWriteFields_SBC3(t *testing.T) {
	mem := blockdev.NewMem(1<<20, 512)
	lu := newTestLU(t, withDev(mem), withWriteCache(), withMaxTransfer(64<<10))
	n := newNexus(t, lu)
	nb := lu.Capacity()
	if lu.maxCAW != 64 {
		t.Fatalf("MAXIMUM COMPARE AND WRITE LENGTH %d, want 64 (half of 128 blocks)", lu.maxCAW)
	}
	for _, c := range []struct {
		lba uint64
		n   byte
	}{{nb, 0}, {nb, 1}, {nb - 1, 2}, {^uint64(0), 1}} {
		expectSense(t, run(t, lu, n, cdbCAW(c.lba, c.n, 0), fill(2*int(c.n)*512, 0)), SenseIllegalRequest, ascLBAOutOfRange)
	}
	expectInvalidCDB(t, run(t, lu, n, cdbCAW(0, 65, 0), fill(65*1024, 0)), 13, 7)
	for p := byte(1); p < 8; p++ {
		expectInvalidCDB(t, run(t, lu, n, cdbCAW(0, 1, p<<5), fill(1024, 0)), 1, 7)
	}
	bad := cdbCAW(0, 1, 0)
	bad[11] = 1
	expectInvalidCDB(t, run(t, lu, n, bad, fill(1024, 0)), 11, 0)
	for _, flags := range []byte{0x10, 0x08, 0x18, 0x02} {
		expectGood(t, run(t, lu, n, cdbCAW(0, 1, flags), fill(1024, 0)))
	}
	ro := newTestLU(t, withReadOnly())
	expectSense(t, run(t, ro, newNexus(t, ro), cdbCAW(0, 1, 0), fill(1024, 0)), SenseDataProtect, ascWriteProtected)

	// The initiator's expected length must match: a 256-block request
	// wraps the one-byte field to 0 blocks.
	cmd := lu.Decode(cdbCAW(0, 0, 0))
	cmd.CheckTransferLength(256 * 2 * 512)
	if cmd.Valid() || cmd.Dir != DirNone {
		t.Fatalf("EDTL mismatch decoded %+v", cmd)
	}
	expectInvalidCDB(t, lu.Execute(context.Background(), n, &cmd, nil), 13, 7)
	cmd = lu.Decode(cdbCAW(0, 1, 0))
	if cmd.CheckTransferLength(1024); !cmd.Valid() {
		t.Fatal("matching EDTL refused")
	}

	// Half a Data-Out buffer: refused, nothing written.
	expectSense(t, run(t, lu, n, cdbCAW(4, 2, 0), fill(2*512, 0)), SenseIllegalRequest, ascInvalidFieldInCmdIU)
	_, d := runData(t, lu, n, cdbRW(opRead10, 4, 2, 0), nil)
	if !bytes.Equal(d, make([]byte, 1024)) {
		t.Fatal("partial COMPARE AND WRITE wrote")
	}

	// WCE=1: only FUA makes the write durable before GOOD.
	expectGood(t, run(t, lu, n, cdbCAW(1, 1, 0), append(fill(512, 0), fill(512, 0x11)...)))
	expectGood(t, run(t, lu, n, cdbCAW(2, 1, 0x08), append(fill(512, 0), fill(512, 0x22)...)))
	mem.Crash()
	_, d = runData(t, lu, n, cdbRW(opRead10, 1, 2, 0), nil)
	if !bytes.Equal(d[:512], make([]byte, 512)) || !bytes.Equal(d[512:], fill(512, 0x22)) {
		t.Fatalf("after a crash: %#x %#x, want 0 (cached) and 22h (FUA)", d[0], d[512])
	}
	expectGood(t, run(t, lu, n, modeSelect6(cachingPage(false)), cachingPage(false)))
	expectGood(t, run(t, lu, n, cdbCAW(1, 1, 0), append(fill(512, 0), fill(512, 0x33)...)))
	mem.Crash()
	if _, d = runData(t, lu, n, cdbRW(opRead10, 1, 1, 0), nil); !bytes.Equal(d, fill(512, 0x33)) {
		t.Fatal("COMPARE AND WRITE with WCE=0 lost")
	}

	// A cancelled command writes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cmd = lu.Decode(cdbCAW(1, 1, 0))
	buf := alignedBuf(1024)
	copy(buf, append(fill(512, 0x33), fill(512, 0x44)...))
	if r := lu.Execute(ctx, n, &cmd, buf); r.Status != StatusTaskAborted {
		t.Fatalf("cancelled: status %#x", r.Status)
	}
	if _, d = runData(t, lu, n, cdbRW(opRead10, 1, 1, 0), nil); !bytes.Equal(d, fill(512, 0x33)) {
		t.Fatal("cancelled COMPARE AND WRITE wrote")
	}
}

// COMPARE AND WRITE is what VMware's ATS locking is built on: many
// initiators race to move a lock block from the value they read to the next
// one, and exactly one wins each step. Here workers increment a counter
// block with COMPARE AND WRITE, retrying on MISCOMPARE; every success must
// be counted exactly once, whatever the interleaving, with plain WRITEs to
// a neighbouring block of the same stripe going on at the same time. The
// device yields before each write, so an unprotected read-compare-write
// would interleave.
func TestCompareAndWriteConcurrentAtomic_SBC3(t *testing.T) {
	f := blockdev.NewFaulty(blockdev.NewMem(1<<20, 512))
	f.SetFault(func(op blockdev.Op, _ int64, _ int) error {
		if op != blockdev.OpRead {
			runtime.Gosched()
		}
		return nil
	})
	lu := newTestLU(t, withDev(f))
	const workers, incs = 6, 30
	block := func(v uint64) []byte {
		b := make([]byte, 512)
		binary.BigEndian.PutUint64(b, v)
		return b
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := &Nexus{InitiatorName: "iqn.ats", ISID: [6]byte{byte(w)}}
			lu.Attach(n)
			defer lu.Detach(n)
			run(t, lu, n, cdb6(opTestUnitReady), nil) // the power-on unit attention
			for done := 0; done < incs; {
				expectGood(t, run(t, lu, n, cdbRW(opWrite10, 9, 1, 0), fill(512, byte(w))))
				r, d := runData(t, lu, n, cdbRW(opRead10, 8, 1, 0), nil)
				expectGood(t, r)
				v := binary.BigEndian.Uint64(d)
				r = run(t, lu, n, cdbCAW(8, 1, 0), append(block(v), block(v+1)...))
				if r.Status == StatusGood {
					done++
				} else {
					expectSense(t, r, SenseMiscompare, ascMiscompare)
				}
			}
		}()
	}
	wg.Wait()
	n := newNexus(t, lu)
	_, d := runData(t, lu, n, cdbRW(opRead10, 8, 1, 0), nil)
	if got := binary.BigEndian.Uint64(d); got != workers*incs {
		t.Fatalf("counter %d, want %d", got, workers*incs)
	}
}
