package scsi

import "encoding/binary"

// Mode pages (SPC-4 "mode parameters", SBC-3 "mode parameters").
const (
	pageCaching  = 0x08 // SBC-3 "Caching mode page"
	pageControl  = 0x0A // SPC-4 "Control mode page"
	pageInfoExc  = 0x1C // SPC-4 "Informational Exceptions Control mode page"
	pageAllPages = 0x3F
)

// modePages lists the supported pages in the order MODE SENSE returns them.
var modePages = [...]byte{pageCaching, pageControl, pageInfoExc}

// Page control values (SPC-4 "page control").
const (
	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

// decodeModeSense decodes MODE SENSE(6) and MODE SENSE(10) (SPC-4 "MODE
// SENSE(6)", "MODE SENSE(10)").
func (lu *LU) decodeModeSense(c Command, cdb []byte) Command {
	c.ten = c.Op == opModeSense10
	c.dbd = cdb[1]&0x08 != 0
	c.llbaa = c.ten && cdb[1]&0x10 != 0
	c.pc = cdb[2] >> 6
	c.page = cdb[2] & 0x3F
	c.subpage = cdb[3]
	if c.pc == pcSaved {
		return failedCmd(c.Op, errSavingParams)
	}
	switch c.page {
	case pageCaching, pageControl, pageInfoExc, pageAllPages:
	default:
		return failedCmd(c.Op, invalidCDB(2, 5))
	}
	// No page has subpages: subpage 00h, or FFh ("all subpages").
	if c.subpage != 0x00 && c.subpage != 0xFF {
		return failedCmd(c.Op, invalidCDB(3, 7))
	}
	if c.ten {
		c.setDataIn(uint32(binary.BigEndian.Uint16(cdb[7:9])))
	} else {
		c.setDataIn(uint32(cdb[4]))
	}
	return c
}

// modePage appends mode page p, with the values selected by page control
// pc, to b.
func (lu *LU) modePage(b []byte, p byte, pc byte, cur modeState) []byte {
	st := cur
	if pc == pcDefault {
		st = lu.defMode
	}
	switch p {
	case pageCaching:
		var pg [20]byte
		pg[0], pg[1] = pageCaching, 0x12
		switch {
		case pc == pcChangeable:
			pg[2] = 0x04 // WCE
		case st.WCE:
			pg[2] = 0x04
		}
		// RCD=0 (read cache enabled), retention priorities and
		// pre-fetch values 0: nothing to report.
		return append(b, pg[:]...)
	case pageControl:
		var pg [12]byte
		pg[0], pg[1] = pageControl, 0x0A
		if pc == pcChangeable {
			pg[2] = 0x04 // D_SENSE
			return append(b, pg[:]...)
		}
		// TST=000b (one task set for all I_T nexuses), TMF_ONLY=0.
		if st.DSense {
			pg[2] |= 0x04
		}
		// QUEUE ALGORITHM MODIFIER=1: commands may be reordered (we run
		// them concurrently); QERR=00b.
		pg[3] = 0x10
		// UA_INTLCK_CTRL=00b: a reported unit attention is cleared.
		// SWP=0. TAS=0, AUTOLOAD MODE=0. BUSY TIMEOUT PERIOD FFFFh:
		// unlimited (we never return BUSY).
		pg[8], pg[9] = 0xFF, 0xFF
		return append(b, pg[:]...)
	case pageInfoExc:
		var pg [12]byte
		pg[0], pg[1] = pageInfoExc, 0x0A
		if pc != pcChangeable {
			pg[2] = 0x08 // DEXCPT: informational exceptions disabled
		}
		return append(b, pg[:]...)
	}
	return b
}

// deviceSpecific is the DEVICE-SPECIFIC PARAMETER of the mode parameter header
// for direct-access devices (SBC-3 "mode parameters overview"): WP and DPOFUA
// (the device server honors DPO and FUA).
func (lu *LU) deviceSpecific() byte {
	b := byte(0x10)
	if lu.cfg.ReadOnly {
		b |= 0x80
	}
	return b
}

// execModeSense runs SPC-4 "MODE SENSE(6)" and "MODE SENSE(10)".
func (lu *LU) execModeSense(cmd *Command, data []byte) Response {
	st := *lu.mode.Load()
	hdr := 4
	if cmd.ten {
		hdr = 8
	}
	b := make([]byte, hdr, 128)
	// Block descriptor (SBC-3 "mode parameter block descriptors"): short (8
	// bytes) or, for MODE SENSE(10) with LLBAA, long (16 bytes). Nothing in
	// it is changeable.
	var bd []byte
	if !cmd.dbd {
		if cmd.llbaa {
			bd = make([]byte, 16)
			if cmd.pc != pcChangeable {
				binary.BigEndian.PutUint64(bd[0:8], lu.capacity())
				binary.BigEndian.PutUint32(bd[12:16], uint32(lu.bs))
			}
		} else {
			bd = make([]byte, 8)
			if cmd.pc != pcChangeable {
				n := lu.capacity()
				if n > 0xFFFFFFFF {
					n = 0xFFFFFFFF
				}
				binary.BigEndian.PutUint32(bd[0:4], uint32(n))
				bd[5], bd[6], bd[7] = byte(lu.bs>>16), byte(lu.bs>>8), byte(lu.bs)
			}
		}
		b = append(b, bd...)
	}
	if cmd.page == pageAllPages {
		for _, p := range modePages {
			b = lu.modePage(b, p, cmd.pc, st)
		}
	} else {
		b = lu.modePage(b, cmd.page, cmd.pc, st)
	}
	// Mode parameter header (SPC-4 "mode parameter header"): MEDIUM TYPE 0.
	if cmd.ten {
		binary.BigEndian.PutUint16(b[0:2], uint16(len(b)-2))
		b[3] = lu.deviceSpecific()
		if cmd.llbaa && len(bd) == 16 {
			b[4] = 0x01 // LONGLBA
		}
		binary.BigEndian.PutUint16(b[6:8], uint16(len(bd)))
	} else {
		b[0] = byte(len(b) - 1)
		b[2] = lu.deviceSpecific()
		b[3] = byte(len(bd))
	}
	return dataIn(cmd, b, data)
}

// execModeSelect runs SPC-4 "MODE SELECT(6)" and "MODE SELECT(10)": it
// validates the whole parameter list, then applies it atomically. Only
// changeable bits may differ from the current values; a changed value
// establishes MODE PARAMETERS CHANGED for every other I_T nexus.
func (lu *LU) execModeSelect(n *Nexus, cmd *Command, data []byte) Response {
	if uint64(len(data)) > uint64(cmd.DataLen) {
		data = data[:cmd.DataLen]
	}
	if len(data) < int(cmd.DataLen) {
		// The initiator sent less than PARAMETER LIST LENGTH.
		return lu.fail(errParamListLen)
	}
	if len(data) == 0 {
		return Response{Status: StatusGood}
	}
	lu.mu.Lock()
	old := *lu.mode.Load()
	next, e := lu.parseModeSelect(cmd.ten, data, old)
	if e.failed() {
		lu.mu.Unlock()
		return lu.fail(e)
	}
	changed := next != old
	if changed {
		lu.commitModeLocked(old.next(modeEvent{kind: modeSelected, sel: next}, lu.defMode))
		lu.establishOthersLocked(n, ascModeParamsChanged)
	}
	lu.mu.Unlock()
	if changed {
		if err := lu.afterModeChange(old); err != nil {
			return lu.fail(errWriteError)
		}
	}
	return Response{Status: StatusGood}
}

// parseModeSelect validates a MODE SELECT parameter list against the
// current state cur and returns the state it selects. Field pointers are
// offsets in the parameter list (C/D=0).
func (lu *LU) parseModeSelect(ten bool, p []byte, cur modeState) (modeState, senseErr) {
	hdr := 4
	if ten {
		hdr = 8
	}
	if len(p) < hdr {
		return cur, errParamListLen
	}
	// Mode parameter header: MODE DATA LENGTH is reserved in MODE
	// SELECT; MEDIUM TYPE must be 0; the device-specific parameter's WP
	// and DPOFUA are ignored (SBC-3 "mode parameters overview").
	if p[1+btoi(ten)] != 0 {
		return cur, invalidParam(1+btoi(ten), 7)
	}
	var bdLen int
	long := false
	if ten {
		long = p[4]&0x01 != 0
		if p[4]&^0x01 != 0 {
			return cur, invalidParam(4, highBit(p[4]&^0x01))
		}
		bdLen = int(binary.BigEndian.Uint16(p[6:8]))
	} else {
		bdLen = int(p[3])
	}
	bdOff := hdr - 1
	if ten {
		bdOff = 6
	}
	descLen := 8
	if long {
		descLen = 16
	}
	if bdLen != 0 && bdLen != descLen {
		return cur, invalidParam(bdOff, 7)
	}
	if len(p) < hdr+bdLen {
		return cur, errParamListLen
	}
	if bdLen > 0 {
		if e := lu.checkBlockDescriptor(p[hdr:hdr+bdLen], hdr); e.failed() {
			return cur, e
		}
	}
	next := cur
	for off := hdr + bdLen; off < len(p); {
		if len(p)-off < 2 {
			return cur, errParamListLen
		}
		code := p[off] & 0x3F
		if p[off]&0x40 != 0 {
			// SPF: no subpages are supported.
			return cur, invalidParam(off, 6)
		}
		plen := int(p[off+1])
		if len(p)-off < 2+plen {
			return cur, errParamListLen
		}
		pg := p[off : off+2+plen]
		var cp, chg []byte
		switch code {
		case pageCaching, pageControl, pageInfoExc:
			cp = lu.modePage(nil, code, pcCurrent, cur)
			chg = lu.modePage(nil, code, pcChangeable, cur)
		default:
			return cur, invalidParam(off, 5)
		}
		if plen != int(cp[1]) {
			return cur, invalidParam(off+1, 7)
		}
		// Byte 0 bit 7 (PS) is reserved in MODE SELECT and ignored.
		for i := 2; i < len(pg); i++ {
			if bad := (pg[i] ^ cp[i]) &^ chg[i]; bad != 0 {
				return cur, invalidParam(off+i, highBit(bad))
			}
		}
		switch code {
		case pageCaching:
			next.WCE = pg[2]&0x04 != 0
		case pageControl:
			next.DSense = pg[2]&0x04 != 0
		}
		off += len(pg)
	}
	return next, senseErr{}
}

// checkBlockDescriptor validates a MODE SELECT block descriptor at
// parameter-list offset off (SBC-3 "mode parameter block descriptors"): the
// capacity and block length cannot change, so NUMBER OF LOGICAL BLOCKS must be
// 0 (no change) or the current value and LOGICAL BLOCK LENGTH the current one.
func (lu *LU) checkBlockDescriptor(d []byte, off int) senseErr {
	var nb uint64
	var bl uint32
	var blOff int
	if len(d) == 16 {
		nb = binary.BigEndian.Uint64(d[0:8])
		bl = binary.BigEndian.Uint32(d[12:16])
		blOff = 12
		if nb != 0 && nb != lu.capacity() {
			return invalidParam(off, 7)
		}
	} else {
		nb = uint64(binary.BigEndian.Uint32(d[0:4]))
		bl = uint32(d[5])<<16 | uint32(d[6])<<8 | uint32(d[7])
		blOff = 5
		capped := min(lu.capacity(), 0xFFFFFFFF)
		if nb != 0 && nb != capped {
			return invalidParam(off, 7)
		}
		if d[4] != 0 {
			return invalidParam(off+4, 7)
		}
	}
	if bl != uint32(lu.bs) {
		return invalidParam(off+blOff, 7)
	}
	return senseErr{}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
