package scsi

import (
	"bytes"
	"context"
	"errors"

	"hastor/blockdev"
)

// execRead runs SBC-3 "READ (6/10/12/16)". It reads straight
// into data and does not allocate.
func (lu *LU) execRead(cmd *Command, data []byte) Response {
	n := len(data)
	if uint64(n) > uint64(cmd.DataLen) {
		n = int(cmd.DataLen)
	}
	if n == 0 {
		return Response{Status: StatusGood}
	}
	// The device transfers whole blocks: read the last partial block (the
	// initiator's expected length may end inside one) into the slack
	// between len(data) and cap(data).
	rd := (n + lu.bs - 1) &^ (lu.bs - 1)
	if rd > cap(data) {
		lu.log.Error("scsi: READ buffer capacity too small", "need", rd, "cap", cap(data))
		return lu.fail(errInternal)
	}
	if _, err := lu.dev.ReadAt(data[:rd], lu.off(cmd.LBA)); err != nil {
		return lu.fail(lu.ioError(err, "read", cmd.LBA, true))
	}
	return Response{Status: StatusGood, DataLen: n}
}

func (lu *LU) off(lba LBA) int64 { return int64(lba) << lu.bshift }

// dataOut returns the whole blocks of data-out data to process, or
// INVALID FIELD IN COMMAND INFORMATION UNIT if the data ends inside a block
// (see Execute).
func (lu *LU) dataOut(cmd *Command, data []byte) ([]byte, senseErr) {
	if uint64(len(data)) > uint64(cmd.DataLen) {
		data = data[:cmd.DataLen]
	}
	if len(data)&(lu.bs-1) != 0 {
		return nil, errCmdIU
	}
	return data, senseErr{}
}

// execWrite runs SBC-3 "WRITE (6/10/12/16)". The data is durable
// before GOOD when FUA is set or the write cache is disabled. It holds the
// range's stripe locks shared (stripes.go) and does not allocate.
func (lu *LU) execWrite(cmd *Command, data []byte) Response {
	st := lu.mode.Load()
	p, e := lu.dataOut(cmd, data)
	if e.failed() {
		return lu.fail(e)
	}
	if len(p) == 0 {
		return Response{Status: StatusGood}
	}
	sp := lu.stripes.rlock(cmd.LBA, lu.blocksIn(p))
	err := lu.writeAt(p, lu.off(cmd.LBA), cmd.FUA || !st.WCE)
	lu.stripes.runlock(sp)
	if err != nil {
		return lu.fail(lu.ioError(err, "write", cmd.LBA, false))
	}
	return Response{Status: StatusGood}
}

// blocksIn returns the number of logical blocks in p (whole blocks).
func (lu *LU) blocksIn(p []byte) Blocks { return Blocks(len(p) >> lu.bshift) }

// writeAt writes p at off; when durable, the data is on stable storage when
// it returns without error (blockdev: WriteAtFUA, or WriteAt then Flush).
func (lu *LU) writeAt(p []byte, off int64, durable bool) error {
	if !durable {
		_, err := lu.dev.WriteAt(p, off)
		return err
	}
	if lu.fua != nil {
		_, err := lu.fua.WriteAtFUA(p, off)
		return err
	}
	if _, err := lu.dev.WriteAt(p, off); err != nil {
		return err
	}
	return lu.dev.Flush()
}

// execWriteVerify runs SBC-3 "WRITE AND VERIFY (10/12/16)". The
// write is always durable (verification is of the medium, not a cache);
// with BYTCHK=1 the blocks are read back and compared. The stripe locks are
// held shared across the write and the compare, so that no read-modify-write
// command changes the blocks in between.
func (lu *LU) execWriteVerify(ctx context.Context, cmd *Command, data []byte) Response {
	p, e := lu.dataOut(cmd, data)
	if e.failed() {
		return lu.fail(e)
	}
	if len(p) == 0 {
		return Response{Status: StatusGood}
	}
	sp := lu.stripes.rlock(cmd.LBA, lu.blocksIn(p))
	defer lu.stripes.runlock(sp)
	if cmd.bytchk != 0x01 {
		if err := lu.writeAt(p, lu.off(cmd.LBA), true); err != nil {
			return lu.fail(lu.ioError(err, "write", cmd.LBA, false))
		}
		return Response{Status: StatusGood}
	}
	// The device may overwrite what it writes (blockdev.Device): write a
	// copy and compare the medium with the original.
	w := lu.pool.Get(len(p))
	defer lu.pool.Put(w)
	copy(w.B, p)
	if err := lu.writeAt(w.B, lu.off(cmd.LBA), true); err != nil {
		return lu.fail(lu.ioError(err, "write", cmd.LBA, false))
	}
	if e := lu.compare(ctx, cmd.LBA, p); e.failed() {
		return lu.fail(e)
	}
	return Response{Status: StatusGood}
}

