package crypt

import (
	"errors"
	"io"

	"hastor/blockdev"
	"hastor/crypt/luks2"
)

// DeviceStorage reads a LUKS2 header through a blockdev.Device, whose
// transfers must be aligned to its blocks (O_DIRECT): each read goes
// through an aligned bounce buffer. It is read-only: header changes are
// hastorctl's, not the data path's.
type DeviceStorage struct {
	Dev blockdev.Device
}

var _ luks2.Storage = DeviceStorage{}

// errReadOnlyHeader: a write to a DeviceStorage.
var errReadOnlyHeader = errors.New("the LUKS2 header is read-only here")

// headerAlign is the alignment of DeviceStorage reads: the largest
// logical block size hastor serves.
const headerAlign = 4096

// ReadAt reads len(p) bytes at off.
func (s DeviceStorage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.Dev.Size() {
		return 0, io.EOF
	}
	start := off &^ (headerAlign - 1)
	end := min((off+int64(len(p))+headerAlign-1)&^(headerAlign-1), s.Dev.Size())
	pool := blockdev.NewPool()
	b := pool.Get(int(end - start))
	defer pool.Put(b)
	if _, err := s.Dev.ReadAt(b.B, start); err != nil {
		return 0, err
	}
	n := copy(p, b.B[off-start:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt fails: see DeviceStorage.
func (DeviceStorage) WriteAt([]byte, int64) (int, error) { return 0, errReadOnlyHeader }

// Size returns the device's size.
func (s DeviceStorage) Size() (int64, error) { return s.Dev.Size(), nil }

// Sync does nothing: nothing is written.
func (DeviceStorage) Sync() error { return nil }
