package scsi

import "encoding/binary"

// execRequestSense runs SPC-4 "REQUEST SENSE": it returns, and
// clears, the oldest unit attention pending for the I_T nexus; else NOT
// READY while the Medium is not ready; else NO SENSE. Sent to an LUN the target does not have, it returns ILLEGAL
// REQUEST, LOGICAL UNIT NOT SUPPORTED as parameter data with GOOD status.
// DESC selects descriptor-format sense data.
func (lu *LU) execRequestSense(it *itl, cmd *Command, data []byte) Response {
	var e senseErr
	switch {
	case lu.absent:
		e = errLUNotSupported
	case it != nil:
		if a, ok := it.take(); ok {
			e = unitAttention(a)
			break
		}
		fallthrough
	default:
		if lu.medium != nil {
			if err := lu.medium.Ready(); err != nil {
				e = mediumNotReady(it, err)
			}
		}
	}
	var b [SenseMax]byte
	var n int
	if cmd.desc {
		n = e.putDescriptor(b[:])
	} else {
		n = e.putFixed(b[:])
	}
	return dataIn(cmd, b[:n], data)
}

// execReadCapacity10 runs SBC-3 "READ CAPACITY (10)". RETURNED LOGICAL
// BLOCK ADDRESS is FFFFFFFFh when the last LBA does not fit, telling the
// initiator to use READ CAPACITY(16).
func (lu *LU) execReadCapacity10(data []byte) Response {
	var b [8]byte
	last := lu.capacity() - 1
	if last > 0xFFFFFFFF {
		last = 0xFFFFFFFF
	}
	binary.BigEndian.PutUint32(b[0:4], uint32(last))
	binary.BigEndian.PutUint32(b[4:8], uint32(lu.bs))
	return Response{Status: StatusGood, DataLen: copy(data, b[:])}
}

// execReadCapacity16 runs SBC-3 "READ CAPACITY (16)": no protection
// information, one logical block per physical block, lowest aligned LBA 0;
// LBPME and LBPRZ when the LU is thin provisioned (provisioning.go).
func (lu *LU) execReadCapacity16(cmd *Command, data []byte) Response {
	var b [32]byte
	binary.BigEndian.PutUint64(b[0:8], lu.capacity()-1)
	binary.BigEndian.PutUint32(b[8:12], uint32(lu.bs))
	if lu.thin() {
		b[14] = 0x80 | 0x40 // LBPME, LBPRZ (provisioning.go)
	}
	return dataIn(cmd, b[:], data)
}

// execReportLUNs runs SPC-4 "REPORT LUNS". SELECT REPORT 00h and 02h
// list the target's logical units (there are no well-known LUs); 01h lists
// none.
func (lu *LU) execReportLUNs(cmd *Command, data []byte) Response {
	var luns []uint64
	if t := lu.tgt.Load(); t != nil {
		luns = t.luns
	} else if !lu.absent {
		luns = []uint64{0}
	}
	if cmd.selRep == 0x01 {
		luns = nil
	}
	b := make([]byte, 8+8*len(luns))
	binary.BigEndian.PutUint32(b[0:4], uint32(8*len(luns)))
	for i, l := range luns {
		f := EncodeLUN(l)
		copy(b[8+8*i:], f[:])
	}
	return dataIn(cmd, b, data)
}

// EncodeLUN returns the 8-byte LUN field for LUN number lun (SAM-5 "logical
// unit numbers"): peripheral device addressing for 0-255, flat space addressing
// for 256-16383. Larger numbers are not supported and encode as all ones.
func EncodeLUN(lun uint64) [8]byte {
	var f [8]byte
	switch {
	case lun < 256:
		f[1] = byte(lun)
	case lun < 1<<14:
		f[0] = 0x40 | byte(lun>>8)
		f[1] = byte(lun)
	default:
		for i := range f {
			f[i] = 0xFF
		}
	}
	return f
}

