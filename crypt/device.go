package crypt

import (
	"errors"
	"fmt"
	"sync"

	"hastor/blockdev"
)

// ErrLocked: I/O on an encrypted device whose volume key has not been
// supplied yet.
var ErrLocked = errors.New("encrypted volume is locked: no volume key yet")

// ErrAlreadyUnlocked: Unlock on a device that already has its key.
var ErrAlreadyUnlocked = errors.New("encrypted volume is already unlocked")

// Layout places an encrypted data area on a backing device, as a LUKS2
// crypt segment does.
type Layout struct {
	// Offset is where the data area starts on the backing device, in
	// bytes: a multiple of SectorSize (LUKS2 segment "offset").
	Offset int64
	// Size is the data area's length in bytes; 0 means up to the end of
	// the backing device ("dynamic"). A multiple of SectorSize.
	Size int64
	// SectorSize is the encryption sector (data unit) size, 512 or 4096.
	SectorSize int
	// IVTweak is added to every sector's IV (LUKS2 segment "iv_tweak").
	IVTweak uint64
}

// Device is a blockdev.Device whose data is stored AES-XTS encrypted
// (aes-xts-plain64, as dm-crypt and LUKS2 define it) on an inner device,
// past a header. Offsets are relative to the data area.
//
// IVs follow dm-crypt without iv_large_sectors, which is what cryptsetup
// uses for LUKS2: the plain64 IV of a sector is its offset in the data
// area counted in 512-byte units, plus IVTweak, whatever the sector size.
//
// A new Device is locked: Ready and every transfer return ErrLocked until
// Unlock supplies the key. WriteAt and WriteAtFUA encrypt the caller's
// buffer in place (blockdev.Device allows it), so the data path makes no
// copy; reads decrypt in place after the inner read.
type Device struct {
	inner blockdev.Device
	fua   blockdev.FUAWriter // nil: WriteAtFUA is WriteAt + Flush
	lay   Layout
	size  int64
	bs    int // the block size callers must use

	// mu is held shared by every transfer that uses the key and
	// exclusively by Unlock and Close, so the key is never destroyed
	// under a transfer.
	mu     sync.RWMutex
	key    *Key // nil while locked
	closed bool
}

var (
	_ blockdev.Device    = (*Device)(nil)
	_ blockdev.FUAWriter = (*Device)(nil)
)

// NewDevice returns a locked Device over inner's data area described by
// lay. The Device owns inner from now on: Close closes it.
func NewDevice(inner blockdev.Device, lay Layout) (*Device, error) {
	if lay.SectorSize != 512 && lay.SectorSize != 4096 {
		return nil, fmt.Errorf("encryption sector size %d: must be 512 or 4096", lay.SectorSize)
	}
	ss := int64(lay.SectorSize)
	total := inner.Size()
	size := lay.Size
	if size == 0 {
		size = total - lay.Offset
	}
	switch {
	case lay.Offset < 0 || lay.Offset%ss != 0:
		return nil, fmt.Errorf("data offset %d: must be a non-negative multiple of the sector size %d", lay.Offset, ss)
	case size <= 0 || lay.Offset > total-size:
		return nil, fmt.Errorf("%w: data area at offset %d (%d bytes) does not fit in the %d-byte device", blockdev.ErrBadSize, lay.Offset, size, total)
	case size%ss != 0:
		return nil, fmt.Errorf("%w: data area of %d bytes is not a whole number of %d-byte sectors", blockdev.ErrBadSize, size, ss)
	}
	bs := lay.SectorSize
	if ib, ok := inner.(interface{ BlockSize() int }); ok && ib.BlockSize() > bs {
		bs = ib.BlockSize()
	}
	if lay.Offset%int64(bs) != 0 {
		return nil, fmt.Errorf("data offset %d: not a multiple of the device's %d-byte blocks", lay.Offset, bs)
	}
	d := &Device{inner: inner, lay: lay, size: size &^ int64(bs-1), bs: bs}
	if f, ok := inner.(blockdev.FUAWriter); ok {
		d.fua = f
	}
	return d, nil
}

