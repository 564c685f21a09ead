package scsi

import "encoding/binary"

// Command is a decoded CDB. Decode fills it; Execute runs it. It is a
// small value: copy it freely (but pass a pointer to Execute).
type Command struct {
	// Op is the operation code (CDB byte 0).
	Op byte
	// Dir and DataLen say which way data moves and how many bytes the
	// CDB asks for: for READ, WRITE, WRITE AND VERIFY and VERIFY with
	// BYTCHK, the transfer length in bytes; for data-in commands with an
	// ALLOCATION LENGTH, that length; for MODE SELECT, the parameter list
	// length. A command that failed to decode has DirNone and DataLen 0:
	// the transport solicits no data for it and Execute returns its
	// CHECK CONDITION.
	Dir     Dir
	DataLen uint32
	// LBA and Blocks are the range of READ, WRITE, WRITE AND VERIFY,
	// VERIFY, ORWRITE, PRE-FETCH and SYNCHRONIZE CACHE (Blocks 0 in
	// PRE-FETCH and SYNCHRONIZE CACHE means "to the last LBA"), and LBA is
	// the STARTING LOGICAL BLOCK ADDRESS of GET LBA STATUS.
	LBA    LBA
	Blocks Blocks
	// FUA and DPO are the CDB's force unit access and disable page out
	// bits (SBC-3 "READ (10)").
	FUA, DPO bool

	kind   opKind
	err    senseErr // the CHECK CONDITION to return, if set
	bytchk uint8    // VERIFY / WRITE AND VERIFY BYTCHK field
	// WRITE SAME fields: UNMAP, and NDOB (no Data-Out buffer).
	unmap, ndob bool
	// PERSISTENT RESERVE IN/OUT service action and TYPE.
	prSA   uint8
	prType prType
	// RECEIVE COPY RESULTS service action and LIST IDENTIFIER.
	copySA, listID byte
	// resOK: processed even while another I_T nexus holds an SPC-2
	// reservation (opInfo.resOK, or PREVENT ALLOW with PREVENT=00b).
	resOK bool
	// READ DEFECT DATA fields: REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT.
	plist, glist bool
	dlFormat     byte
	// INQUIRY, MODE SENSE/SELECT, REQUEST SENSE, REPORT LUNS, REPORT
	// SUPPORTED OPERATION CODES fields.
	evpd     bool
	desc     bool // REQUEST SENSE DESC
	dbd      bool
	llbaa    bool
	ten      bool // MODE SENSE(10) / MODE SELECT(10)
	rctd     bool
	page     byte // INQUIRY page code; MODE SENSE page code
	subpage  byte
	pc       byte // MODE SENSE page control
	selRep   byte // REPORT LUNS SELECT REPORT
	opts     byte // REPORT SUPPORTED OPERATION CODES REPORTING OPTIONS
	reqOp    byte
	reqSA    uint16
	reqOpSAs bool // the requested operation code has service actions
}

// Valid reports whether the CDB decoded without error.
func (c *Command) Valid() bool { return !c.err.failed() && c.kind != kInvalid }

// failed returns a Command that fails with e.
func failedCmd(op byte, e senseErr) Command {
	return Command{Op: op, err: e}
}

