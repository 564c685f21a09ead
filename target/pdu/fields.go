package pdu

// Opcode-specific field accessors. Offsets are from RFC 7143 §11.

// SCSI Command flags (byte 1).
const (
	FlagFinal = 0x80
	FlagRead  = 0x40
	FlagWrite = 0x20
	AttrMask  = 0x07
)

// Task attributes (RFC 7143 §11.3.1.1).
const (
	AttrUntagged = 0
	AttrSimple   = 1
	AttrOrdered  = 2
	AttrHead     = 3
	AttrACA      = 4
)

// ExpectedDataTransferLength of a SCSI Command.
func (h *Header) ExpectedDataTransferLength() uint32 { return h.U32(20) }

// CDB returns the 16-byte CDB field of a SCSI Command.
func (h *Header) CDB() []byte { return h[32:48] }

// SCSI Response and Data-In flag bits (byte 1).
const (
	FlagBidiOverflow  = 0x10
	FlagBidiUnderflow = 0x08
	FlagOverflow      = 0x04
	FlagUnderflow     = 0x02
	FlagStatus        = 0x01 // S bit, Data-In only
	FlagAck           = 0x40 // A bit, Data-In only
	FlagContinue      = 0x40 // C bit, Login and Text
	FlagTransit       = 0x80 // T bit, Login
)

// DataSN of a Data-Out or Data-In PDU.
func (h *Header) DataSN() uint32 { return h.U32(36) }

// BufferOffset of a Data-Out, Data-In or R2T PDU.
func (h *Header) BufferOffset() uint32 { return h.U32(40) }

// TaskFunction returns the task management function code.
func (h *Header) TaskFunction() uint8 { return h[1] & 0x7f }

// ReferencedTaskTag of a Task Management Function Request.
func (h *Header) ReferencedTaskTag() uint32 { return h.U32(20) }

// RefCmdSN of a Task Management Function Request.
func (h *Header) RefCmdSN() uint32 { return h.U32(32) }

// Task management functions (RFC 7143 §11.5.1).
const (
	TMFAbortTask       = 1
	TMFAbortTaskSet    = 2
	TMFClearACA        = 3
	TMFClearTaskSet    = 4
	TMFLUNReset        = 5
	TMFTargetWarmReset = 6
	TMFTargetColdReset = 7
	TMFTaskReassign    = 8
)

// Task management responses (RFC 7143 §11.6.1).
const (
	TMFComplete        = 0
	TMFNoTask          = 1
	TMFNoLUN           = 2
	TMFTaskAllegiant   = 3
	TMFReassignNotSupp = 4
	TMFNotSupported    = 5
	TMFAuthFailed      = 6
	TMFRejected        = 255
)

// Login stages (RFC 7143 §11.12.3).
const (
	StageSecurity    = 0
	StageOperational = 1
	StageFullFeature = 3
)

// LoginCSG returns the current stage of a Login PDU.
func (h *Header) LoginCSG() int { return int(h[1]>>2) & 3 }

// LoginNSG returns the next stage of a Login PDU.
func (h *Header) LoginNSG() int { return int(h[1]) & 3 }

// Transit reports the T bit of a Login PDU.
func (h *Header) Transit() bool { return h[1]&FlagTransit != 0 }

// Continue reports the C bit of a Login or Text PDU.
func (h *Header) Continue() bool { return h[1]&FlagContinue != 0 }

// VersionMax of a Login Request.
func (h *Header) VersionMax() uint8 { return h[2] }

// VersionMin of a Login Request.
func (h *Header) VersionMin() uint8 { return h[3] }

// ISID returns the 6-byte initiator session ID.
func (h *Header) ISID() (id [6]byte) { copy(id[:], h[8:14]); return id }

// TSIH returns the target session identifying handle.
func (h *Header) TSIH() uint16 { return h.U16(14) }

// CID returns the connection ID of a Login or Logout Request.
func (h *Header) CID() uint16 { return h.U16(20) }

// LogoutReason returns the reason code of a Logout Request.
func (h *Header) LogoutReason() uint8 { return h[1] & 0x7f }

// Logout reason codes (RFC 7143 §11.14.1).
const (
	LogoutSession    = 0
	LogoutConnection = 1
	LogoutRecovery   = 2
)

// Login status classes and details (RFC 7143 §11.13.5).
const (
	LoginSuccess            = 0x0000
	LoginTargetMovedTemp    = 0x0101
	LoginInitiatorError     = 0x0200
	LoginAuthFailed         = 0x0201
	LoginForbidden          = 0x0202
	LoginTargetNotFound     = 0x0203
	LoginTargetRemoved      = 0x0204
	LoginUnsupportedVersion = 0x0205
	LoginTooManyConns       = 0x0206
	LoginMissingParameter   = 0x0207
	LoginNoSessionSpanning  = 0x0208
	LoginNoSessionType      = 0x0209
	LoginSessionNotFound    = 0x020a
	LoginInvalidRequest     = 0x020b
	LoginTargetError        = 0x0300
	LoginServiceUnavailable = 0x0301
	LoginOutOfResources     = 0x0302
)

