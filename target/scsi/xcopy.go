package scsi

import (
	"context"
	"encoding/binary"
	"math/bits"
)

// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 "EXTENDED COPY
// (LID1)", "RECEIVE COPY RESULTS"): the copy manager behind VMware's VAAI
// full copy (XCOPY), which clones and moves virtual disks without sending
// their data through the initiator.
//
// The copy manager is the LU that receives the command. Its copy targets
// (CSCDs) are identification descriptors (E4h) naming an LU of the same
// SCSI target by its NAA designator (VPD page 83h); its segments are
// block device to block device copies (02h). The whole parameter list is
// checked, every segment's range included, before any block is copied, so
// a bad list changes nothing. The copy runs within the command: blocks are
// read from the source under its stripes' shared locks and written to the
// destination like a WRITE, durable before GOOD when the destination's
// write cache is disabled, and replicated or encrypted by the
// destination's device like any write. Overlapping ranges of one LU are
// copied as if through an intermediate buffer. A copy is not atomic:
// concurrent writes to its ranges may land before or after each chunk.
//
// Reservations apply to the copy targets as if the issuing I_T nexus read
// the source and wrote the destination; a conflict ends the command with
// RESERVATION CONFLICT.
//
// The status of a copy whose LIST ID USAGE is 00b is held for the issuing
// I_T nexus (up to maxHeldCopies of them) and reported by RECEIVE COPY
// RESULTS (COPY STATUS); OPERATING PARAMETERS reports the limits below.

// Copy manager limits (RECEIVE COPY RESULTS "OPERATING PARAMETERS").
const (
	xcopyMaxCSCDs    = 8    // MAXIMUM CSCD DESCRIPTOR COUNT
	xcopyMaxSegments = 16   // MAXIMUM SEGMENT DESCRIPTOR COUNT
	xcopyMaxDescLen  = 1024 // MAXIMUM DESCRIPTOR LIST LENGTH
	maxHeldCopies    = 16   // copy statuses held per I_T nexus; MAXIMUM CONCURRENT COPIES
	xcopyChunk       = 1 << 20
)

// EXTENDED COPY parameter list layout (SPC-4 "EXTENDED COPY (LID1)
// parameter list"), descriptor type codes and RECEIVE COPY RESULTS service
// actions.
const (
	opExtendedCopy       = 0x83
	opReceiveCopyResults = 0x84
	saXCopyLID1          = 0x00
	saCopyStatus         = 0x00
	saOperatingParams    = 0x03

	xcopyHdrLen     = 16
	cscdLen         = 32
	segB2BLen       = 28
	segTypeB2B      = 0x02
	cscdTypeIdent   = 0xE4
	listIDHold      = 0x0 // LIST ID USAGE 00b: hold the status for RECEIVE COPY RESULTS
	listIDNoHold    = 0x2 // 10b: the list identifier is unique, nothing held
	listIDNone      = 0x3 // 11b: no list identifier
	copyStatusDone  = 0x01
	copyStatusError = 0x02
)

// Sense for copy errors (SPC-4 "EXTENDED COPY command errors").
var (
	errTooManyCSCDs       = illegal(0x2606) // TOO MANY TARGET DESCRIPTORS
	errUnsupportedCSCD    = illegal(0x2607) // UNSUPPORTED TARGET DESCRIPTOR TYPE CODE
	errTooManySegments    = illegal(0x2608) // TOO MANY SEGMENT DESCRIPTORS
	errUnsupportedSegment = illegal(0x2609) // UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE
	errInlineData         = illegal(0x260B) // INLINE DATA LENGTH EXCEEDED
	errOperationInProg    = illegal(0x0016) // OPERATION IN PROGRESS
	errUnreachableTarget  = senseErr{key: SenseCopyAborted, asc: 0x0804}
	// A destination range past the last block: COPY TARGET DEVICE NOT
	// REACHABLE. COPY TARGET DEVICE DATA OVERRUN (0D/05) would say more,
	// but libiscsi 1.19's ExtendedCopy.ValidSegDescr accepts only 00/00,
	// 08/04 and 0D/02 here, and initiators treat every COPY ABORTED alike
	// (ESXi falls back to copying through the host).
	errCopyOverrun  = senseErr{key: SenseCopyAborted, asc: 0x0D02}
	errCopyUnderrun = senseErr{key: SenseCopyAborted, asc: 0x0D04} // COPY TARGET DEVICE DATA UNDERRUN: a source range past the last block
)