// Decode decodes and validates cdb for this LU. It never fails: an invalid
// CDB yields a Command whose Execute returns the CHECK CONDITION (ILLEGAL
// REQUEST with a field pointer, LBA OUT OF RANGE, DATA PROTECT, ...). It
// does not allocate and depends only on the CDB and the LU's fixed
// configuration, so the transport may call it as soon as the CDB arrives.
// cdb may be longer than the command's CDB (e.g. the 16-byte CDB field of
// an iSCSI PDU); the extra bytes are ignored.
func (lu *LU) Decode(cdb []byte) Command {
	if len(cdb) == 0 {
		return failedCmd(0, errInvalidOpcode)
	}
	op := cdb[0]
	if lu.absent {
		switch op {
		case opInquiry, opReportLUNs, opRequestSense:
		default:
			return failedCmd(op, errLUNotSupported)
		}
	}
	var sa byte
	if off, mask, ok := serviceActionField(op); ok && len(cdb) > off {
		sa = cdb[off] & mask
	}
	info, hasSA := lookupOp(op, sa)
	if info == nil && hasSA && (op == opPRIn || op == opPROut) {
		// SPC-4 "PERSISTENT RESERVE IN": an unsupported service action
		// is INVALID FIELD IN CDB. (Other commands with service actions
		// report INVALID COMMAND OPERATION CODE for the ones not
		// implemented, which conformance suites take as "not
		// implemented" and skip.)
		return failedCmd(op, invalidCDB(1, 4))
	}
	if info == nil || !lu.supports(info) {
		return failedCmd(op, errInvalidOpcode)
	}
	if len(cdb) < int(info.cdbLen) {
		// The transport always passes at least 16 bytes; a shorter slice
		// cannot hold this command.
		return failedCmd(op, errInvalidOpcode)
	}
	cdb = cdb[:info.cdbLen]
	if e := checkReserved(cdb, info); e.failed() {
		return failedCmd(op, e)
	}
	c := Command{Op: op, kind: info.kind, resOK: info.resOK}
	switch info.kind {
	case kTestUnitReady, kReserve, kRelease:
	case kPreventAllow:
		// SPC-2 "reservations": PREVENT ALLOW MEDIUM REMOVAL with
		// PREVENT=00b is allowed from any I_T nexus.
		c.resOK = cdb[4]&0x03 == 0
	case kStartStopUnit:
		// SBC-3 "START STOP UNIT": POWER CONDITION 0h START_VALID, 1h
		// ACTIVE, 2h IDLE, 3h STANDBY, 7h LU_CONTROL, Ah FORCE_IDLE_0,
		// Bh FORCE_STANDBY_0. The LU has no power states and no
		// removable medium: accepted and ignored.
		switch cdb[4] >> 4 {
		case 0x0, 0x1, 0x2, 0x3, 0x7, 0xA, 0xB:
		default:
			return failedCmd(op, invalidCDB(4, 7))
		}
	case kRequestSense:
		c.desc = cdb[1]&0x01 != 0
		c.setDataIn(uint32(cdb[4]))
	case kInquiry:
		c.evpd = cdb[1]&0x01 != 0
		c.page = cdb[2]
		if !c.evpd && c.page != 0 {
			// SPC-4 "INQUIRY": PAGE CODE must be zero when EVPD is
			// zero.
			return failedCmd(op, invalidCDB(2, 7))
		}
		if c.evpd && !lu.hasVPD(c.page) {
			return failedCmd(op, invalidCDB(2, 7))
		}
		c.setDataIn(uint32(binary.BigEndian.Uint16(cdb[3:5])))
	case kModeSense:
		return lu.decodeModeSense(c, cdb)
	case kModeSelect:
		c.ten = op == opModeSelect10
		pf, sp := cdb[1]&0x10 != 0, cdb[1]&0x01 != 0
		var n uint32
		if c.ten {
			n = uint32(binary.BigEndian.Uint16(cdb[7:9]))
		} else {
			n = uint32(cdb[4])
		}
		if sp {
			// SPC-4 "MODE SELECT(6)": no savable pages.
			return failedCmd(op, invalidCDB(1, 0))
		}
		if !pf && n > 0 {
			// Only SPC page format is supported.
			return failedCmd(op, invalidCDB(1, 4))
		}
		c.DataLen = n
		if n > 0 {
			c.Dir = DirWrite
		}
	case kReadCapacity10:
		// SBC-3 "READ CAPACITY (10)": PMI=0 requires LOGICAL BLOCK
		// ADDRESS 0.
		if cdb[8]&0x01 == 0 && binary.BigEndian.Uint32(cdb[2:6]) != 0 {
			return failedCmd(op, invalidCDB(2, 7))
		}
		c.setDataIn(8)
	case kReadCapacity16:
		// SBC-3 "READ CAPACITY (16)".
		if cdb[14]&0x01 == 0 && binary.BigEndian.Uint64(cdb[2:10]) != 0 {
			return failedCmd(op, invalidCDB(2, 7))
		}
		c.setDataIn(binary.BigEndian.Uint32(cdb[10:14]))
	case kRead, kWrite, kWriteVerify, kVerify, kORWrite:
		return lu.decodeRW(c, cdb)
	case kCompareAndWrite:
		return lu.decodeCompareAndWrite(c, cdb)
	case kWriteSame:
		return lu.decodeWriteSame(c, cdb)
	case kUnmap:
		return lu.decodeUnmap(c, cdb)
	case kPRIn:
		return decodePRIn(c, cdb)
	case kPROut:
		return decodePROut(c, cdb)
	case kExtendedCopy:
		return decodeExtendedCopy(c, cdb)
	case kReceiveCopyResults:
		return decodeReceiveCopyResults(c, cdb)
	case kSyncCache, kPreFetch:
		// SBC-3 "SYNCHRONIZE CACHE (10/16)" and "PRE-FETCH (10/16)": a
		// range checked like READ's, where NUMBER OF LOGICAL BLOCKS or
		// PREFETCH LENGTH 0 means "to the last LBA". Nothing is
		// transferred, so MAXIMUM TRANSFER LENGTH does not apply (MAXIMUM
		// PREFETCH LENGTH is 0: no limit). IMMED changes nothing: the
		// flush is always done before returning (see execPreFetch for
		// PRE-FETCH).
		lba, n, _ := rwFields(cdb)
		if lu.outOfRange(lba, n) {
			return failedCmd(op, errLBAOutOfRange)
		}
		c.LBA, c.Blocks = LBA(lba), Blocks(n)
	case kReportLUNs:
		// SPC-4 "REPORT LUNS".
		c.selRep = cdb[2]
		if c.selRep > 0x02 {
			return failedCmd(op, invalidCDB(2, 7))
		}
		alloc := binary.BigEndian.Uint32(cdb[6:10])
		if alloc < 16 {
			return failedCmd(op, invalidCDB(6, 7))
		}
		c.setDataIn(alloc)
	case kReportOpcodes:
		return decodeReportOpcodes(c, cdb)
	case kGetLBAStatus:
		// SBC-3 "GET LBA STATUS": a STARTING LOGICAL BLOCK ADDRESS
		// past the last LBA is LBA OUT OF RANGE.
		lba := binary.BigEndian.Uint64(cdb[2:10])
		if lba >= lu.capacity() {
			return failedCmd(op, errLBAOutOfRange)
		}
		c.LBA = LBA(lba)
		c.setDataIn(binary.BigEndian.Uint32(cdb[10:14]))
	case kReadDefect:
		return decodeReadDefect(c, cdb)
	default:
		return failedCmd(op, errInvalidOpcode)
	}
	return c
}

