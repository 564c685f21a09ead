package scsi

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"hastor/blockdev"
)

// lockedDev is a Mem device that is not ready until unlocked, as an
// encrypted volume without its key.
type lockedDev struct {
	*blockdev.Mem
	ready atomic.Bool
}

var errLockedForTest = errors.New("locked")

func (d *lockedDev) Ready() error {
	if d.ready.Load() {
		return nil
	}
	return errLockedForTest
}

func (d *lockedDev) ReadAt(p []byte, off int64) (int, error) {
	if err := d.Ready(); err != nil {
		return 0, err
	}
	return d.Mem.ReadAt(p, off)
}

var _ Medium = (*lockedDev)(nil)

// TestMediumNotReady checks SPC-4 "TEST UNIT READY" / SBC-3: while the
// Medium is not ready, medium-access commands end with NOT READY 04h/03h,
// INQUIRY and REPORT LUNS still work, REQUEST SENSE reports the condition,
// and becoming ready raises UNIT ATTENTION 28h/00h.
func TestMediumNotReady(t *testing.T) {
	dev := &lockedDev{Mem: blockdev.NewMem(1<<20, 512)}
	lu := newTestLU(t, withDev(dev))
	n := &Nexus{InitiatorName: "iqn.2024-01.test:init", ISID: [6]byte{0x80, 0, 0, 0, 0xEE, 1},
		TargetName: "iqn.2024-01.test:tgt", RelativeTargetPort: 1, TPGT: 1}
	lu.Attach(n)
	expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)

	for name, cdb := range map[string][]byte{
		"TEST UNIT READY":   cdb6(opTestUnitReady),
		"READ CAPACITY(10)": cdb6(opReadCapacity10),
		"READ(10)":          cdbRW(opRead10, 0, 1, 0),
		"VERIFY(10)":        cdbRW(opVerify10, 0, 1, 0),
	} {
		t.Run(name, func(t *testing.T) {
			expectSense(t, run(t, lu, n, cdb, nil), SenseNotReady, ascLUNotReadyManual)
		})
	}
	expectSense(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, 0), pattern(512, 1)), SenseNotReady, ascLUNotReadyManual)
	expectGood(t, run(t, lu, n, cdb6(opInquiry, 0, 0, 0, 96), nil))
	expectGood(t, run(t, lu, n, cdb6(opModeSense6, 0, 0x3F, 0, 255), nil))

	r, data := runData(t, lu, n, cdb6(opRequestSense, 0, 0, 0, 252), nil)
	expectGood(t, r)
	if p := parseSense(t, data); p.key != SenseNotReady || p.asc != ascLUNotReadyManual {
		t.Fatalf("REQUEST SENSE while not ready: key %v asc %04x, want NOT READY 0403", p.key, p.asc)
	}

	dev.ready.Store(true)
	lu.MediumReady()
	expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascNotReadyToReady)
	expectGood(t, run(t, lu, n, cdb6(opTestUnitReady), nil))
	expectGood(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, 0), pattern(512, 1)))
}

// TestMediumReadyOnce checks that NOT READY TO READY CHANGE reaches each
// nexus that was told NOT READY exactly once, on its first command after
// the change even when the owner's MediumReady call comes later, and never
// reaches a nexus that only saw the Medium ready.
func TestMediumReadyOnce(t *testing.T) {
	dev := &lockedDev{Mem: blockdev.NewMem(1<<20, 512)}
	lu := newTestLU(t, withDev(dev))
	attach := func(isid byte) *Nexus {
		n := &Nexus{InitiatorName: "iqn.2024-01.test:init", ISID: [6]byte{0x80, 0, 0, 0, 0xEF, isid},
			TargetName: "iqn.2024-01.test:tgt", RelativeTargetPort: 1, TPGT: 1}
		lu.Attach(n)
		expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
		return n
	}
	told, quiet := attach(1), attach(2)
	expectSense(t, run(t, lu, told, cdb6(opTestUnitReady), nil), SenseNotReady, ascLUNotReadyManual)

	dev.ready.Store(true) // the owner has not called MediumReady yet
	late := attach(3)
	expectGood(t, run(t, lu, late, cdb6(opTestUnitReady), nil))
	expectSense(t, run(t, lu, told, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascNotReadyToReady)
	lu.MediumReady()
	for name, n := range map[string]*Nexus{"told": told, "quiet": quiet, "late": late} {
		if r := run(t, lu, n, cdb6(opTestUnitReady), nil); r.Status != StatusGood {
			t.Errorf("%s nexus after MediumReady: status %#x, want GOOD", name, r.Status)
		}
	}
}

// clobberDev overwrites every buffer it writes, as an encrypting device
// does (blockdev.Device allows it).
type clobberDev struct{ *blockdev.Mem }

func (d clobberDev) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.Mem.WriteAt(p, off)
	for i := range p {
		p[i] ^= 0xA5
	}
	return n, err
}

