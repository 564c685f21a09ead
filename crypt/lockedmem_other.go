//go:build !linux

package crypt

// lockedMem on systems other than Linux is ordinary heap memory that is
// zeroed when freed; hastord serves only on Linux.
type lockedMem struct{ b []byte }

func newLockedMem(n int) (*lockedMem, error) { return &lockedMem{b: make([]byte, n)}, nil }

func (m *lockedMem) free() { clear(m.b); m.b = nil }