// CheckTransferLength checks the command against the initiator's expected
// data transfer length n (the iSCSI EDTL); the transport calls it after
// Decode. COMPARE AND WRITE must receive exactly the verify and write data
// its NUMBER OF LOGICAL BLOCKS implies: a 256-block request does not fit the
// one-byte field and arrives as 0 blocks with 256 blocks of data, so any
// other length fails with INVALID FIELD IN CDB on that field (as libiscsi's
// CompareAndWrite tests expect) instead of being half used. Other commands
// are unaffected: the transport reports the residual.
func (c *Command) CheckTransferLength(n uint32) {
	if c.kind == kCompareAndWrite && !c.err.failed() && n != c.DataLen {
		*c = failedCmd(c.Op, invalidCDB(13, 7))
	}
}

// outOfRange reports whether blocks [lba, lba+n) do not lie within the
// capacity. SBC-3 "logical blocks": an LBA past the end is out of range even
// when no block is transferred.
func (lu *LU) outOfRange(lba uint64, n uint32) bool {
	return lba >= lu.capacity() || uint64(n) > lu.capacity()-lba
}

// setDataIn records a data-in transfer of n bytes (none if n is 0).
func (c *Command) setDataIn(n uint32) {
	c.DataLen = n
	if n > 0 {
		c.Dir = DirRead
	}
}

