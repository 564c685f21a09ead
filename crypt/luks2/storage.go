package luks2

import (
	"fmt"
	"io"
	"os"
)

// Storage is the device holding the LUKS2 header: header copies, keyslots
// area and (after the data offset) the encrypted data. Size returns the
// device size in bytes. Sync must make previous WriteAt calls durable; the
// package relies on it to order the two header copies.
type Storage interface {
	io.ReaderAt
	io.WriterAt
	Size() (int64, error)
	Sync() error
}

// File adapts an *os.File (regular file or block device) to Storage.
type File struct {
	*os.File
}

var _ Storage = File{}

// Size returns the file size; for block devices (where Stat reports 0) it
// seeks to the end.
func (f File) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("luks2: stat %s: %w", f.Name(), err)
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("luks2: size of %s: %w", f.Name(), err)
	}
	return n, nil
}
