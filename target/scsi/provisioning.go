package scsi

import (
	"context"
	"encoding/binary"

	"hastor/blockdev"
)

// WRITE SAME, UNMAP and logical block provisioning (SBC-3 "logical block
// provisioning", "WRITE SAME (10)", "UNMAP").
//
// WRITE SAME is supported by every LU: the one Data-Out block (zeros with
// NDOB) is written to each block of the range, in chunks, each under its
// stripes' shared locks like a WRITE.
//
// An LU whose device can deallocate (blockdev.Discarder) is thin provisioned:
// READ CAPACITY(16) reports LBPME=1 and LBPRZ=1, the Logical Block
// Provisioning VPD page reports LBPU and LBPWS, UNMAP is supported, and
// WRITE SAME (16) with UNMAP=1 and a zero block deallocates the range instead
// of writing it. A deallocated block reads as zeros (the Discarder contract),
// which is what LBPRZ=1 promises; a non-zero block is written (SBC-3 "WRITE
// SAME command and unmap operations"). Other devices (an encrypted
// volume) are fully provisioned: UNMAP is an unsupported operation
// code and WRITE SAME with UNMAP=1 is INVALID FIELD IN CDB.
//
// WRITE SAME (10) never unmaps (LBPWS10=0, UNMAP=1 is INVALID FIELD IN CDB):
// libiscsi 1.19's WriteSame10.UnmapUntilEnd sends a block of FFh with
// UNMAP=1 and expects zeros back, which the rule above forbids. Linux and
// ESXi deallocate with UNMAP or WRITE SAME (16), so nothing is lost.
//
// Deallocation is as durable as a write: with the write cache disabled the
// device is flushed before GOOD.

// Limits reported in the Block Limits VPD page.
const (
	// maxWriteSameBytes bounds MAXIMUM WRITE SAME LENGTH. It is below
	// 65536 blocks of 512 bytes so that an initiator that reads back what
	// it wrote with one READ stays within MAXIMUM TRANSFER LENGTH.
	maxWriteSameBytes = 16 << 20
	// maxUnmapBytes bounds MAXIMUM UNMAP LBA COUNT, the blocks one UNMAP
	// may deallocate (at most 2^20 blocks, which libiscsi's
	// Inquiry.BlockLimits takes as the sane limit).
	maxUnmapBytes = 512 << 20
	// maxUnmapDescriptors is MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
	maxUnmapDescriptors = 256
	// writeSameChunk is the most WRITE SAME writes at once.
	writeSameChunk = 1 << 20
)

// UNMAP parameter list layout (SBC-3 "UNMAP parameter list").
const (
	unmapHdrLen  = 8
	unmapDescLen = 16
)

// thin reports whether lu is thin provisioned (see above).
func (lu *LU) thin() bool { return lu.disc != nil }

// decodeWriteSame decodes SBC-3 "WRITE SAME (10)" and "WRITE SAME (16)".
// NUMBER OF LOGICAL BLOCKS 0 means every block from the LBA to the last one
// (WSNZ=0), within MAXIMUM WRITE SAME LENGTH like any other length.
func (lu *LU) decodeWriteSame(c Command, cdb []byte) Command {
	op := c.Op
	lba, n, nOff := rwFields(cdb)
	c.unmap = cdb[1]&0x08 != 0
	c.ndob = op == opWriteSame16 && cdb[1]&0x01 != 0
	if c.unmap && !lu.thin() {
		return failedCmd(op, invalidCDB(1, 3))
	}
	capacity := lu.capacity()
	if lba >= capacity {
		return failedCmd(op, errLBAOutOfRange)
	}
	blocks := uint64(n)
	if n == 0 {
		blocks = capacity - lba
	}
	if blocks > uint64(lu.maxWriteSame) {
		return failedCmd(op, invalidCDB(nOff, 7))
	}
	if blocks > capacity-lba {
		return failedCmd(op, errLBAOutOfRange)
	}
	if lu.cfg.ReadOnly {
		return failedCmd(op, errWriteProtected)
	}
	c.LBA, c.Blocks = LBA(lba), Blocks(blocks)
	if !c.ndob {
		c.DataLen = uint32(lu.bs)
		c.Dir = DirWrite
	}
	return c
}

