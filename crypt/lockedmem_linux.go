package crypt

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockedMem is memory for key material outside the Go heap: mapped
// anonymously, locked so it is never written to swap (mlock), left out of
// core dumps (MADV_DONTDUMP) and zeroed before it is unmapped.
type lockedMem struct {
	b    []byte // the first n bytes of the mapping
	full []byte // the whole mapping, whole pages
}

func newLockedMem(n int) (*lockedMem, error) {
	page := os.Getpagesize()
	size := (n + page - 1) &^ (page - 1)
	full, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("key memory: mmap %d bytes: %w", size, err)
	}
	if err := unix.Mlock(full); err != nil {
		unix.Munmap(full)
		return nil, fmt.Errorf("key memory: mlock %d bytes: %w (raise the memlock limit: ulimit -l, or LimitMEMLOCK= in the systemd unit)", size, err)
	}
	// Best effort: kernels without MADV_DONTDUMP still lock the memory.
	_ = unix.Madvise(full, unix.MADV_DONTDUMP)
	return &lockedMem{b: full[:n], full: full}, nil
}

// free zeroes and unmaps the memory.
func (m *lockedMem) free() {
	clear(m.full)
	unix.Munlock(m.full)
	unix.Munmap(m.full)
	m.b, m.full = nil, nil
}
