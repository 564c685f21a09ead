package meta

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (or a
// blockdev error); test them with errors.Is.
var (
	// ErrInvalidLayout: a Plan function was given an unusable parameter
	// (an activity-log extent count out of range, a data size that is not
	// a positive multiple of BlockSize).
	ErrInvalidLayout = errors.New("meta: invalid layout parameters")
	// ErrDeviceTooSmall: the device (internal metadata) or the metadata
	// device (external) cannot hold the metadata and at least one data
	// block.
	ErrDeviceTooSmall = errors.New("meta: device too small")
	// ErrNoMetadata: neither superblock copy is valid; the device holds no
	// hastor metadata (or both copies are damaged).
	ErrNoMetadata = errors.New("meta: no valid superblock")
	// ErrCorrupt: an on-disk structure failed its magic, checksum or
	// field checks.
	ErrCorrupt = errors.New("meta: corrupt metadata block")
	// ErrVersion: the superblock has a format version this code does not
	// know.
	ErrVersion = errors.New("meta: unsupported metadata version")
	// ErrLayoutMismatch: the superblock does not describe the device it
	// was read from (wrong placement, device resized, different
	// activity-log size), or a Superblock passed to WriteSuperblock
	// changes a layout field.
	ErrLayoutMismatch = errors.New("meta: metadata layout does not match device")
	// ErrRangeTooLarge: a write spans more activity-log extents than the
	// log holds; the caller must split it.
	ErrRangeTooLarge = errors.New("meta: write spans more extents than the activity log holds")
	// ErrNotActive: Complete named an extent that has no write in flight
	// (a caller bug: every Complete must match a Begin that returned Go or
	// AfterCommit).
	ErrNotActive = errors.New("meta: extent has no write in flight")
	// ErrTxState: Committed was called with a transaction that is not the
	// one in flight.
	ErrTxState = errors.New("meta: transaction not in flight")
)