// TestWriteVerifyOnClobberingDevice checks that WRITE AND VERIFY with
// BYTCHK=1 compares the medium with the data-out data, not with what the
// device left in the buffer.
func TestWriteVerifyOnClobberingDevice(t *testing.T) {
	lu := newTestLU(t, withDev(clobberDev{blockdev.NewMem(1<<20, 512)}))
	n := newNexus(t, lu)
	want := pattern(1024, 7)
	expectGood(t, run(t, lu, n, cdbRW(opWriteVerify10, 4, 2, 0x02), want))
	r, got := runData(t, lu, n, cdbRW(opRead10, 4, 2, 0), nil)
	expectGood(t, r)
	if !bytes.Equal(got, want) {
		t.Fatal("read back differs from written data")
	}
}

// standbyDev reports the ALUA standby state, as a replicated LUN on its
// secondary node does.
type standbyDev struct{ *blockdev.Mem }

func (d *standbyDev) Ready() error { return fmt.Errorf("secondary: %w", ErrStandby) }

// TestMediumStandby checks SPC-4 "Asymmetric logical unit access": a LUN in
// the standby state refuses medium access with NOT READY, LOGICAL UNIT NOT
// ACCESSIBLE, TARGET PORT IN STANDBY STATE (04h/0Bh), not a PDL-type sense,
// and REQUEST SENSE reports it; INQUIRY still works.
func TestMediumStandby(t *testing.T) {
	lu := newTestLU(t, withDev(&standbyDev{blockdev.NewMem(1<<20, 512)}))
	n := &Nexus{InitiatorName: "iqn.2024-01.test:init", ISID: [6]byte{0x80, 0, 0, 0, 0xEE, 2},
		TargetName: "iqn.2024-01.test:tgt", RelativeTargetPort: 1, TPGT: 1}
	lu.Attach(n)
	expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascPowerOnResetOccurred)
	expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseNotReady, ascLUNotAccessStandby)
	expectSense(t, run(t, lu, n, cdbRW(opRead10, 0, 1, 0), nil), SenseNotReady, ascLUNotAccessStandby)
	expectSense(t, run(t, lu, n, cdbRW(opWrite10, 0, 1, 0), pattern(512, 1)), SenseNotReady, ascLUNotAccessStandby)
	expectGood(t, run(t, lu, n, cdb6(opInquiry, 0, 0, 0, 96), nil))
}

// resizableDev is a Mem device whose reported size can shrink, as an
// encrypted replicated volume's does once its header is read.
type resizableDev struct {
	*blockdev.Mem
	size atomic.Int64
}

func (d *resizableDev) Size() int64 { return d.size.Load() }

// TestSetCapacity checks SBC-3 "Capacity changes": a changed capacity is
// reported by READ CAPACITY, bounds LBAs, and raises UNIT ATTENTION 2Ah/09h
// CAPACITY DATA HAS CHANGED once on each I_T nexus; an unchanged one raises
// nothing.
func TestSetCapacity(t *testing.T) {
	dev := &resizableDev{Mem: blockdev.NewMem(1<<20, 512)}
	dev.size.Store(1 << 20)
	lu := newTestLU(t, withDev(dev))
	n := newNexus(t, lu)
	dev.size.Store(512 << 10)
	lu.SetCapacity()
	expectSense(t, run(t, lu, n, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascCapacityChanged)
	r, data := runData(t, lu, n, cdb6(opReadCapacity10), nil)
	expectGood(t, r)
	if last := uint32(data[0])<<24 | uint32(data[1])<<16 | uint32(data[2])<<8 | uint32(data[3]); last != 1023 {
		t.Fatalf("READ CAPACITY: last LBA %d, want 1023", last)
	}
	expectSense(t, run(t, lu, n, cdbRW(opRead10, 1024, 1, 0), nil), SenseIllegalRequest, ascLBAOutOfRange)
	lu.SetCapacity()
	expectGood(t, run(t, lu, n, cdb6(opTestUnitReady), nil))
}
