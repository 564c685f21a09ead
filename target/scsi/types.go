package scsi

// LBA is a logical block address (SBC-3 "logical blocks"): the index of a
// logical block on the logical unit, counted from 0.
type LBA uint64

// Blocks is a number of logical blocks (the TRANSFER LENGTH, VERIFICATION
// LENGTH or NUMBER OF LOGICAL BLOCKS field of a CDB).
type Blocks uint32

// Dir is the direction of a command's data transfer, seen from the initiator.
type Dir uint8

// Data directions.
const (
	DirNone  Dir = iota // no data transfer
	DirRead             // data-in: target to initiator (READ, INQUIRY, ...)
	DirWrite            // data-out: initiator to target (WRITE, MODE SELECT, ...)
)

// String returns "none", "read" or "write".
func (d Dir) String() string {
	switch d {
	case DirNone:
		return "none"
	case DirRead:
		return "read"
	case DirWrite:
		return "write"
	}
	return "invalid"
}

// Status codes (SAM-5 "status codes").
const (
	StatusGood                byte = 0x00
	StatusCheckCondition      byte = 0x02
	StatusConditionMet        byte = 0x04
	StatusBusy                byte = 0x08
	StatusReservationConflict byte = 0x18
	StatusTaskSetFull         byte = 0x28
	StatusACAActive           byte = 0x30
	StatusTaskAborted         byte = 0x40
)

// SenseKey is the SENSE KEY field of sense data (SPC-4 "sense key and
// additional sense code").
type SenseKey byte

// Sense keys.
const (
	SenseNoSense        SenseKey = 0x0
	SenseRecoveredError SenseKey = 0x1
	SenseNotReady       SenseKey = 0x2
	SenseMediumError    SenseKey = 0x3
	SenseHardwareError  SenseKey = 0x4
	SenseIllegalRequest SenseKey = 0x5
	SenseUnitAttention  SenseKey = 0x6
	SenseDataProtect    SenseKey = 0x7
	SenseBlankCheck     SenseKey = 0x8
	SenseCopyAborted    SenseKey = 0xA
	SenseAbortedCommand SenseKey = 0xB
	SenseVolumeOverflow SenseKey = 0xD
	SenseMiscompare     SenseKey = 0xE
)

// ResetKind selects the reset that Target.Reset performs.
type ResetKind uint8

// Reset kinds (RFC 7143 §11.5.1, SAM-5 "hard reset").
const (
	// ResetTargetWarm is TARGET WARM RESET: a SAM-5 hard reset of the
	// target. Every LU returns its mode parameters to their defaults and
	// every attached I_T nexus gets UNIT ATTENTION 29h/03h (BUS DEVICE
	// RESET FUNCTION OCCURRED).
	ResetTargetWarm ResetKind = iota + 1
	// ResetTargetCold is TARGET COLD RESET: as ResetTargetWarm, but the UA
	// is 29h/01h (POWER ON OCCURRED). The transport also closes every
	// connection of the target (RFC 7143 §11.5.1).
	ResetTargetCold
)

// String returns the RFC 7143 name of the reset.
func (k ResetKind) String() string {
	switch k {
	case ResetTargetWarm:
		return "TARGET WARM RESET"
	case ResetTargetCold:
		return "TARGET COLD RESET"
	}
	return "invalid reset"
}