// checkReserved rejects every set bit outside info's usage and ignore
// masks (reserved bits, unsupported fields, and NACA, which is unsupported:
// SAM-5 "NACA bit") with INVALID FIELD IN CDB. The bit pointer names the
// offending bit or, for a multi-bit field (info.cont), the field's most
// significant bit (SPC-4 "field pointer sense key specific data").
func checkReserved(cdb []byte, info *opInfo) senseErr {
	for i := 1; i < len(cdb); i++ {
		allowed := info.usage[i] | info.ignore[i]
		if i == 1 && info.hasSA {
			allowed |= 0x1F
		}
		if bad := cdb[i] &^ allowed; bad != 0 {
			bit := highBit(bad)
			for bit < 7 && info.cont[i]&(1<<bit) != 0 {
				bit++
			}
			return invalidCDB(i, bit)
		}
	}
	return senseErr{}
}

// highBit returns the index of the most significant set bit of b (b ≠ 0).
func highBit(b byte) uint8 {
	var i uint8 = 7
	for b&0x80 == 0 {
		b <<= 1
		i--
	}
	return i
}

// rwFields returns the LOGICAL BLOCK ADDRESS, the TRANSFER LENGTH (or
// VERIFICATION LENGTH / NUMBER OF LOGICAL BLOCKS) and the offset of the
// latter in a 6-, 10-, 12- or 16-byte block command CDB (SBC-3 "commands").
func rwFields(cdb []byte) (lba uint64, n uint32, nOff int) {
	switch len(cdb) {
	case 6:
		lba = uint64(cdb[1]&0x1F)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		return lba, uint32(cdb[4]), 4
	case 10:
		return uint64(binary.BigEndian.Uint32(cdb[2:6])), uint32(binary.BigEndian.Uint16(cdb[7:9])), 7
	case 12:
		return uint64(binary.BigEndian.Uint32(cdb[2:6])), binary.BigEndian.Uint32(cdb[6:10]), 6
	case 16:
		return binary.BigEndian.Uint64(cdb[2:10]), binary.BigEndian.Uint32(cdb[10:14]), 10
	}
	return 0, 0, 0
}

// decodeRW decodes READ, WRITE, WRITE AND VERIFY, VERIFY and ORWRITE (SBC-3
// "READ (10)", "VERIFY", "WRITE AND VERIFY", "ORWRITE (16)").
func (lu *LU) decodeRW(c Command, cdb []byte) Command {
	op := c.Op
	lba, n, nOff := rwFields(cdb)
	if len(cdb) == 6 {
		// READ(6)/WRITE(6): TRANSFER LENGTH 0 means 256 blocks.
		if n == 0 {
			n = 256
		}
	} else {
		c.DPO = cdb[1]&0x10 != 0
		c.FUA = cdb[1]&0x08 != 0 && (c.kind == kRead || c.kind == kWrite || c.kind == kORWrite)
	}
	if c.kind == kVerify || c.kind == kWriteVerify {
		c.bytchk = cdb[1] >> 1 & 0x03
		// VERIFY: 00b medium verification, 01b compare with Data-Out, 11b
		// compare each block with one Data-Out block; 10b is reserved
		// (SBC-3 "VERIFY (10)"). WRITE AND VERIFY: 00b and 01b only.
		if c.bytchk == 0x02 || (c.kind == kWriteVerify && c.bytchk == 0x03) {
			return failedCmd(op, invalidCDB(1, 2))
		}
	}
	if n > uint32(lu.maxXfer) {
		// SBC-3 "Block Limits VPD page": longer than MAXIMUM TRANSFER
		// LENGTH.
		return failedCmd(op, invalidCDB(nOff, 7))
	}
	if lu.outOfRange(lba, n) {
		return failedCmd(op, errLBAOutOfRange)
	}
	if (c.kind == kWrite || c.kind == kWriteVerify || c.kind == kORWrite) && lu.cfg.ReadOnly {
		return failedCmd(op, errWriteProtected)
	}
	c.LBA, c.Blocks = LBA(lba), Blocks(n)
	bytes := n << lu.bshift
	switch c.kind {
	case kRead:
		c.setDataIn(bytes)
	case kWrite, kWriteVerify, kORWrite:
		c.DataLen = bytes
	case kVerify:
		switch c.bytchk {
		case 0x01:
			c.DataLen = bytes
		case 0x03:
			if n > 0 {
				c.DataLen = uint32(lu.bs)
			}
		}
	}
	if c.DataLen > 0 && c.kind != kRead {
		c.Dir = DirWrite
	}
	return c
}