// BuildLoginResponse fills h as a Login Response.
func BuildLoginResponse(h *Header, transit bool, csg, nsg int, isid [6]byte, tsih uint16, itt uint32, status uint16) {
	h.Reset()
	h.SetOpcode(OpLoginResp, false)
	f := byte(csg&3)<<2 | byte(nsg&3)
	if transit {
		f |= FlagTransit
	}
	h[1] = f
	h[2], h[3] = 0, 0 // version-max, version-active: RFC 7143 is version 0
	copy(h[8:14], isid[:])
	h.PutU16(14, tsih)
	h.SetITT(itt)
	h[36] = byte(status >> 8)
	h[37] = byte(status)
}

// BuildSCSIResponse fills h as a SCSI Response (RFC 7143 §11.4). sn fields
// are filled at send time with SetSN.
func BuildSCSIResponse(h *Header, itt uint32, status byte, flags byte, residual uint32, dataLen int) {
	h.Reset()
	h.SetOpcode(OpSCSIResp, false)
	h[1] = FlagFinal | flags
	h[2] = 0 // Command Completed at Target
	h[3] = status
	h.SetDataSegmentLength(dataLen)
	h.SetITT(itt)
	h.PutU32(36, 0) // ExpDataSN filled by caller when Data-In was sent
	h.PutU32(44, residual)
}

// BuildDataIn fills h as a Data-In PDU. When flags has FlagStatus the status
// byte and residual are meaningful.
func BuildDataIn(h *Header, lun uint64, itt uint32, flags byte, status byte, dataSN, offset, residual uint32, dataLen int) {
	h.Reset()
	h.SetOpcode(OpDataIn, false)
	h[1] = flags
	if flags&FlagStatus != 0 {
		h[3] = status
	}
	h.SetDataSegmentLength(dataLen)
	if flags&FlagAck != 0 {
		h.SetLUN(lun)
	}
	h.SetITT(itt)
	h.SetTTT(ReservedTag)
	h.PutU32(36, dataSN)
	h.PutU32(40, offset)
	h.PutU32(44, residual)
}

// BuildR2T fills h as an R2T.
func BuildR2T(h *Header, lun uint64, itt, ttt, r2tSN, offset, length uint32) {
	h.Reset()
	h.SetOpcode(OpR2T, false)
	h[1] = FlagFinal
	h.SetLUN(lun)
	h.SetITT(itt)
	h.SetTTT(ttt)
	h.PutU32(36, r2tSN)
	h.PutU32(40, offset)
	h.PutU32(44, length)
}

// BuildNOPIn fills h as a NOP-In.
func BuildNOPIn(h *Header, lun uint64, itt, ttt uint32, dataLen int) {
	h.Reset()
	h.SetOpcode(OpNOPIn, false)
	h[1] = FlagFinal
	h.SetDataSegmentLength(dataLen)
	h.SetLUN(lun)
	h.SetITT(itt)
	h.SetTTT(ttt)
}

// BuildTaskResponse fills h as a Task Management Function Response.
func BuildTaskResponse(h *Header, itt uint32, response byte) {
	h.Reset()
	h.SetOpcode(OpTaskResp, false)
	h[1] = FlagFinal
	h[2] = response
	h.SetITT(itt)
}

// BuildTextResponse fills h as a Text Response.
func BuildTextResponse(h *Header, final, cont bool, lun uint64, itt, ttt uint32, dataLen int) {
	h.Reset()
	h.SetOpcode(OpTextResp, false)
	if final {
		h[1] |= FlagFinal
	}
	if cont {
		h[1] |= FlagContinue
	}
	h.SetDataSegmentLength(dataLen)
	h.SetLUN(lun)
	h.SetITT(itt)
	h.SetTTT(ttt)
}

// BuildLogoutResponse fills h as a Logout Response.
func BuildLogoutResponse(h *Header, itt uint32, response byte, time2wait, time2retain uint16) {
	h.Reset()
	h.SetOpcode(OpLogoutResp, false)
	h[1] = FlagFinal
	h[2] = response
	h.SetITT(itt)
	h.PutU16(40, time2wait)
	h.PutU16(42, time2retain)
}

// BuildReject fills h as a Reject whose data segment will carry the
// rejected header.
func BuildReject(h *Header, reason byte) {
	h.Reset()
	h.SetOpcode(OpReject, false)
	h[1] = FlagFinal
	h[2] = reason
	h.SetDataSegmentLength(BHSLen)
	h.SetITT(ReservedTag)
}
