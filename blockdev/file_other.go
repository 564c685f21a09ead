//go:build !linux

package blockdev

import (
	"errors"
	"fmt"
)

// File is a Device backed by a regular file or block device. It is only
// implemented on Linux; elsewhere Open fails with errors.ErrUnsupported.
type File struct{}

var (
	_ Device    = (*File)(nil)
	_ FUAWriter = (*File)(nil)
	_ Discarder = (*File)(nil)
)

// Open is only implemented on Linux.
func Open(path string, opts Options) (*File, error) {
	return nil, fmt.Errorf("blockdev: open %s: O_DIRECT block devices need Linux: %w", path, errors.ErrUnsupported)
}

func (*File) Path() string                                { return "" }
func (*File) BlockSize() int                              { return 0 }
func (*File) ReadOnly() bool                              { return true }
func (*File) IsBlockDevice() bool                         { return false }
func (*File) AsyncIO() bool                               { return false }
func (*File) Size() int64                                 { return 0 }
func (*File) ReadAt(p []byte, off int64) (int, error)     { return 0, errors.ErrUnsupported }
func (*File) WriteAt(p []byte, off int64) (int, error)    { return 0, errors.ErrUnsupported }
func (*File) WriteAtFUA(p []byte, off int64) (int, error) { return 0, errors.ErrUnsupported }
func (*File) Flush() error                                { return errors.ErrUnsupported }
func (*File) Discard(off, n int64) error                  { return errors.ErrUnsupported }
func (*File) Close() error                                { return errors.ErrUnsupported }
