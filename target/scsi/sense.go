package scsi

import "encoding/binary"

// SenseMax is the capacity of Response.Sense: the longest sense data this
// package produces (descriptor format with an information and a sense-key
// specific descriptor is 28 bytes). Fixed-format sense data is 18 bytes.
const SenseMax = 32

// Response is the outcome of Execute.
type Response struct {
	// Status is the SAM-5 status code (StatusGood, StatusCheckCondition,
	// ...).
	Status byte
	// Sense holds Sense[:SenseLen], the sense data to send with CHECK
	// CONDITION (in the iSCSI SCSI Response PDU's data segment, after the
	// 2-byte SenseLength). Fixed format (response code 70h) unless the
	// initiator set D_SENSE in the Control mode page.
	Sense    [SenseMax]byte
	SenseLen int
	// DataLen is, for a data-in command, how many bytes at the start of
	// the data buffer are valid and must be sent; 0 otherwise. The
	// transport computes residuals from it and the expected data transfer
	// length.
	DataLen int
	// Abort lists, for PERSISTENT RESERVE OUT with PREEMPT AND ABORT, the
	// I_T nexuses whose registrations were preempted: before it sends
	// this response the transport aborts their commands for this LU
	// (except this command) and waits until none is running, so that
	// none of them can change the medium after the preemption completes
	// (SPC-4 "preempting and aborting"). Nil for every other command.
	Abort []*Nexus
}

// SenseData returns the valid part of r.Sense.
func (r *Response) SenseData() []byte { return r.Sense[:r.SenseLen] }

// CheckCondition returns a CHECK CONDITION response with fixed-format sense
// data (SPC-4 "fixed format sense data") for the given sense key and additional
// sense code. The transport uses it for conditions it detects itself, e.g.
// ABORTED COMMAND 47h/03h after a data digest error (RFC 7143 "digest errors").
func CheckCondition(key SenseKey, asc, ascq byte) Response {
	e := senseErr{key: key, asc: ascCode(asc)<<8 | ascCode(ascq)}
	return e.response(false)
}

// ascCode is an additional sense code (high byte) and qualifier (low byte),
// SPC-4 "sense key and additional sense code".
type ascCode uint16

const (
	ascNone                  ascCode = 0x0000 // NO ADDITIONAL SENSE INFORMATION
	ascLUNotReady            ascCode = 0x0400 // LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE
	ascLUNotReadyManual      ascCode = 0x0403 // LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED
	ascLUNotAccessStandby    ascCode = 0x040B // LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE
	ascWriteError            ascCode = 0x0C00 // WRITE ERROR
	ascInvalidFieldInCmdIU   ascCode = 0x0E03 // INVALID FIELD IN COMMAND INFORMATION UNIT
	ascUnrecoveredReadError  ascCode = 0x1100 // UNRECOVERED READ ERROR
	ascParamListLength       ascCode = 0x1A00 // PARAMETER LIST LENGTH ERROR
	ascMiscompare            ascCode = 0x1D00 // MISCOMPARE DURING VERIFY OPERATION
	ascInvalidOpcode         ascCode = 0x2000 // INVALID COMMAND OPERATION CODE
	ascLBAOutOfRange         ascCode = 0x2100 // LOGICAL BLOCK ADDRESS OUT OF RANGE
	ascInvalidFieldInCDB     ascCode = 0x2400 // INVALID FIELD IN CDB
	ascLUNotSupported        ascCode = 0x2500 // LOGICAL UNIT NOT SUPPORTED
	ascInvalidFieldInParam   ascCode = 0x2600 // INVALID FIELD IN PARAMETER LIST
	ascWriteProtected        ascCode = 0x2700 // WRITE PROTECTED
	ascNotReadyToReady       ascCode = 0x2800 // NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED
	ascPowerOnResetOccurred  ascCode = 0x2900 // POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
	ascPowerOnOccurred       ascCode = 0x2901 // POWER ON OCCURRED
	ascBusDeviceReset        ascCode = 0x2903 // BUS DEVICE RESET FUNCTION OCCURRED
	ascITNexusLoss           ascCode = 0x2907 // I_T NEXUS LOSS OCCURRED
	ascModeParamsChanged     ascCode = 0x2A01 // MODE PARAMETERS CHANGED
	ascCapacityChanged       ascCode = 0x2A09 // CAPACITY DATA HAS CHANGED
	ascCommandsCleared       ascCode = 0x2F00 // COMMANDS CLEARED BY ANOTHER INITIATOR
	ascSavingParamsNotSupp   ascCode = 0x3900 // SAVING PARAMETERS NOT SUPPORTED
	ascInternalTargetFailure ascCode = 0x4400 // INTERNAL TARGET FAILURE
)

// isReset reports whether a is one of the 29h "reset occurred" codes, which
// take precedence over other unit attention conditions (SAM-5 "unit attention
// condition").
func (a ascCode) isReset() bool { return a>>8 == 0x29 }

// senseErr describes a CHECK CONDITION: the zero value means "no error".
// It is a small value type so Decode and Execute can pass it around
// without allocating.
type senseErr struct {
	key SenseKey
	asc ascCode
	// sks holds the three sense-key specific bytes (SPC-4 "sense key
	// specific sense data descriptor"); sks[0]&0x80 is SKSV.
	sks       [3]byte
	infoValid bool
	info      uint64 // INFORMATION field (SPC-4 "information sense data descriptor") when infoValid
}