// DecodeLUN returns the LUN number in an 8-byte LUN field (the LUN field
// of an iSCSI SCSI Command PDU, as a big-endian integer or bytes): single
// level peripheral device (00b, bus identifier 0) or flat space (01b)
// addressing. ok is false for other formats; the transport then uses
// Target.LU(NoLUN), which answers like any absent LUN.
func DecodeLUN(field [8]byte) (lun uint64, ok bool) {
	for _, b := range field[2:] {
		if b != 0 {
			return NoLUN, false
		}
	}
	switch field[0] >> 6 {
	case 0x0:
		if field[0] != 0 {
			return NoLUN, false // bus identifier ≠ 0
		}
		return uint64(field[1]), true
	case 0x1:
		return uint64(field[0]&0x3F)<<8 | uint64(field[1]), true
	}
	return NoLUN, false
}

// NoLUN is a LUN number no target has.
const NoLUN = ^uint64(0)

// decodeReportOpcodes decodes REPORT SUPPORTED OPERATION CODES (SPC-4
// "REPORT SUPPORTED OPERATION CODES").
func decodeReportOpcodes(c Command, cdb []byte) Command {
	c.rctd = cdb[2]&0x80 != 0
	c.opts = cdb[2] & 0x07
	c.reqOp = cdb[3]
	c.reqSA = binary.BigEndian.Uint16(cdb[4:6])
	_, _, c.reqOpSAs = serviceActionField(c.reqOp)
	switch c.opts {
	case 0x0: // all commands
	case 0x1: // one command, no service action
		if c.reqOpSAs {
			return failedCmd(c.Op, invalidCDB(2, 2))
		}
	case 0x2: // one command with service action
		if !c.reqOpSAs {
			return failedCmd(c.Op, invalidCDB(2, 2))
		}
	case 0x3: // one command, service action if it has them
	default:
		return failedCmd(c.Op, invalidCDB(2, 2))
	}
	c.setDataIn(binary.BigEndian.Uint32(cdb[6:10]))
	return c
}

// timeoutsDescriptor returns the command timeouts descriptor (SPC-4 "command
// timeouts descriptor"): NOMINAL COMMAND PROCESSING TIMEOUT 0 (not specified)
// and the recommended timeout.
func timeoutsDescriptor(e *opInfo) [12]byte {
	var d [12]byte
	binary.BigEndian.PutUint16(d[0:2], 0x0A)
	binary.BigEndian.PutUint32(d[8:12], e.timeout)
	return d
}

// execReportOpcodes runs SPC-4 "REPORT SUPPORTED OPERATION CODES".
func (lu *LU) execReportOpcodes(cmd *Command, data []byte) Response {
	var b []byte
	if cmd.opts == 0 {
		// All_commands parameter data format.
		b = make([]byte, 4, 4+len(opTable)*20)
		for i := range opTable {
			e := &opTable[i]
			if !lu.supports(e) {
				continue
			}
			var d [8]byte
			d[0] = e.op
			if e.hasSA {
				binary.BigEndian.PutUint16(d[2:4], uint16(e.sa))
				d[5] |= 0x01 // SERVACTV
			}
			if cmd.rctd {
				d[5] |= 0x02 // CTDP
			}
			binary.BigEndian.PutUint16(d[6:8], uint16(e.cdbLen))
			b = append(b, d[:]...)
			if cmd.rctd {
				td := timeoutsDescriptor(e)
				b = append(b, td[:]...)
			}
		}
		binary.BigEndian.PutUint32(b[0:4], uint32(len(b)-4))
		return dataIn(cmd, b, data)
	}
	// One_command parameter data format.
	var e *opInfo
	if cmd.reqOpSAs {
		if cmd.reqSA <= 0x1F {
			e, _ = lookupOp(cmd.reqOp, byte(cmd.reqSA))
		}
	} else {
		e, _ = lookupOp(cmd.reqOp, 0)
	}
	if e == nil || !lu.supports(e) {
		b = []byte{0, 0x01, 0, 0} // SUPPORT 001b: not supported
		return dataIn(cmd, b, data)
	}
	b = make([]byte, 4, 4+16+12)
	b[1] = 0x03 // SUPPORT 011b: supported as the standard specifies
	if cmd.rctd {
		b[1] |= 0x80 // CTDP
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(e.cdbLen))
	b = append(b, e.usage[:e.cdbLen]...)
	if cmd.rctd {
		td := timeoutsDescriptor(e)
		b = append(b, td[:]...)
	}
	return dataIn(cmd, b, data)
}