// copySegment is one checked block to block segment.
type copySegment struct {
	src, dst       *LU
	srcLBA, dstLBA LBA
	bytes          int64
}

// decodeExtendedCopy decodes EXTENDED COPY (LID1): PARAMETER LIST LENGTH in
// bytes 10-13. A list longer than the header and the longest descriptor
// lists cannot be valid (there is no inline data).
func decodeExtendedCopy(c Command, cdb []byte) Command {
	n := binary.BigEndian.Uint32(cdb[10:14])
	if n > xcopyHdrLen+xcopyMaxDescLen {
		return failedCmd(c.Op, errParamListLen)
	}
	c.DataLen = n
	if n > 0 {
		c.Dir = DirWrite
	}
	return c
}

// execExtendedCopy runs EXTENDED COPY (LID1) for I_T nexus n (it is n's
// nexus with this LU, nil without one).
func (lu *LU) execExtendedCopy(ctx context.Context, n *Nexus, it *itl, cmd *Command, data []byte) Response {
	if uint64(len(data)) > uint64(cmd.DataLen) {
		data = data[:cmd.DataLen]
	}
	if len(data) == 0 {
		return Response{Status: StatusGood} // SPC-4: not an error
	}
	segs, listID, usage, e := lu.parseExtendedCopy(n, data)
	if e.failed() {
		return lu.fail(e)
	}
	for _, s := range segs {
		for _, t := range [...]struct {
			lu    *LU
			write bool
		}{{s.src, false}, {s.dst, true}} {
			if t.lu.medium != nil {
				if err := t.lu.medium.Ready(); err != nil {
					return lu.fail(mediumSense(err))
				}
			}
			if t.write && t.lu.cfg.ReadOnly {
				return lu.fail(errWriteProtected)
			}
			kind := kRead
			if t.write {
				kind = kWrite
			}
			if t.lu.prStore != nil {
				t.lu.syncPR()
			}
			if t.lu.reservationConflict(n, &Command{kind: kind}) {
				return Response{Status: StatusReservationConflict}
			}
		}
	}
	track := it != nil && usage != listIDNone
	if track && !it.copyBegin(listID) {
		return lu.fail(errOperationInProg)
	}
	var done int
	var moved int64
	for _, s := range segs {
		if e = lu.copyBlocks(ctx, s); e.failed() {
			break
		}
		done++
		moved += s.bytes
	}
	if track {
		it.copyEnd(listID, usage == listIDHold, copyResult{segments: done, bytes: moved, err: e.failed()})
	}
	if e.failed() {
		return lu.fail(e)
	}
	return Response{Status: StatusGood}
}

