package scsi

// Operation codes (SPC-4 Annex D.3.1, SBC-3 Annex A).
const (
	opTestUnitReady    = 0x00
	opRequestSense     = 0x03
	opRead6            = 0x08
	opWrite6           = 0x0A
	opInquiry          = 0x12
	opModeSelect6      = 0x15
	opReserve6         = 0x16
	opRelease6         = 0x17
	opModeSense6       = 0x1A
	opStartStopUnit    = 0x1B
	opPreventAllow     = 0x1E
	opReadCapacity10   = 0x25
	opRead10           = 0x28
	opWrite10          = 0x2A
	opWriteVerify10    = 0x2E
	opVerify10         = 0x2F
	opPreFetch10       = 0x34
	opSyncCache10      = 0x35
	opReadDefect10     = 0x37
	opWriteSame10      = 0x41
	opUnmap            = 0x42
	opModeSelect10     = 0x55
	opReserve10        = 0x56
	opRelease10        = 0x57
	opModeSense10      = 0x5A
	opPRIn             = 0x5E
	opPROut            = 0x5F
	opRead16           = 0x88
	opWrite16          = 0x8A
	opCompareAndWrite  = 0x89
	opORWrite16        = 0x8B
	opWriteVerify16    = 0x8E
	opVerify16         = 0x8F
	opPreFetch16       = 0x90
	opSyncCache16      = 0x91
	opWriteSame16      = 0x93
	opServiceActionIn  = 0x9E // SA 10h: READ CAPACITY(16); 12h: GET LBA STATUS
	opReportLUNs       = 0xA0
	opMaintenanceIn    = 0xA3 // SA 0Ch: REPORT SUPPORTED OPERATION CODES
	opRead12           = 0xA8
	opWrite12          = 0xAA
	opWriteVerify12    = 0xAE
	opVerify12         = 0xAF
	opReadDefect12     = 0xB7
	saReadCapacity16   = 0x10
	saGetLBAStatus     = 0x12
	saReportSupportOps = 0x0C
)

// opKind selects the handler of a decoded command.
type opKind uint8

const (
	kInvalid opKind = iota
	kTestUnitReady
	kRequestSense
	kInquiry
	kModeSelect
	kModeSense
	kStartStopUnit
	kPreventAllow
	kReadCapacity10
	kReadCapacity16
	kRead
	kWrite
	kWriteVerify
	kVerify
	kSyncCache
	kReportLUNs
	kReportOpcodes
	kPreFetch
	kGetLBAStatus
	kORWrite
	kReserve
	kRelease
	kReadDefect
	kCompareAndWrite
	kWriteSame
	kUnmap
	kPRIn
	kPROut
	kExtendedCopy
	kReceiveCopyResults
)

// needsMedium reports whether commands of kind k access the medium and so
// end with NOT READY while the LU's Medium is not ready (SBC-3 "direct-access
// block device type model": commands that report on or transfer the
// medium's data).
func (k opKind) needsMedium() bool {
	switch k {
	case kTestUnitReady, kReadCapacity10, kReadCapacity16, kRead, kWrite,
		kWriteVerify, kVerify, kSyncCache, kPreFetch, kGetLBAStatus, kORWrite, kReadDefect,
		kCompareAndWrite, kWriteSame, kUnmap, kExtendedCopy:
		return true
	}
	return false
}

// opInfo describes one supported command. usage is the CDB USAGE DATA reported
// by REPORT SUPPORTED OPERATION CODES (SPC-4 "one_command parameter data"):
// byte 0 is the operation code, the SERVICE ACTION field holds the service
// action, and every other bit is 1 exactly when the device server evaluates it.
// ignore marks bits the device server accepts but does not evaluate (obsolete
// bits, GROUP NUMBER, vendor-specific control bits). Decode rejects every other
// bit that is set with INVALID FIELD IN CDB, so the reported usage data and the
// bits accepted cannot drift apart.
type opInfo struct {
	name   string
	op     byte
	sa     byte // service action, if hasSA
	hasSA  bool
	kind   opKind
	cdbLen uint8
	usage  [16]byte
	ignore [16]byte
	// cont marks the lower bits of disallowed multi-bit fields (e.g.
	// RDPROTECT, bits 7-5 of byte 1: cont 0x60), so that the field pointer
	// names the field's most significant bit. Other disallowed bits are
	// reported one by one.
	cont [16]byte
	// timeout is the RECOMMENDED COMMAND TIMEOUT, seconds (SPC-4
	// "command timeouts descriptor").
	timeout uint32
	// resOK: the command is processed normally even when another I_T
	// nexus holds an SPC-2 reservation of the LU (SPC-2 "reservations");
	// every other command gets RESERVATION CONFLICT then. See
	// reservation.go.
	resOK bool
	// thin: only logical units with logical block provisioning
	// management (a device that can deallocate, provisioning.go) support
	// the command; for the others it is an unsupported operation code.
	thin bool
}

