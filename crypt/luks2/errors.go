package luks2

import "errors"

// Sentinel errors. Every error returned by this package wraps one of these
// (check with errors.Is); the wrapping message says what was found and what
// to do about it.
var (
	// ErrNotLUKS2 means neither header copy carries the LUKS2 magic, or the
	// device holds a LUKS1 header.
	ErrNotLUKS2 = errors.New("luks2: not a LUKS2 volume")
	// ErrCorrupt means a LUKS2 magic was found but no header copy passed
	// its checksum and metadata validation. Restore a header backup.
	ErrCorrupt = errors.New("luks2: header corrupt")
	// ErrTruncated means the device is smaller than the header areas or the
	// data offset require (or, for Format, too small to hold any data).
	ErrTruncated = errors.New("luks2: device truncated")
	// ErrUnsupported means a valid header uses a feature this package does
	// not implement (another cipher, integrity, reencryption, several
	// segments, a mandatory requirement, ...). Use cryptsetup for it.
	ErrUnsupported = errors.New("luks2: unsupported feature")
	// ErrWrongPassphrase means no keyslot (or not the named one) opens with
	// the given passphrase.
	ErrWrongPassphrase = errors.New("luks2: no keyslot opens with this passphrase")
	// ErrWrongKey means a volume key given to AddKey does not match the
	// volume's digest.
	ErrWrongKey = errors.New("luks2: volume key does not match the volume digest")
	// ErrNoSuchSlot means the keyslot number is out of range or unused.
	ErrNoSuchSlot = errors.New("luks2: no such keyslot")
	// ErrSlotInUse means AddKey was asked for a keyslot that is taken.
	ErrSlotInUse = errors.New("luks2: keyslot in use")
	// ErrNoSpace means all 32 keyslots are used or the keyslots area has
	// no gap large enough for another keyslot.
	ErrNoSpace = errors.New("luks2: no free keyslot or keyslot area space")
	// ErrLastKeyslot means RemoveKey was asked to remove the only keyslot;
	// use ForceRemoveKey or Erase to make the volume unopenable on purpose.
	ErrLastKeyslot = errors.New("luks2: refusing to remove the last keyslot")
	// ErrChanged means the header on the device no longer belongs to the
	// volume that was opened (another UUID); Open it again.
	ErrChanged = errors.New("luks2: header changed on the device")
	// ErrInvalidOptions means Format, AddKey or a PBKDF got bad parameters.
	ErrInvalidOptions = errors.New("luks2: invalid options")
	// ErrLayoutMismatch means a header backup does not match the layout of
	// the LUKS2 header already on the device.
	ErrLayoutMismatch = errors.New("luks2: header backup layout differs from the device")
)