// parseExtendedCopy checks the parameter list data and returns its
// segments, resolved and range-checked.
func (lu *LU) parseExtendedCopy(n *Nexus, data []byte) (segs []copySegment, listID byte, usage byte, e senseErr) {
	if len(data) < xcopyHdrLen {
		return nil, 0, 0, errParamListLen
	}
	listID, usage = data[0], data[1]>>3&0x3
	cscdBytes := int(binary.BigEndian.Uint16(data[2:4]))
	segBytes := int(binary.BigEndian.Uint32(data[8:12]))
	inline := binary.BigEndian.Uint32(data[12:16])
	switch {
	case usage == 0x1:
		return nil, 0, 0, invalidParam(1, 4)
	case usage == listIDNone && listID != 0:
		return nil, 0, 0, invalidParam(0, 7)
	case cscdBytes+segBytes > xcopyMaxDescLen:
		return nil, 0, 0, errParamListLen
	case inline != 0:
		return nil, 0, 0, errInlineData
	case len(data) < xcopyHdrLen+cscdBytes+segBytes:
		return nil, 0, 0, errParamListLen
	case cscdBytes%cscdLen != 0:
		return nil, 0, 0, invalidParam(2, 7)
	case cscdBytes/cscdLen > xcopyMaxCSCDs:
		return nil, 0, 0, errTooManyCSCDs
	}
	// CSCD descriptors: identification descriptors of LUs of this target.
	var targets [xcopyMaxCSCDs]*LU
	var reachable [xcopyMaxCSCDs]bool
	ncscd := cscdBytes / cscdLen
	for i := range ncscd {
		off := xcopyHdrLen + i*cscdLen
		d := data[off : off+cscdLen]
		if d[0] != cscdTypeIdent {
			return nil, 0, 0, errUnsupportedCSCD
		}
		if d[1]&0x1F != 0 { // PERIPHERAL DEVICE TYPE: direct access block device
			return nil, 0, 0, invalidParam(off+1, 4)
		}
		t := lu.resolveCSCD(d)
		if t == nil || d[1]&0x20 != 0 { // unknown designator, or NUL
			continue // an error only if a segment uses it
		}
		if int(d[29])<<16|int(d[30])<<8|int(d[31]) != t.bs {
			return nil, 0, 0, invalidParam(off+29, 7)
		}
		targets[i], reachable[i] = t, true
	}
	// Segment descriptors: block device to block device.
	p := data[xcopyHdrLen+cscdBytes : xcopyHdrLen+cscdBytes+segBytes]
	for off := xcopyHdrLen + cscdBytes; len(p) > 0; {
		if len(p) < 4 {
			return nil, 0, 0, errParamListLen
		}
		if p[0] != segTypeB2B {
			return nil, 0, 0, errUnsupportedSegment
		}
		if len(segs) == xcopyMaxSegments {
			return nil, 0, 0, errTooManySegments
		}
		if binary.BigEndian.Uint16(p[2:4]) != segB2BLen-4 {
			return nil, 0, 0, invalidParam(off+2, 7)
		}
		if len(p) < segB2BLen {
			return nil, 0, 0, errParamListLen
		}
		si, di := int(binary.BigEndian.Uint16(p[4:6])), int(binary.BigEndian.Uint16(p[6:8]))
		if si >= ncscd || di >= ncscd || !reachable[si] || !reachable[di] {
			return nil, 0, 0, errUnreachableTarget
		}
		s := copySegment{src: targets[si], dst: targets[di]}
		blocks := uint64(binary.BigEndian.Uint16(p[10:12]))
		s.srcLBA, s.dstLBA = LBA(binary.BigEndian.Uint64(p[12:20])), LBA(binary.BigEndian.Uint64(p[20:28]))
		bs := s.src.bs
		if p[1]&0x02 != 0 { // DC: NUMBER OF BLOCKS counts destination blocks
			bs = s.dst.bs
		}
		s.bytes = int64(blocks) * int64(bs)
		if s.bytes%int64(s.src.bs) != 0 || s.bytes%int64(s.dst.bs) != 0 {
			return nil, 0, 0, invalidParam(off+10, 7) // would leave a residue
		}
		if s.src.outOfRange(uint64(s.srcLBA), uint32(s.bytes>>s.src.bshift)) {
			return nil, 0, 0, errCopyUnderrun
		}
		if s.dst.outOfRange(uint64(s.dstLBA), uint32(s.bytes>>s.dst.bshift)) {
			return nil, 0, 0, errCopyOverrun
		}
		segs = append(segs, s)
		p, off = p[segB2BLen:], off+segB2BLen
	}
	return segs, listID, usage, senseErr{}
}

// resolveCSCD returns the LU of this target that the identification CSCD
// descriptor d names by its NAA designator (logical unit association), or
// nil. LU ID TYPE and RELATIVE INITIATOR PORT IDENTIFIER are ignored: every
// LU of the target is reachable through every port.
func (lu *LU) resolveCSCD(d []byte) *LU {
	codeSet, assoc, typ, n := d[4]&0x0F, d[5]>>4&0x3, d[5]&0x0F, int(d[7])
	if codeSet != codeBinary || assoc != assocLU || typ != desigNAA || n != len(lu.id.NAA) || 8+n > 28 {
		return nil
	}
	naa := d[8 : 8+n]
	if string(naa) == string(lu.id.NAA[:]) {
		return lu
	}
	if t := lu.tgt.Load(); t != nil {
		for _, l := range t.luns {
			if o := t.lus[l]; string(naa) == string(o.id.NAA[:]) {
				return o
			}
		}
	}
	return nil
}

// copyBlocks copies segment s in chunks. When source and destination are
// overlapping ranges of one LU with the destination after the source, it
// copies from the end, so that no block is read after it was overwritten.
func (lu *LU) copyBlocks(ctx context.Context, s copySegment) senseErr {
	if s.bytes == 0 {
		return senseErr{}
	}
	buf := lu.pool.Get(int(min(s.bytes, xcopyChunk)))
	defer lu.pool.Put(buf)
	srcOff, dstOff := s.src.off(s.srcLBA), s.dst.off(s.dstLBA)
	backward := s.src == s.dst && dstOff > srcOff && dstOff < srcOff+s.bytes
	durable := !s.dst.mode.Load().WCE
	for done := int64(0); done < s.bytes; {
		if ctx.Err() != nil {
			return errAborted
		}
		k := min(int64(len(buf.B)), s.bytes-done)
		at := done
		if backward {
			at = s.bytes - done - k
		}
		p := buf.B[:k]
		slba, dlba := s.src.lbaOf(srcOff+at), s.dst.lbaOf(dstOff+at)
		sp := s.src.stripes.rlock(slba, s.src.blocksOf(k))
		_, err := s.src.dev.ReadAt(p, srcOff+at)
		s.src.stripes.runlock(sp)
		if err != nil {
			return s.src.ioError(err, "extended copy", slba, true)
		}
		sp = s.dst.stripes.rlock(dlba, s.dst.blocksOf(k))
		err = s.dst.writeAt(p, dstOff+at, durable)
		s.dst.stripes.runlock(sp)
		if err != nil {
			return s.dst.ioError(err, "extended copy", dlba, false)
		}
		done += k
	}
	return senseErr{}
}