// execVerify runs SBC-3 "VERIFY (10/12/16)": BYTCHK 00b reads
// the range to check that it is readable; 01b compares the Data-Out data
// with the medium; 11b compares each block with the one Data-Out block.
// A mismatch returns MISCOMPARE with the offset of the first differing
// byte in the INFORMATION field.
func (lu *LU) execVerify(ctx context.Context, cmd *Command, data []byte) Response {
	if cmd.Blocks == 0 {
		return Response{Status: StatusGood}
	}
	switch cmd.bytchk {
	case 0x00:
		if e := lu.verifyMedium(ctx, cmd.LBA, cmd.Blocks); e.failed() {
			return lu.fail(e)
		}
	case 0x01:
		p, e := lu.dataOut(cmd, data)
		if e.failed() {
			return lu.fail(e)
		}
		if e := lu.compare(ctx, cmd.LBA, p); e.failed() {
			return lu.fail(e)
		}
	case 0x03:
		if len(data) < lu.bs {
			return lu.fail(errCmdIU)
		}
		if e := lu.compareSame(ctx, cmd.LBA, cmd.Blocks, data[:lu.bs]); e.failed() {
			return lu.fail(e)
		}
	}
	return Response{Status: StatusGood}
}

// verifyChunk is the most data VERIFY and WRITE AND VERIFY read at once.
const verifyChunk = 256 << 10

// verifyMedium reads blocks [lba, lba+n) in chunks.
func (lu *LU) verifyMedium(ctx context.Context, lba LBA, n Blocks) senseErr {
	total := int64(n) << lu.bshift
	buf := lu.pool.Get(int(min(total, verifyChunk)))
	defer lu.pool.Put(buf)
	for done := int64(0); done < total; {
		if ctx.Err() != nil {
			return errAborted
		}
		k := min(int64(len(buf.B)), total-done)
		if _, err := lu.dev.ReadAt(buf.B[:k], lu.off(lba)+done); err != nil {
			return lu.ioError(err, "verify", lba, true)
		}
		done += k
	}
	return senseErr{}
}

// compare reads len(p) bytes at lba and compares them with p.
func (lu *LU) compare(ctx context.Context, lba LBA, p []byte) senseErr {
	if len(p) == 0 {
		return senseErr{}
	}
	buf := lu.pool.Get(min(len(p), verifyChunk))
	defer lu.pool.Put(buf)
	for done := 0; done < len(p); {
		if ctx.Err() != nil {
			return errAborted
		}
		k := min(len(buf.B), len(p)-done)
		if _, err := lu.dev.ReadAt(buf.B[:k], lu.off(lba)+int64(done)); err != nil {
			return lu.ioError(err, "verify", lba, true)
		}
		if i := mismatch(buf.B[:k], p[done:done+k]); i >= 0 {
			return miscompare(uint64(done + i))
		}
		done += k
	}
	return senseErr{}
}

// compareSame compares each of the n blocks at lba with block.
func (lu *LU) compareSame(ctx context.Context, lba LBA, n Blocks, block []byte) senseErr {
	total := int64(n) << lu.bshift
	buf := lu.pool.Get(int(min(total, verifyChunk)))
	defer lu.pool.Put(buf)
	for done := int64(0); done < total; {
		if ctx.Err() != nil {
			return errAborted
		}
		k := min(int64(len(buf.B)), total-done)
		if _, err := lu.dev.ReadAt(buf.B[:k], lu.off(lba)+done); err != nil {
			return lu.ioError(err, "verify", lba, true)
		}
		for b := int64(0); b < k; b += int64(lu.bs) {
			if i := mismatch(buf.B[b:b+int64(lu.bs)], block); i >= 0 {
				return miscompare(uint64(done + b + int64(i)))
			}
		}
		done += k
	}
	return senseErr{}
}

// mismatch returns the index of the first byte where a and b differ, or -1.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// execSyncCache runs SBC-3 "SYNCHRONIZE CACHE (10/16)": it
// flushes the whole device (a superset of the range) before returning,
// whatever IMMED says.
func (lu *LU) execSyncCache() Response {
	if err := lu.dev.Flush(); err != nil {
		return lu.fail(lu.ioError(err, "flush", 0, false))
	}
	return Response{Status: StatusGood}
}

// errAborted is returned when ctx ends a long command; Execute turns it
// into TASK ABORTED status.
var errAborted = senseErr{key: SenseAbortedCommand, asc: ascNone}

// ioError maps a device error to sense data (and logs it): MEDIUM ERROR
// UNRECOVERED READ ERROR or WRITE ERROR for I/O failures, DATA PROTECT for
// a read-only device, NOT READY for a closed one, HARDWARE ERROR for
// requests the device rejects as malformed (a bug here).
func (lu *LU) ioError(err error, op string, lba LBA, read bool) senseErr {
	var e senseErr
	switch {
	case errors.Is(err, blockdev.ErrReadOnly):
		e = errWriteProtected
	case errors.Is(err, blockdev.ErrClosed):
		e = errNotReady
	case lu.medium != nil && lu.medium.Ready() != nil:
		e = errNeedsUnlock
	case errors.Is(err, blockdev.ErrAlignment), errors.Is(err, blockdev.ErrOutOfRange):
		e = errInternal
	case read:
		e = errReadError
	default:
		e = errWriteError
	}
	lu.log.Error("scsi: I/O error", "volume", lu.cfg.VolumeID, "op", op, "lba", uint64(lba), "err", err)
	return e
}
