package scsi

import "encoding/binary"

// execPreFetch runs SBC-3 "PRE-FETCH (10)" and "PRE-FETCH (16)". The LU has
// no read cache of its own: the backing store is read with O_DIRECT, so there
// is nothing to load the blocks into. SBC-3 covers that case: when the cache
// does not have sufficient capacity for the specified blocks, the device
// server loads as many as fit (here none) and returns GOOD, whether IMMED is
// set or not; CONDITION MET is only for blocks that are (or will be) in the
// cache. Decode has already checked the range.
func (lu *LU) execPreFetch() Response {
	return Response{Status: StatusGood}
}

// lbaStatusDescLen is the length of an LBA status descriptor and
// lbaStatusHdrLen that of the GET LBA STATUS parameter data header (SBC-3
// "GET LBA STATUS parameter data").
const (
	lbaStatusHdrLen  = 8
	lbaStatusDescLen = 16
)

// execGetLBAStatus runs SBC-3 "GET LBA STATUS". The LU is fully provisioned
// (LBPME=0), so every LBA is mapped: the parameter data holds one LBA status
// descriptor from the starting LBA, PROVISIONING STATUS 0h (mapped), for as
// many blocks as the NUMBER OF LOGICAL BLOCKS field holds up to the last LBA;
// an initiator that needs more asks again from the next LBA.
func (lu *LU) execGetLBAStatus(cmd *Command, data []byte) Response {
	var b [lbaStatusHdrLen + lbaStatusDescLen]byte
	// PARAMETER DATA LENGTH: the bytes that follow it.
	binary.BigEndian.PutUint32(b[0:4], uint32(len(b)-4))
	d := b[lbaStatusHdrLen:]
	binary.BigEndian.PutUint64(d[0:8], uint64(cmd.LBA))
	binary.BigEndian.PutUint32(d[8:12], uint32(min(lu.capacity()-uint64(cmd.LBA), 0xFFFFFFFF)))
	d[12] = 0x0 // PROVISIONING STATUS: mapped
	return dataIn(cmd, b[:], data)
}

// Defect list formats (SBC-3 "defect list format"): 000b short block, 001b
// extended bytes from index, 010b extended physical sector, 011b long block,
// 100b bytes from index, 101b physical sector, 110b vendor specific; 111b is
// reserved.
const dlFormatReserved = 0x7

// decodeReadDefect decodes SBC-3 "READ DEFECT DATA (10)" (REQ_PLIST,
// REQ_GLIST and DEFECT LIST FORMAT in byte 2) and "READ DEFECT DATA (12)"
// (in byte 1; ADDRESS DESCRIPTOR INDEX in bytes 2-5).
func decodeReadDefect(c Command, cdb []byte) Command {
	off := 2
	alloc := uint32(binary.BigEndian.Uint16(cdb[7:9]))
	if c.Op == opReadDefect12 {
		off = 1
		alloc = binary.BigEndian.Uint32(cdb[6:10])
	}
	c.plist = cdb[off]&0x10 != 0
	c.glist = cdb[off]&0x08 != 0
	c.dlFormat = cdb[off] & 0x07
	if c.dlFormat == dlFormatReserved {
		return failedCmd(c.Op, invalidCDB(off, 2))
	}
	c.setDataIn(alloc)
	return c
}

// execReadDefect runs READ DEFECT DATA (10) and (12). The LU has no defects
// that it could report (its medium is a file or a block device whose own
// defect management is invisible here), so both lists are empty, which is
// valid in every format: the header echoes the requested lists (PLISTV,
// GLISTV) and format with a DEFECT LIST LENGTH of 0. With an empty list any
// ADDRESS DESCRIPTOR INDEX is past the end, which also yields no descriptors.
func (lu *LU) execReadDefect(cmd *Command, data []byte) Response {
	var b [8]byte
	n := 4 // READ DEFECT DATA (10) parameter data header
	if cmd.Op == opReadDefect12 {
		n = 8 // bytes 2-3 reserved, DEFECT LIST LENGTH in 4-7
	}
	b[1] = cmd.dlFormat
	if cmd.plist {
		b[1] |= 0x10 // PLISTV
	}
	if cmd.glist {
		b[1] |= 0x08 // GLISTV
	}
	return dataIn(cmd, b[:n], data)
}