func (lu *LU) lbaOf(off int64) LBA     { return LBA(off >> lu.bshift) }
func (lu *LU) blocksOf(n int64) Blocks { return Blocks(n >> lu.bshift) }

// copyResult is the outcome of one copy, held for RECEIVE COPY RESULTS.
type copyResult struct {
	id         byte
	inProgress bool
	err        bool
	segments   int
	bytes      int64
}

// copyBegin records that a copy with list identifier id starts for this
// I_T nexus. It returns false if one with that identifier is in progress,
// or if maxHeldCopies copies are.
func (it *itl) copyBegin(id byte) bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	cs := it.mu.copies
	for i := range cs {
		if cs[i].id == id {
			if cs[i].inProgress {
				return false
			}
			cs = append(cs[:i], cs[i+1:]...) // replace the held status
			break
		}
	}
	if len(cs) == maxHeldCopies {
		i := 0
		for i < len(cs) && cs[i].inProgress {
			i++
		}
		if i == len(cs) {
			return false
		}
		cs = append(cs[:i], cs[i+1:]...) // drop the oldest held status
	}
	it.mu.copies = append(cs, copyResult{id: id, inProgress: true})
	return true
}

// copyEnd records the end of the copy with list identifier id, holding r
// if hold is set and forgetting the copy otherwise.
func (it *itl) copyEnd(id byte, hold bool, r copyResult) {
	it.mu.Lock()
	defer it.mu.Unlock()
	cs := it.mu.copies
	for i := range cs {
		if cs[i].id == id && cs[i].inProgress {
			if hold {
				r.id = id
				cs[i] = r
			} else {
				it.mu.copies = append(cs[:i], cs[i+1:]...)
			}
			return
		}
	}
}

// copyStatus returns the status of the copy with list identifier id.
func (it *itl) copyStatus(id byte) (copyResult, bool) {
	it.mu.Lock()
	defer it.mu.Unlock()
	for _, c := range it.mu.copies {
		if c.id == id {
			return c, true
		}
	}
	return copyResult{}, false
}

// decodeReceiveCopyResults decodes RECEIVE COPY RESULTS: LIST IDENTIFIER
// in byte 2 (COPY STATUS), ALLOCATION LENGTH in bytes 10-13.
func decodeReceiveCopyResults(c Command, cdb []byte) Command {
	c.listID = cdb[2]
	c.copySA = cdb[1] & 0x1F
	c.setDataIn(binary.BigEndian.Uint32(cdb[10:14]))
	return c
}

// execReceiveCopyResults runs RECEIVE COPY RESULTS (COPY STATUS, OPERATING
// PARAMETERS) for the I_T nexus whose nexus with this LU is it.
func (lu *LU) execReceiveCopyResults(it *itl, cmd *Command, data []byte) Response {
	if cmd.copySA == saOperatingParams {
		return dataIn(cmd, lu.copyOperatingParams(), data)
	}
	var r copyResult
	ok := false
	if it != nil {
		r, ok = it.copyStatus(cmd.listID)
	}
	if !ok {
		return lu.fail(invalidCDB(2, 7)) // no such copy for this I_T nexus
	}
	var b [12]byte
	binary.BigEndian.PutUint32(b[0:4], 8) // AVAILABLE DATA
	switch {
	case r.inProgress:
		b[4] = 0x00
	case r.err:
		b[4] = copyStatusError
	default:
		b[4] = copyStatusDone
	}
	binary.BigEndian.PutUint16(b[5:7], uint16(r.segments))
	// TRANSFER COUNT in bytes (units 00h) or, past 4 GiB, KiB (01h).
	if r.bytes > 0xFFFFFFFF {
		b[7] = 0x01
		binary.BigEndian.PutUint32(b[8:12], uint32(r.bytes>>10))
	} else {
		binary.BigEndian.PutUint32(b[8:12], uint32(r.bytes))
	}
	return dataIn(cmd, b[:], data)
}