// execWriteSame runs WRITE SAME (10/16).
func (lu *LU) execWriteSame(ctx context.Context, cmd *Command, data []byte) Response {
	var block []byte
	if !cmd.ndob {
		p, e := lu.dataOut(cmd, data)
		if e.failed() {
			return lu.fail(e)
		}
		if len(p) < lu.bs {
			return lu.fail(errCmdIU)
		}
		block = p[:lu.bs]
	}
	// Decode never yields 0 blocks: 0 in the CDB means "to the end".
	durable := !lu.mode.Load().WCE
	off, total := lu.off(cmd.LBA), int64(cmd.Blocks)<<lu.bshift
	if cmd.unmap && blockdev.IsZero(block) { // nil (NDOB) is zero
		// SBC-3 "WRITE SAME command and unmap operations": with LBPRZ=1
		// a zero block may be written by deallocating.
		if e := lu.deallocate(cmd.LBA, cmd.Blocks); e.failed() {
			return lu.fail(e)
		}
		if durable {
			if err := lu.dev.Flush(); err != nil {
				return lu.fail(lu.ioError(err, "write same", cmd.LBA, false))
			}
		}
		return Response{Status: StatusGood}
	}
	buf := lu.pool.Get(int(min(total, writeSameChunk)))
	defer lu.pool.Put(buf)
	if block == nil {
		clear(buf.B)
	} else {
		fillPattern(buf.B, block)
	}
	for done := int64(0); done < total; {
		if ctx.Err() != nil {
			return lu.fail(errAborted)
		}
		k := min(int64(len(buf.B)), total-done)
		lba := cmd.LBA + LBA(done>>lu.bshift)
		sp := lu.stripes.rlock(lba, Blocks(k>>lu.bshift))
		err := lu.writeAt(buf.B[:k], off+done, durable)
		lu.stripes.runlock(sp)
		if err != nil {
			return lu.fail(lu.ioError(err, "write same", lba, false))
		}
		done += k
	}
	return Response{Status: StatusGood}
}

// fillPattern fills dst with copies of pattern; len(dst) is a multiple of
// len(pattern).
func fillPattern(dst, pattern []byte) {
	n := copy(dst, pattern)
	for n < len(dst) {
		n += copy(dst[n:], dst[:n])
	}
}

// deallocate discards blocks [lba, lba+n) under their stripes' shared locks.
func (lu *LU) deallocate(lba LBA, n Blocks) senseErr {
	sp := lu.stripes.rlock(lba, n)
	err := lu.disc.Discard(lu.off(lba), int64(n)<<lu.bshift)
	lu.stripes.runlock(sp)
	if err != nil {
		return lu.ioError(err, "unmap", lba, false)
	}
	return senseErr{}
}

// decodeUnmap decodes SBC-3 "UNMAP": PARAMETER LIST LENGTH in bytes 7-8.
// A length from 1 to 7 cannot hold the parameter list header.
func (lu *LU) decodeUnmap(c Command, cdb []byte) Command {
	n := uint32(binary.BigEndian.Uint16(cdb[7:9]))
	if n > 0 && n < unmapHdrLen {
		return failedCmd(c.Op, errParamListLen)
	}
	if lu.cfg.ReadOnly {
		return failedCmd(c.Op, errWriteProtected)
	}
	c.DataLen = n
	if n > 0 {
		c.Dir = DirWrite
	}
	return c
}

// execUnmap runs UNMAP. The whole parameter list is checked before any
// block is deallocated, so a bad descriptor changes nothing. A descriptor
// with NUMBER OF LOGICAL BLOCKS 0 deallocates nothing, and an incomplete
// last descriptor is ignored (SBC-3 "UNMAP parameter list").
func (lu *LU) execUnmap(cmd *Command, data []byte) Response {
	if uint64(len(data)) > uint64(cmd.DataLen) {
		data = data[:cmd.DataLen]
	}
	if len(data) == 0 {
		return Response{Status: StatusGood}
	}
	if len(data) < unmapHdrLen {
		return lu.fail(errParamListLen)
	}
	bdl := int(binary.BigEndian.Uint16(data[2:4]))
	descs := data[unmapHdrLen:]
	if bdl < len(descs) {
		descs = descs[:bdl]
	}
	count := len(descs) / unmapDescLen
	if count > maxUnmapDescriptors {
		return lu.fail(invalidParam(2, 7))
	}
	capacity := lu.capacity()
	var total uint64
	for i := range count {
		d := descs[i*unmapDescLen:]
		lba, n := binary.BigEndian.Uint64(d[0:8]), uint64(binary.BigEndian.Uint32(d[8:12]))
		if lba > capacity || n > capacity-lba {
			return lu.fail(errLBAOutOfRange)
		}
		total += n
		if total > uint64(lu.maxUnmap) {
			return lu.fail(invalidParam(unmapHdrLen+i*unmapDescLen+8, 7))
		}
	}
	for i := range count {
		d := descs[i*unmapDescLen:]
		lba, n := LBA(binary.BigEndian.Uint64(d[0:8])), Blocks(binary.BigEndian.Uint32(d[8:12]))
		if n == 0 {
			continue
		}
		if e := lu.deallocate(lba, n); e.failed() {
			return lu.fail(e)
		}
	}
	if total > 0 && !lu.mode.Load().WCE {
		if err := lu.dev.Flush(); err != nil {
			return lu.fail(lu.ioError(err, "unmap", 0, false))
		}
	}
	return Response{Status: StatusGood}
}
