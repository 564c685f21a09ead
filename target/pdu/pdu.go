package pdu

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// BHSLen is the size of the Basic Header Segment.
const BHSLen = 48

// DigestLen is the size of a CRC32C header or data digest.
const DigestLen = 4

// MaxAHSLen is the largest Additional Header Segment area a BHS can announce
// (TotalAHSLength is one byte of 4-byte words).
const MaxAHSLen = 255 * 4

// Opcode is the iSCSI opcode in the low six bits of byte 0.
type Opcode uint8

// Initiator opcodes (RFC 7143 §11.1.1).
const (
	OpNOPOut   Opcode = 0x00
	OpSCSICmd  Opcode = 0x01
	OpTaskReq  Opcode = 0x02
	OpLoginReq Opcode = 0x03
	OpTextReq  Opcode = 0x04
	OpDataOut  Opcode = 0x05
	OpLogout   Opcode = 0x06
	OpSNACK    Opcode = 0x10
)

// Target opcodes (RFC 7143 §11.1.2).
const (
	OpNOPIn      Opcode = 0x20
	OpSCSIResp   Opcode = 0x21
	OpTaskResp   Opcode = 0x22
	OpLoginResp  Opcode = 0x23
	OpTextResp   Opcode = 0x24
	OpDataIn     Opcode = 0x25
	OpLogoutResp Opcode = 0x26
	OpR2T        Opcode = 0x31
	OpAsync      Opcode = 0x32
	OpReject     Opcode = 0x3f
)

func (o Opcode) String() string {
	switch o {
	case OpNOPOut:
		return "NOP-Out"
	case OpSCSICmd:
		return "SCSI-Command"
	case OpTaskReq:
		return "Task-Management-Request"
	case OpLoginReq:
		return "Login-Request"
	case OpTextReq:
		return "Text-Request"
	case OpDataOut:
		return "Data-Out"
	case OpLogout:
		return "Logout-Request"
	case OpSNACK:
		return "SNACK"
	case OpNOPIn:
		return "NOP-In"
	case OpSCSIResp:
		return "SCSI-Response"
	case OpTaskResp:
		return "Task-Management-Response"
	case OpLoginResp:
		return "Login-Response"
	case OpTextResp:
		return "Text-Response"
	case OpDataIn:
		return "Data-In"
	case OpLogoutResp:
		return "Logout-Response"
	case OpR2T:
		return "R2T"
	case OpAsync:
		return "Async-Message"
	case OpReject:
		return "Reject"
	}
	return fmt.Sprintf("opcode-%#02x", uint8(o))
}

// Reserved tag value (RFC 7143 §11.2.1.8 and others).
const ReservedTag = 0xffffffff

// Reject reasons (RFC 7143 §11.17.1).
const (
	RejectDataDigest      = 0x02
	RejectSNACK           = 0x03
	RejectProtocolError   = 0x04
	RejectNotSupported    = 0x05
	RejectImmediateCmd    = 0x06
	RejectTaskInProgress  = 0x07
	RejectInvalidDataAck  = 0x08
	RejectInvalidPDUField = 0x09
	RejectLongOp          = 0x0a
	RejectWaitingLogout   = 0x0c
)

// Header is a Basic Header Segment. The zero value is a NOP-Out with all
// fields zero. Accessors read and write the fields in network byte order.
type Header [BHSLen]byte

// Opcode returns the opcode.
func (h *Header) Opcode() Opcode { return Opcode(h[0] & 0x3f) }

// Immediate reports the I bit (byte 0, bit 6).
func (h *Header) Immediate() bool { return h[0]&0x40 != 0 }

// SetOpcode sets the opcode and the immediate bit.
func (h *Header) SetOpcode(op Opcode, immediate bool) {
	h[0] = byte(op) & 0x3f
	if immediate {
		h[0] |= 0x40
	}
}

// Final reports the F bit (byte 1, bit 7).
func (h *Header) Final() bool { return h[1]&0x80 != 0 }

// Flags returns byte 1.
func (h *Header) Flags() byte { return h[1] }

// SetFlags sets byte 1.
func (h *Header) SetFlags(f byte) { h[1] = f }

// TotalAHSLength returns the AHS length in bytes.
func (h *Header) TotalAHSLength() int { return int(h[4]) * 4 }

// DataSegmentLength returns the unpadded data segment length in bytes.
func (h *Header) DataSegmentLength() int {
	return int(h[5])<<16 | int(h[6])<<8 | int(h[7])
}