// vpdThirdPartyCopy returns VPD page 8Fh (SPC-4 "Third-party Copy VPD
// page") with the descriptors SPC-4 requires of an EXTENDED COPY (LID1)
// copy manager, in ascending order of type: Supported Commands (from
// opTable, as REPORT SUPPORTED OPERATION CODES), Parameter Data, Supported
// Descriptors, Supported CSCD IDs (none beyond 0..MAXIMUM CSCD DESCRIPTOR
// COUNT-1) and General Copy Operations, with the limits OPERATING
// PARAMETERS reports. Every descriptor is padded to a multiple of 4 bytes.
func (lu *LU) vpdThirdPartyCopy() []byte {
	b := []byte{0x00, vpdThirdPartyCopy, 0, 0}
	desc := func(typ uint16, body []byte) {
		body = append(body, make([]byte, (4-len(body)%4)%4)...)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
		b = append(b, body...)
	}
	// 0001h Supported Commands: operation code, service action count, the
	// service actions.
	cmds := []byte{0}
	for _, op := range []byte{opExtendedCopy, opReceiveCopyResults} {
		cmds = append(cmds, op, 0)
		k := len(cmds) - 1
		for i := range opTable {
			if opTable[i].op == op {
				cmds = append(cmds, opTable[i].sa)
				cmds[k]++
			}
		}
	}
	cmds[0] = byte(len(cmds) - 1)
	desc(0x0001, cmds)
	// 0004h Parameter Data.
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[4:6], xcopyMaxCSCDs)
	binary.BigEndian.PutUint16(p[6:8], xcopyMaxSegments)
	binary.BigEndian.PutUint32(p[8:12], xcopyMaxDescLen)
	desc(0x0004, p) // MAXIMUM INLINE DATA LENGTH 0
	// 0008h Supported Descriptors, 000Ch Supported CSCD IDs (an empty list).
	desc(0x0008, []byte{2, segTypeB2B, cscdTypeIdent})
	desc(0x000C, []byte{0, 0})
	// 8001h General Copy Operations.
	g := make([]byte, 32)
	binary.BigEndian.PutUint32(g[0:4], maxHeldCopies) // TOTAL CONCURRENT COPIES
	binary.BigEndian.PutUint32(g[4:8], maxHeldCopies) // MAXIMUM IDENTIFIED CONCURRENT COPIES
	binary.BigEndian.PutUint32(g[8:12], lu.maxSegmentBytes())
	g[12] = byte(bits.TrailingZeros(uint(lu.bs))) // DATA SEGMENT GRANULARITY (log2)
	desc(0x8001, g)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-4))
	return b
}

// maxSegmentBytes is MAXIMUM SEGMENT LENGTH: the most one block to block
// segment descriptor can name (65535 blocks).
func (lu *LU) maxSegmentBytes() uint32 { return uint32(0xFFFF * lu.bs) }

// copyOperatingParams returns the OPERATING PARAMETERS data (SPC-4
// "RECEIVE COPY RESULTS with OPERATING PARAMETERS service action").
func (lu *LU) copyOperatingParams() []byte {
	b := make([]byte, 46)
	binary.BigEndian.PutUint32(b[0:4], uint32(len(b)-4)) // AVAILABLE DATA
	b[4] = 0x01                                          // SNLID: LIST ID USAGE 11b supported
	binary.BigEndian.PutUint16(b[8:10], xcopyMaxCSCDs)
	binary.BigEndian.PutUint16(b[10:12], xcopyMaxSegments)
	binary.BigEndian.PutUint32(b[12:16], xcopyMaxDescLen)
	binary.BigEndian.PutUint32(b[16:20], lu.maxSegmentBytes())
	// MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE
	// TRANSFER SIZE: 0, no inline data, no held data, no streams.
	binary.BigEndian.PutUint16(b[34:36], maxHeldCopies) // TOTAL CONCURRENT COPIES
	b[36] = maxHeldCopies                               // MAXIMUM CONCURRENT COPIES
	b[37] = byte(bits.TrailingZeros(uint(lu.bs)))       // DATA SEGMENT GRANULARITY (log2)
	b[43] = 2                                           // IMPLEMENTED DESCRIPTOR LIST LENGTH
	b[44], b[45] = segTypeB2B, cscdTypeIdent
	return b
}
