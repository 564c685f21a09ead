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
// "GET LBA STATUS parameter data"). maxLBAStatusDescs bounds the
// descriptors one command returns.
const (
	lbaStatusHdrLen   = 8
	lbaStatusDescLen  = 16
	maxLBAStatusDescs = 64
)

// Provisioning status values of an LBA status descriptor.
const (
	provMapped      = 0x0 // mapped, or unknown
	provDeallocated = 0x1
)

// execGetLBAStatus runs SBC-3 "GET LBA STATUS": LBA status descriptors from
// the starting LBA, each a run of blocks in one provisioning state, as many
// as the allocation length holds (at most maxLBAStatusDescs); an initiator
// that needs more asks again from the LBA after the last one. A thin
// provisioned LU asks its device which blocks are deallocated
// (blockdev.Mapper: an image file's holes); a block that is partly
// deallocated is mapped. Everything else is reported mapped (SBC-3: "mapped
// or unknown"), which is also the whole answer of a fully provisioned LU.
func (lu *LU) execGetLBAStatus(cmd *Command, data []byte) Response {
	var b [lbaStatusHdrLen + maxLBAStatusDescs*lbaStatusDescLen]byte
	want := max(1, min(maxLBAStatusDescs, (int(cmd.DataLen)-lbaStatusHdrLen)/lbaStatusDescLen))
	n := lbaStatusHdrLen
	lba, end := uint64(cmd.LBA), lu.capacity()
	var last []byte // the previous descriptor, extended while the state holds
	for lba < end {
		state, blocks, err := lu.provisioning(lba, min(end-lba, 0xFFFFFFFF))
		if err != nil {
			return lu.fail(lu.ioError(err, "get lba status", LBA(lba), true))
		}
		if last != nil && last[12] == state && uint64(binary.BigEndian.Uint32(last[8:12]))+blocks <= 0xFFFFFFFF {
			binary.BigEndian.PutUint32(last[8:12], binary.BigEndian.Uint32(last[8:12])+uint32(blocks))
		} else {
			if (n-lbaStatusHdrLen)/lbaStatusDescLen == want {
				break
			}
			last = b[n : n+lbaStatusDescLen]
			n += lbaStatusDescLen
			binary.BigEndian.PutUint64(last[0:8], lba)
			binary.BigEndian.PutUint32(last[8:12], uint32(blocks))
			last[12] = state
		}
		lba += blocks
		if lu.mapper == nil {
			break // one descriptor says it all
		}
	}
	// PARAMETER DATA LENGTH: the bytes that follow it.
	binary.BigEndian.PutUint32(b[0:4], uint32(n-4))
	return dataIn(cmd, b[:n], data)
}

// provisioning returns the provisioning state of the run of blocks from
// lba, at most limit of them (limit > 0), that share it.
func (lu *LU) provisioning(lba, limit uint64) (state byte, blocks uint64, err error) {
	if lu.mapper == nil {
		return provMapped, limit, nil
	}
	mapped, run, err := lu.mapper.Mapped(int64(lba)<<lu.bshift, int64(limit)<<lu.bshift)
	if err != nil {
		return 0, 0, err
	}
	blocks = uint64(run) >> lu.bshift
	if mapped || blocks == 0 { // data in the block
		return provMapped, max(blocks, 1), nil
	}
	return provDeallocated, blocks, nil
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