// SetDataSegmentLength sets the 24-bit data segment length.
func (h *Header) SetDataSegmentLength(n int) {
	h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
}

// LUN returns bytes 8..15 as a 64-bit LUN field.
func (h *Header) LUN() uint64 { return binary.BigEndian.Uint64(h[8:16]) }

// SetLUN sets bytes 8..15.
func (h *Header) SetLUN(l uint64) { binary.BigEndian.PutUint64(h[8:16], l) }

// ITT returns the Initiator Task Tag.
func (h *Header) ITT() uint32 { return h.U32(16) }

// SetITT sets the Initiator Task Tag.
func (h *Header) SetITT(v uint32) { h.PutU32(16, v) }

// U32 returns the big-endian word at byte offset off.
func (h *Header) U32(off int) uint32 { return binary.BigEndian.Uint32(h[off : off+4]) }

// PutU32 stores a big-endian word at byte offset off.
func (h *Header) PutU32(off int, v uint32) { binary.BigEndian.PutUint32(h[off:off+4], v) }

// U16 returns the big-endian half-word at byte offset off.
func (h *Header) U16(off int) uint16 { return binary.BigEndian.Uint16(h[off : off+2]) }

// PutU16 stores a big-endian half-word at byte offset off.
func (h *Header) PutU16(off int, v uint16) { binary.BigEndian.PutUint16(h[off:off+2], v) }

// Reset zeroes the header.
func (h *Header) Reset() { *h = Header{} }

// Field offsets shared by several opcodes.
const (
	offTTT       = 20 // Target Transfer Tag (Data-Out, NOP, Text, R2T, Data-In)
	offCmdSN     = 24 // CmdSN in initiator PDUs
	offStatSN    = 24 // StatSN in target PDUs
	offExpStatSN = 28 // ExpStatSN in initiator PDUs
	offExpCmdSN  = 28 // ExpCmdSN in target PDUs
	offMaxCmdSN  = 32 // MaxCmdSN in target PDUs
)

// TTT returns the Target Transfer Tag (bytes 20..23).
func (h *Header) TTT() uint32 { return h.U32(offTTT) }

// SetTTT sets the Target Transfer Tag.
func (h *Header) SetTTT(v uint32) { h.PutU32(offTTT, v) }

// CmdSN returns the CmdSN of an initiator PDU.
func (h *Header) CmdSN() uint32 { return h.U32(offCmdSN) }

// ExpStatSN returns the ExpStatSN of an initiator PDU.
func (h *Header) ExpStatSN() uint32 { return h.U32(offExpStatSN) }

// SetSN sets StatSN, ExpCmdSN and MaxCmdSN of a target PDU.
func (h *Header) SetSN(statSN, expCmdSN, maxCmdSN uint32) {
	h.PutU32(offStatSN, statSN)
	h.PutU32(offExpCmdSN, expCmdSN)
	h.PutU32(offMaxCmdSN, maxCmdSN)
}

// StatSN returns the StatSN of a target PDU.
func (h *Header) StatSN() uint32 { return h.U32(offStatSN) }

// ExpCmdSN returns the ExpCmdSN of a target PDU.
func (h *Header) ExpCmdSN() uint32 { return h.U32(offExpCmdSN) }

// MaxCmdSN returns the MaxCmdSN of a target PDU.
func (h *Header) MaxCmdSN() uint32 { return h.U32(offMaxCmdSN) }

// Pad returns the number of padding bytes that follow a data segment of n
// bytes.
func Pad(n int) int { return (4 - n&3) & 3 }

// castagnoli is the CRC32C table. crc32.MakeTable returns a shared,
// hardware-accelerated table for Castagnoli; it is read-only.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C extends crc with p. Start a digest with crc=0.
func CRC32C(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// PutDigest stores a digest in the byte order iSCSI sends it. RFC 7143
// §13.1 and its appendix give the CRC32C result in little-endian order on the
// wire (the least significant byte is sent first).
func PutDigest(b []byte, crc uint32) { binary.LittleEndian.PutUint32(b, crc) }

// Digest reads a digest stored by PutDigest.
func Digest(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// zeroPad is the padding source for data segments.
var zeroPad [4]byte

// Padding returns a read-only slice of n zero bytes (n < 4).
func Padding(n int) []byte { return zeroPad[:n:n] }
