package scsi

import (
	"context"
	"encoding/binary"
)

// maxCompareAndWrite bounds MAXIMUM COMPARE AND WRITE LENGTH (a one-byte
// field of the Block Limits VPD page). VMware's ATS uses one block.
const maxCompareAndWrite = 255

// decodeCompareAndWrite decodes SBC-3 "COMPARE AND WRITE": LOGICAL BLOCK
// ADDRESS in bytes 2-9, NUMBER OF LOGICAL BLOCKS in byte 13. The Data-Out
// buffer holds the verify data (NUMBER OF LOGICAL BLOCKS blocks) followed by
// the write data (as many again).
func (lu *LU) decodeCompareAndWrite(c Command, cdb []byte) Command {
	lba := binary.BigEndian.Uint64(cdb[2:10])
	n := uint32(cdb[13])
	c.DPO = cdb[1]&0x10 != 0
	c.FUA = cdb[1]&0x08 != 0
	if Blocks(n) > lu.maxCAW {
		// SBC-3: more than MAXIMUM COMPARE AND WRITE LENGTH.
		return failedCmd(c.Op, invalidCDB(13, 7))
	}
	if lu.outOfRange(lba, n) {
		return failedCmd(c.Op, errLBAOutOfRange)
	}
	if lu.cfg.ReadOnly {
		return failedCmd(c.Op, errWriteProtected)
	}
	c.LBA, c.Blocks = LBA(lba), Blocks(n)
	c.DataLen = 2 * n << lu.bshift
	if c.DataLen > 0 {
		c.Dir = DirWrite
	}
	return c
}

// execCompareAndWrite runs SBC-3 "COMPARE AND WRITE" as an uninterrupted
// sequence: the stripes of the range are held exclusively (stripes.go) while
// the blocks are read and compared with the verify data and, if they all
// match, the write data is written. A mismatch writes nothing and returns
// MISCOMPARE DURING VERIFY OPERATION with the offset of the first differing
// byte in the INFORMATION field. The write is durable before GOOD when FUA is
// set or the write cache is disabled, as for WRITE. This is what VMware's ATS
// (hardware-assisted locking) relies on, so a partial Data-Out buffer is
// refused rather than half used.
func (lu *LU) execCompareAndWrite(ctx context.Context, cmd *Command, data []byte) Response {
	if cmd.Blocks == 0 {
		return Response{Status: StatusGood}
	}
	half := int(cmd.Blocks) << lu.bshift
	if len(data) < 2*half {
		return lu.fail(errCmdIU)
	}
	st := lu.mode.Load()
	// The write data starts half-way into data, which need not be aligned
	// for the device: write from an aligned copy.
	w := lu.pool.Get(half)
	defer lu.pool.Put(w)
	copy(w.B, data[half:2*half])
	sp := lu.stripes.lock(cmd.LBA, cmd.Blocks)
	defer lu.stripes.unlock(sp)
	if e := lu.compare(ctx, cmd.LBA, data[:half]); e.failed() {
		return lu.fail(e)
	}
	if ctx.Err() != nil {
		return lu.fail(errAborted)
	}
	if err := lu.writeAt(w.B, lu.off(cmd.LBA), cmd.FUA || !st.WCE); err != nil {
		return lu.fail(lu.ioError(err, "compare and write", cmd.LBA, false))
	}
	return Response{Status: StatusGood}
}