// Unlock installs the volume key. The Device owns k from now on and
// destroys it on Close. The caller must have verified k against the
// volume (luks2 digests do): a wrong key would decrypt to garbage.
func (d *Device) Unlock(k *Key) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return blockdev.ErrClosed
	case d.key != nil:
		return ErrAlreadyUnlocked
	}
	d.key = k
	return nil
}

// Ready returns nil once the Device has its key, else ErrLocked (or
// blockdev.ErrClosed). The scsi package reports NOT READY meanwhile. When
// the inner device can itself be not ready (a replicated device on its
// secondary node), its state comes first.
func (d *Device) Ready() error {
	if m, ok := d.inner.(interface{ Ready() error }); ok {
		if err := m.Ready(); err != nil {
			return err
		}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	switch {
	case d.closed:
		return blockdev.ErrClosed
	case d.key == nil:
		return ErrLocked
	}
	return nil
}

// BlockSize returns the smallest unit of I/O: the encryption sector size,
// or the inner device's block size if larger.
func (d *Device) BlockSize() int { return d.bs }

// Layout returns the data area's placement.
func (d *Device) Layout() Layout { return d.lay }

// Size returns the data area's size in bytes.
func (d *Device) Size() int64 { return d.size }

// begin validates a transfer of p at data-area offset off (the inner
// device checks only its own bounds, which would let an I/O reach into the
// header), then takes mu shared and returns the key; on error mu is not
// held and nothing was done to p.
func (d *Device) begin(p []byte, off int64) (*Key, error) {
	if err := blockdev.CheckIO(p, off, d.size, d.bs); err != nil {
		return nil, err
	}
	d.mu.RLock()
	switch {
	case d.closed:
		d.mu.RUnlock()
		return nil, blockdev.ErrClosed
	case d.key == nil:
		d.mu.RUnlock()
		return nil, ErrLocked
	}
	return d.key, nil
}

// ReadAt reads and decrypts len(p) bytes at data-area offset off.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	k, err := d.begin(p, off)
	if err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	n, err := d.inner.ReadAt(p, d.lay.Offset+off)
	if err != nil {
		// Decrypt nothing: a short read leaves no whole-sector guarantee.
		return n, err
	}
	d.apply(k, p, off, false)
	return n, nil
}

// WriteAt encrypts p in place and writes it at data-area offset off.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	return d.write(p, off, false)
}

// WriteAtFUA is WriteAt whose data is durable when it returns.
func (d *Device) WriteAtFUA(p []byte, off int64) (int, error) {
	return d.write(p, off, true)
}

func (d *Device) write(p []byte, off int64, fua bool) (int, error) {
	k, err := d.begin(p, off)
	if err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	d.apply(k, p, off, true)
	switch {
	case !fua:
		return d.inner.WriteAt(p, d.lay.Offset+off)
	case d.fua != nil:
		return d.fua.WriteAtFUA(p, d.lay.Offset+off)
	}
	n, err := d.inner.WriteAt(p, d.lay.Offset+off)
	if err != nil {
		return n, err
	}
	return n, d.inner.Flush()
}

// apply encrypts or decrypts p, which sits at data-area offset off, in
// place. The plain64 IV counts 512-byte units (see Device).
func (d *Device) apply(k *Key, p []byte, off int64, encrypt bool) {
	ss := d.lay.SectorSize
	iv := d.lay.IVTweak + uint64(off)/512
	c := k.cipher
	if ss == 512 {
		if encrypt {
			c.EncryptSectors(p, ss, iv)
		} else {
			c.DecryptSectors(p, ss, iv)
		}
		return
	}
	step := uint64(ss / 512)
	for i := 0; i < len(p); i += ss {
		if encrypt {
			c.EncryptSectors(p[i:i+ss], ss, iv)
		} else {
			c.DecryptSectors(p[i:i+ss], ss, iv)
		}
		iv += step
	}
}

// Flush makes completed writes durable (the inner device's Flush).
func (d *Device) Flush() error { return d.inner.Flush() }

// Close waits for transfers in flight, destroys the key and closes the
// inner device, returning its flush error.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return blockdev.ErrClosed
	}
	d.closed = true
	if d.key != nil {
		d.key.Destroy()
		d.key = nil
	}
	d.mu.Unlock()
	return d.inner.Close()
}
