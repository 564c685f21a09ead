package crypt

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"hastor/blockdev"
	"hastor/crypt/luks2"
)

// Volume is an encrypted LUN's backing store: a LUKS2 volume whose data
// segment is served through a Device. The header is read each time it is
// needed, so keyslots that hastorctl adds while hastord runs are seen;
// hastord never writes the header. OpenVolume reads it through the page
// cache with a plain read-only descriptor of the volume's path;
// OpenVolumeOn through the data-path device itself.
type Volume struct {
	name   string
	header func() (luks2.Storage, func(), error) // opens the header for reading
	dev    *Device

	mu sync.Mutex // serialises Unlock
}

// ErrHeaderChanged: the volume's header now describes a different data
// area than the one being served.
var ErrHeaderChanged = errors.New("LUKS2 header changed while the volume is served")

// OpenVolume reads the LUKS2 header of the volume at path and returns a
// Volume whose Device, still locked, maps inner's data segment. inner is
// the data-path device opened on the same path; the Volume's Device owns
// it from now on.
func OpenVolume(path string, inner blockdev.Device) (*Volume, error) {
	return openVolume(path, inner, func() (luks2.Storage, func(), error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("open LUKS2 volume: %w", err)
		}
		return luks2.File{File: f}, func() { f.Close() }, nil
	})
}

// OpenVolumeOn is OpenVolume for a volume whose header is read through
// inner itself, with O_DIRECT-aligned reads: a replicated device, whose
// header travels with its data and is readable only where it is primary.
// name names the volume in errors.
func OpenVolumeOn(name string, inner blockdev.Device) (*Volume, error) {
	return openVolume(name, inner, func() (luks2.Storage, func(), error) {
		return DeviceStorage{Dev: inner}, func() {}, nil
	})
}

func openVolume(name string, inner blockdev.Device, header func() (luks2.Storage, func(), error)) (*Volume, error) {
	lv, done, err := openHeader(name, header)
	if err != nil {
		return nil, err
	}
	lay, err := layoutOf(lv)
	done()
	if err != nil {
		return nil, err
	}
	dev, err := NewDevice(inner, lay)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Volume{name: name, header: header, dev: dev}, nil
}

// openHeader opens and parses the header; done releases it.
func openHeader(name string, header func() (luks2.Storage, func(), error)) (*luks2.Volume, func(), error) {
	st, done, err := header()
	if err != nil {
		return nil, nil, err
	}
	lv, err := luks2.Open(st)
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return lv, done, nil
}

// Device returns the Volume's data device.
func (v *Volume) Device() *Device { return v.dev }

func layoutOf(lv *luks2.Volume) (Layout, error) {
	if c := lv.Cipher(); c != "aes-xts-plain64" {
		return Layout{}, fmt.Errorf("%w: cipher %s (hastor serves aes-xts-plain64)", luks2.ErrUnsupported, c)
	}
	size, err := lv.DataSize()
	if err != nil {
		return Layout{}, err
	}
	// luks2.Open refuses segments whose iv_tweak is not 0.
	return Layout{Offset: lv.DataOffset(), Size: size, SectorSize: lv.SectorSize()}, nil
}

// Unlock opens a keyslot of the volume with passphrase and installs the
// volume key in the Device. It returns the keyslot used. A wrong
// passphrase returns an error wrapping luks2.ErrWrongPassphrase; nothing
// is written either way.
func (v *Volume) Unlock(passphrase []byte) (slot int, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.dev.Ready() == nil {
		return -1, ErrAlreadyUnlocked
	}
	lv, done, err := openHeader(v.name, v.header)
	if err != nil {
		return -1, err
	}
	defer done()
	lay, err := layoutOf(lv)
	if err != nil {
		return -1, err
	}
	if want := v.dev.Layout(); lay.Offset != want.Offset || lay.SectorSize != want.SectorSize || lay.IVTweak != want.IVTweak {
		return -1, fmt.Errorf("%w: data segment now at offset %d, sector size %d; restart hastord to serve it", ErrHeaderChanged, lay.Offset, lay.SectorSize)
	}
	raw, slot, err := lv.Unlock(passphrase)
	if err != nil {
		return -1, err
	}
	k, err := NewKey(raw)
	clear(raw)
	if err != nil {
		return -1, err
	}
	if err := v.dev.Unlock(k); err != nil {
		k.Destroy()
		return -1, err
	}
	return slot, nil
}

// Close closes the Device (destroying the key) and the inner device.
func (v *Volume) Close() error { return v.dev.Close() }