// protectField marks RDPROTECT/WRPROTECT/VRPROTECT (byte 1 bits 7-5) of
// the block commands, and the former LUN field of READ(6)/WRITE(6), as one
// field each.
var protectField = [16]byte{1: 0x60}

// Control byte (SAM-5 "CONTROL byte"): bits 7-6 vendor specific (ignored), NACA
// (bit 2) unsupported and so treated as reserved: NACA=1 yields INVALID FIELD
// IN CDB (SAM-5 "NACA bit").
const ctlIgnore = 0xC0

// opTable lists the supported commands in ascending order of operation
// code and service action, the order of REPORT SUPPORTED OPERATION CODES.
var opTable = [...]opInfo{
	{name: "TEST UNIT READY", op: opTestUnitReady, kind: kTestUnitReady, cdbLen: 6, timeout: 10,
		usage: [16]byte{0x00, 0, 0, 0, 0, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "REQUEST SENSE", op: opRequestSense, kind: kRequestSense, cdbLen: 6, timeout: 10, resOK: true,
		usage: [16]byte{0x03, 0x01, 0, 0, 0xFF, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "READ(6)", cont: protectField, op: opRead6, kind: kRead, cdbLen: 6, timeout: 30,
		usage: [16]byte{0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "WRITE(6)", cont: protectField, op: opWrite6, kind: kWrite, cdbLen: 6, timeout: 30,
		usage: [16]byte{0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "INQUIRY", op: opInquiry, kind: kInquiry, cdbLen: 6, timeout: 10, resOK: true,
		usage: [16]byte{0x12, 0x01, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "MODE SELECT(6)", op: opModeSelect6, kind: kModeSelect, cdbLen: 6, timeout: 30,
		usage: [16]byte{0x15, 0x11, 0, 0, 0xFF, 0}, ignore: [16]byte{5: ctlIgnore}},
	// SPC-2 "RESERVE(6)", "RELEASE(6)": the obsolete extent and
	// third-party fields (bytes 1-4) are reserved here.
	{name: "RESERVE(6)", op: opReserve6, kind: kReserve, cdbLen: 6, timeout: 10, resOK: true,
		usage: [16]byte{0x16, 0, 0, 0, 0, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "RELEASE(6)", op: opRelease6, kind: kRelease, cdbLen: 6, timeout: 10, resOK: true,
		usage: [16]byte{0x17, 0, 0, 0, 0, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "MODE SENSE(6)", op: opModeSense6, kind: kModeSense, cdbLen: 6, timeout: 10,
		usage: [16]byte{0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "START STOP UNIT", op: opStartStopUnit, kind: kStartStopUnit, cdbLen: 6, timeout: 30,
		usage: [16]byte{0x1B, 0x01, 0, 0x0F, 0xF7, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "PREVENT ALLOW MEDIUM REMOVAL", op: opPreventAllow, kind: kPreventAllow, cdbLen: 6, timeout: 10,
		usage: [16]byte{0x1E, 0, 0, 0, 0x03, 0}, ignore: [16]byte{5: ctlIgnore}},
	{name: "READ CAPACITY(10)", op: opReadCapacity10, kind: kReadCapacity10, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0}, ignore: [16]byte{9: ctlIgnore}},
	// READ/WRITE byte 1: xPROTECT (7-5) is evaluated only to reject
	// non-zero values (PROTECT=0), so it is reported as reserved; RARC
	// (READ bit 2) and FUA_NV (bit 1, obsolete) are accepted and ignored.
	{name: "READ(10)", cont: protectField, op: opRead10, kind: kRead, cdbLen: 10, timeout: 30,
		usage:  [16]byte{0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0},
		ignore: [16]byte{1: 0x06, 6: 0x1F, 9: ctlIgnore}},
	{name: "WRITE(10)", cont: protectField, op: opWrite10, kind: kWrite, cdbLen: 10, timeout: 30,
		usage:  [16]byte{0x2A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0},
		ignore: [16]byte{1: 0x02, 6: 0x1F, 9: ctlIgnore}},
	{name: "WRITE AND VERIFY(10)", cont: protectField, op: opWriteVerify10, kind: kWriteVerify, cdbLen: 10, timeout: 60,
		usage:  [16]byte{0x2E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0},
		ignore: [16]byte{6: 0x1F, 9: ctlIgnore}},
	{name: "VERIFY(10)", cont: protectField, op: opVerify10, kind: kVerify, cdbLen: 10, timeout: 60,
		usage:  [16]byte{0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0},
		ignore: [16]byte{6: 0x1F, 9: ctlIgnore}},
	// SBC-3 "PRE-FETCH (10)": IMMED (byte 1 bit 1); RELADR (bit 0) is
	// obsolete and reserved here; GROUP NUMBER accepted and ignored.
	{name: "PRE-FETCH(10)", op: opPreFetch10, kind: kPreFetch, cdbLen: 10, timeout: 10,
		usage:  [16]byte{0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0},
		ignore: [16]byte{6: 0x1F, 9: ctlIgnore}},
	{name: "SYNCHRONIZE CACHE(10)", op: opSyncCache10, kind: kSyncCache, cdbLen: 10, timeout: 60,
		usage:  [16]byte{0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0},
		ignore: [16]byte{1: 0x04, 6: 0x1F, 9: ctlIgnore}},
	// SBC-3 "READ DEFECT DATA (10)": REQ_PLIST, REQ_GLIST, DEFECT LIST
	// FORMAT in byte 2.
	{name: "READ DEFECT DATA(10)", op: opReadDefect10, kind: kReadDefect, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	// SBC-3 "WRITE SAME (10)": UNMAP, ANCHOR, PBDATA and LBDATA
	// unsupported (provisioning.go).
	{name: "WRITE SAME(10)", cont: protectField, op: opWriteSame10, kind: kWriteSame, cdbLen: 10, timeout: 60,
		usage: [16]byte{0x41, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{6: 0x1F, 9: ctlIgnore}},
	// SBC-3 "UNMAP": ANCHOR unsupported (ANC_SUP=0).
	{name: "UNMAP", op: opUnmap, kind: kUnmap, cdbLen: 10, timeout: 60, thin: true,
		usage: [16]byte{0x42, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{6: 0x1F, 9: ctlIgnore}},
	{name: "MODE SELECT(10)", op: opModeSelect10, kind: kModeSelect, cdbLen: 10, timeout: 30,
		usage: [16]byte{0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	// SPC-2 "RESERVE(10)", "RELEASE(10)": third-party reservations
	// (3RDPTY, LONGID, THIRD-PARTY DEVICE ID, PARAMETER LIST LENGTH) are
	// not supported, so those fields are reserved here.
	{name: "RESERVE(10)", op: opReserve10, kind: kReserve, cdbLen: 10, timeout: 10, resOK: true,
		usage: [16]byte{0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "RELEASE(10)", op: opRelease10, kind: kRelease, cdbLen: 10, timeout: 10, resOK: true,
		usage: [16]byte{0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "MODE SENSE(10)", op: opModeSense10, kind: kModeSense, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "PERSISTENT RESERVE IN(READ KEYS)", op: opPRIn, sa: prinReadKeys, hasSA: true, kind: kPRIn, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5E, prinReadKeys, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "PERSISTENT RESERVE IN(READ RESERVATION)", op: opPRIn, sa: prinReadReservation, hasSA: true, kind: kPRIn, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5E, prinReadReservation, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "PERSISTENT RESERVE IN(REPORT CAPABILITIES)", op: opPRIn, sa: prinReportCaps, hasSA: true, kind: kPRIn, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5E, prinReportCaps, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "PERSISTENT RESERVE IN(READ FULL STATUS)", op: opPRIn, sa: prinReadFullStatus, hasSA: true, kind: kPRIn, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5E, prinReadFullStatus, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	// SPC-4 "PERSISTENT RESERVE OUT": SCOPE and TYPE are evaluated by
	// RESERVE, RELEASE and PREEMPT and ignored by the others.
	{name: "PERSISTENT RESERVE OUT(REGISTER)", op: opPROut, sa: proutRegister, hasSA: true, kind: kPROut, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5F, proutRegister, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{2: 0xFF, 9: ctlIgnore}},
	{name: "PERSISTENT RESERVE OUT(RESERVE)", op: opPROut, sa: proutReserve, hasSA: true, kind: kPROut, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5F, proutReserve, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "PERSISTENT RESERVE OUT(RELEASE)", op: opPROut, sa: proutRelease, hasSA: true, kind: kPROut, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5F, proutRelease, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "PERSISTENT RESERVE OUT(CLEAR)", op: opPROut, sa: proutClear, hasSA: true, kind: kPROut, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5F, proutClear, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{2: 0xFF, 9: ctlIgnore}},
	{name: "PERSISTENT RESERVE OUT(PREEMPT)", op: opPROut, sa: proutPreempt, hasSA: true, kind: kPROut, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5F, proutPreempt, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "PERSISTENT RESERVE OUT(PREEMPT AND ABORT)", op: opPROut, sa: proutPreemptAbort, hasSA: true, kind: kPROut, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5F, proutPreemptAbort, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{9: ctlIgnore}},
	{name: "PERSISTENT RESERVE OUT(REGISTER AND IGNORE EXISTING KEY)", op: opPROut, sa: proutRegisterIgnore, hasSA: true, kind: kPROut, cdbLen: 10, timeout: 10,
		usage: [16]byte{0x5F, proutRegisterIgnore, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, ignore: [16]byte{2: 0xFF, 9: ctlIgnore}},
	// SPC-4 "EXTENDED COPY (LID1)" and "RECEIVE COPY RESULTS" (xcopy.go).
	{name: "EXTENDED COPY(LID1)", op: opExtendedCopy, sa: saXCopyLID1, hasSA: true, kind: kExtendedCopy, cdbLen: 16, timeout: 60,
		usage:  [16]byte{0x83, saXCopyLID1, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{15: ctlIgnore}},
	{name: "RECEIVE COPY RESULTS(COPY STATUS)", op: opReceiveCopyResults, sa: saCopyStatus, hasSA: true, kind: kReceiveCopyResults, cdbLen: 16, timeout: 10,
		usage:  [16]byte{0x84, saCopyStatus, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{15: ctlIgnore}},
	{name: "RECEIVE COPY RESULTS(OPERATING PARAMETERS)", op: opReceiveCopyResults, sa: saOperatingParams, hasSA: true, kind: kReceiveCopyResults, cdbLen: 16, timeout: 10,
		usage:  [16]byte{0x84, saOperatingParams, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{15: ctlIgnore}},
	{name: "READ(16)", cont: protectField, op: opRead16, kind: kRead, cdbLen: 16, timeout: 30,
		usage:  [16]byte{0x88, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{1: 0x06, 14: 0x1F, 15: ctlIgnore}},
	// SBC-3 "COMPARE AND WRITE": DPO, FUA (FUA_NV obsolete); NUMBER OF
	// LOGICAL BLOCKS in byte 13.
	{name: "COMPARE AND WRITE", cont: protectField, op: opCompareAndWrite, kind: kCompareAndWrite, cdbLen: 16, timeout: 30,
		usage:  [16]byte{0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0, 0},
		ignore: [16]byte{1: 0x02, 14: 0x1F, 15: ctlIgnore}},
	{name: "WRITE(16)", cont: protectField, op: opWrite16, kind: kWrite, cdbLen: 16, timeout: 30,
		usage:  [16]byte{0x8A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{1: 0x02, 14: 0x1F, 15: ctlIgnore}},
	// SBC-3 "ORWRITE (16)": byte 1 as WRITE(16) (ORPROTECT, DPO, FUA,
	// FUA_NV obsolete).
	{name: "ORWRITE(16)", cont: protectField, op: opORWrite16, kind: kORWrite, cdbLen: 16, timeout: 60,
		usage:  [16]byte{0x8B, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{1: 0x02, 14: 0x1F, 15: ctlIgnore}},
	{name: "WRITE AND VERIFY(16)", cont: protectField, op: opWriteVerify16, kind: kWriteVerify, cdbLen: 16, timeout: 60,
		usage:  [16]byte{0x8E, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{14: 0x1F, 15: ctlIgnore}},
	{name: "VERIFY(16)", cont: protectField, op: opVerify16, kind: kVerify, cdbLen: 16, timeout: 60,
		usage:  [16]byte{0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{14: 0x1F, 15: ctlIgnore}},
	// SBC-3 "PRE-FETCH (16)".
	{name: "PRE-FETCH(16)", op: opPreFetch16, kind: kPreFetch, cdbLen: 16, timeout: 10,
		usage:  [16]byte{0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{14: 0x1F, 15: ctlIgnore}},
	{name: "SYNCHRONIZE CACHE(16)", op: opSyncCache16, kind: kSyncCache, cdbLen: 16, timeout: 60,
		usage:  [16]byte{0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{1: 0x04, 14: 0x1F, 15: ctlIgnore}},
	// SBC-3 "WRITE SAME (16)": UNMAP (refused by LUs without provisioning
	// management) and NDOB (SBC-4: no Data-Out buffer, the blocks are
	// zeroed); ANCHOR, PBDATA and LBDATA unsupported.
	{name: "WRITE SAME(16)", cont: protectField, op: opWriteSame16, kind: kWriteSame, cdbLen: 16, timeout: 60,
		usage:  [16]byte{0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{14: 0x1F, 15: ctlIgnore}},
	{name: "READ CAPACITY(16)", op: opServiceActionIn, sa: saReadCapacity16, hasSA: true, kind: kReadCapacity16, cdbLen: 16, timeout: 10,
		usage:  [16]byte{0x9E, saReadCapacity16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0},
		ignore: [16]byte{15: ctlIgnore}},
	// SBC-3 "GET LBA STATUS".
	{name: "GET LBA STATUS", op: opServiceActionIn, sa: saGetLBAStatus, hasSA: true, kind: kGetLBAStatus, cdbLen: 16, timeout: 10,
		usage:  [16]byte{0x9E, saGetLBAStatus, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{15: ctlIgnore}},
	{name: "REPORT LUNS", op: opReportLUNs, kind: kReportLUNs, cdbLen: 12, timeout: 10, resOK: true,
		usage:  [16]byte{0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{11: ctlIgnore}},
	{name: "REPORT SUPPORTED OPERATION CODES", op: opMaintenanceIn, sa: saReportSupportOps, hasSA: true, kind: kReportOpcodes, cdbLen: 12, timeout: 10, resOK: true,
		usage:  [16]byte{0xA3, saReportSupportOps, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{11: ctlIgnore}},
	{name: "READ(12)", cont: protectField, op: opRead12, kind: kRead, cdbLen: 12, timeout: 30,
		usage:  [16]byte{0xA8, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{1: 0x06, 10: 0x1F, 11: ctlIgnore}},
	{name: "WRITE(12)", cont: protectField, op: opWrite12, kind: kWrite, cdbLen: 12, timeout: 30,
		usage:  [16]byte{0xAA, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{1: 0x02, 10: 0x1F, 11: ctlIgnore}},
	{name: "WRITE AND VERIFY(12)", cont: protectField, op: opWriteVerify12, kind: kWriteVerify, cdbLen: 12, timeout: 60,
		usage:  [16]byte{0xAE, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{10: 0x1F, 11: ctlIgnore}},
	{name: "VERIFY(12)", cont: protectField, op: opVerify12, kind: kVerify, cdbLen: 12, timeout: 60,
		usage:  [16]byte{0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{10: 0x1F, 11: ctlIgnore}},
	// SBC-3 "READ DEFECT DATA (12)": REQ_PLIST, REQ_GLIST, DEFECT LIST
	// FORMAT in byte 1; ADDRESS DESCRIPTOR INDEX in bytes 2-5.
	{name: "READ DEFECT DATA(12)", op: opReadDefect12, kind: kReadDefect, cdbLen: 12, timeout: 10,
		usage:  [16]byte{0xB7, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
		ignore: [16]byte{11: ctlIgnore}},
}

// opIndex maps an operation code to 1 + the index of its first opTable
// entry (0: unsupported). Computed once; read-only afterwards.
var opIndex = func() (idx [256]uint8) {
	for i := len(opTable) - 1; i >= 0; i-- {
		idx[opTable[i].op] = uint8(i + 1)
	}
	return idx
}()

// lookupOp finds the entry for operation code op and, for operation codes
// with service actions, service action sa. It reports whether op has
// service actions at all.
func lookupOp(op, sa byte) (info *opInfo, opHasSA bool) {
	i := int(opIndex[op])
	if i == 0 {
		return nil, false
	}
	for i--; i < len(opTable) && opTable[i].op == op; i++ {
		e := &opTable[i]
		if !e.hasSA {
			return e, false
		}
		if e.sa == sa {
			return e, true
		}
		opHasSA = true
	}
	return nil, opHasSA
}

// supports reports whether lu supports the command e describes: every
// command in opTable but those that need provisioning management
// (opInfo.thin) on an LU without it.
func (lu *LU) supports(e *opInfo) bool { return !e.thin || lu.thin() }

// serviceActionField returns the offset and mask of the SERVICE ACTION
// field of operation codes that have one.
func serviceActionField(op byte) (off int, mask byte, ok bool) {
	switch op {
	case opServiceActionIn, opMaintenanceIn, opPRIn, opPROut, opExtendedCopy, opReceiveCopyResults:
		return 1, 0x1F, true
	}
	return 0, 0, false
}