func (e senseErr) failed() bool { return e.key != SenseNoSense || e.asc != ascNone }

func illegal(a ascCode) senseErr { return senseErr{key: SenseIllegalRequest, asc: a} }

// fieldPointer returns the FIELD POINTER sense-key specific bytes (SPC-4 "field
// pointer sense key specific data"): SKSV=1, C/D (1 = the error is in the CDB,
// 0 = in the parameter list), BPV=1 and BIT POINTER = bit, FIELD POINTER =
// byte. For a multi-bit field, bit is the field's most significant bit.
func fieldPointer(cd bool, byteOff int, bit uint8) [3]byte {
	b0 := byte(0x80|0x08) | bit&7
	if cd {
		b0 |= 0x40
	}
	return [3]byte{b0, byte(byteOff >> 8), byte(byteOff)}
}

// invalidCDB is ILLEGAL REQUEST, INVALID FIELD IN CDB pointing at bit bit of
// CDB byte byteOff.
func invalidCDB(byteOff int, bit uint8) senseErr {
	return senseErr{key: SenseIllegalRequest, asc: ascInvalidFieldInCDB, sks: fieldPointer(true, byteOff, bit)}
}

// invalidParam is ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST pointing
// at bit bit of parameter-list byte byteOff.
func invalidParam(byteOff int, bit uint8) senseErr {
	return senseErr{key: SenseIllegalRequest, asc: ascInvalidFieldInParam, sks: fieldPointer(false, byteOff, bit)}
}

// Common errors.
var (
	errInvalidOpcode  = illegal(ascInvalidOpcode)
	errLBAOutOfRange  = illegal(ascLBAOutOfRange)
	errLUNotSupported = illegal(ascLUNotSupported)
	errParamListLen   = illegal(ascParamListLength)
	errCmdIU          = illegal(ascInvalidFieldInCmdIU)
	errWriteProtected = senseErr{key: SenseDataProtect, asc: ascWriteProtected}
	errSavingParams   = illegal(ascSavingParamsNotSupp)
	errInternal       = senseErr{key: SenseHardwareError, asc: ascInternalTargetFailure}
	errNotReady       = senseErr{key: SenseNotReady, asc: ascLUNotReady}
	errNeedsUnlock    = senseErr{key: SenseNotReady, asc: ascLUNotReadyManual}
	errStandby        = senseErr{key: SenseNotReady, asc: ascLUNotAccessStandby}
	errReadError      = senseErr{key: SenseMediumError, asc: ascUnrecoveredReadError}
	errWriteError     = senseErr{key: SenseMediumError, asc: ascWriteError}
)

func unitAttention(a ascCode) senseErr { return senseErr{key: SenseUnitAttention, asc: a} }

func miscompare(offset uint64) senseErr {
	return senseErr{key: SenseMiscompare, asc: ascMiscompare, infoValid: true, info: offset}
}

// Fixed-format sense data is 18 bytes (SPC-4 "fixed format sense data").
const fixedSenseLen = 18

// putFixed writes e as fixed-format current sense data (response code 70h)
// into b, which must hold fixedSenseLen bytes, and returns the length.
func (e senseErr) putFixed(b []byte) int {
	b = b[:fixedSenseLen]
	clear(b)
	b[0] = 0x70
	if e.infoValid && e.info <= 0xFFFFFFFF {
		b[0] |= 0x80 // VALID: the INFORMATION field holds e.info
		binary.BigEndian.PutUint32(b[3:7], uint32(e.info))
	}
	b[2] = byte(e.key) & 0x0F
	b[7] = fixedSenseLen - 8 // ADDITIONAL SENSE LENGTH
	b[12] = byte(e.asc >> 8)
	b[13] = byte(e.asc)
	copy(b[15:18], e.sks[:])
	return fixedSenseLen
}

// putDescriptor writes e as descriptor-format current sense data (response
// code 72h, SPC-4 "descriptor format sense data") with an information
// descriptor when e.infoValid and a sense-key specific descriptor when SKSV is
// set, and returns the length (at most 28 bytes). b must hold SenseMax
// bytes.
func (e senseErr) putDescriptor(b []byte) int {
	b = b[:SenseMax]
	clear(b)
	b[0] = 0x72
	b[1] = byte(e.key) & 0x0F
	b[2] = byte(e.asc >> 8)
	b[3] = byte(e.asc)
	n := 8
	if e.infoValid {
		b[n] = 0x00   // DESCRIPTOR TYPE: information
		b[n+1] = 0x0A // ADDITIONAL LENGTH
		b[n+2] = 0x80 // VALID
		binary.BigEndian.PutUint64(b[n+4:n+12], e.info)
		n += 12
	}
	if e.sks[0]&0x80 != 0 {
		b[n] = 0x02   // DESCRIPTOR TYPE: sense key specific
		b[n+1] = 0x06 // ADDITIONAL LENGTH
		copy(b[n+4:n+7], e.sks[:])
		n += 8
	}
	b[7] = byte(n - 8) // ADDITIONAL SENSE LENGTH
	return n
}

// response returns the CHECK CONDITION response for e, with descriptor
// format sense data when desc is set.
func (e senseErr) response(desc bool) Response {
	r := Response{Status: StatusCheckCondition}
	if desc {
		r.SenseLen = e.putDescriptor(r.Sense[:])
	} else {
		r.SenseLen = e.putFixed(r.Sense[:])
	}
	return r
}
