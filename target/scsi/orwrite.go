package scsi

import (
	"context"
	"encoding/binary"
)

// execORWrite runs SBC-3 "ORWRITE (16)": as an uninterrupted sequence, read
// the specified blocks, OR the Data-Out data into them and write the result.
// The stripes of the range are held exclusively from before the read until
// the write has returned (stripes.go), so no WRITE, WRITE AND VERIFY or other
// ORWRITE modifies them in between, and concurrent overlapping ORWRITEs act as
// if run one after the other. The result is computed in place in data. The
// write is durable before GOOD when FUA is set or the write cache is disabled,
// as for WRITE. A cancelled command is stopped before anything is written.
func (lu *LU) execORWrite(ctx context.Context, cmd *Command, data []byte) Response {
	st := lu.mode.Load()
	p, e := lu.dataOut(cmd, data)
	if e.failed() {
		return lu.fail(e)
	}
	if len(p) == 0 {
		return Response{Status: StatusGood}
	}
	sp := lu.stripes.lock(cmd.LBA, lu.blocksIn(p))
	defer lu.stripes.unlock(sp)
	off := lu.off(cmd.LBA)
	buf := lu.pool.Get(min(len(p), verifyChunk))
	defer lu.pool.Put(buf)
	for done := 0; done < len(p); {
		if ctx.Err() != nil {
			return lu.fail(errAborted)
		}
		k := min(len(buf.B), len(p)-done)
		if _, err := lu.dev.ReadAt(buf.B[:k], off+int64(done)); err != nil {
			return lu.fail(lu.ioError(err, "orwrite read", cmd.LBA, true))
		}
		orBytes(p[done:done+k], buf.B[:k])
		done += k
	}
	if ctx.Err() != nil {
		return lu.fail(errAborted)
	}
	if err := lu.writeAt(p, off, cmd.FUA || !st.WCE); err != nil {
		return lu.fail(lu.ioError(err, "orwrite", cmd.LBA, false))
	}
	return Response{Status: StatusGood}
}

// orBytes sets dst[i] |= src[i] for every i < len(dst); len(src) >= len(dst).
func orBytes(dst, src []byte) {
	i := 0
	for ; i+8 <= len(dst); i += 8 {
		v := binary.LittleEndian.Uint64(dst[i:]) | binary.LittleEndian.Uint64(src[i:])
		binary.LittleEndian.PutUint64(dst[i:], v)
	}
	for ; i < len(dst); i++ {
		dst[i] |= src[i]
	}
}
