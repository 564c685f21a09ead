package crypt

import (
	"errors"
	"fmt"
	"sync"

	"hastor/crypt/xts"
)

// Key is a volume key ready for the data path: the AES-XTS key schedules
// derived from it, kept in memory that is locked against swapping and
// excluded from core dumps (lockedMem). The raw key itself is not kept.
// Destroy zeroes and releases it.
type Key struct {
	bits int

	mu     sync.Mutex // guards destroy against concurrent Destroy calls
	mem    *lockedMem
	cipher *xts.Cipher
}

// ErrKeySize: a volume key of a length AES-XTS does not use.
var ErrKeySize = errors.New("volume key must be 256 or 512 bits (AES-128-XTS or AES-256-XTS)")

// NewKey returns a Key for the aes-xts-plain64 volume key raw (32 or 64
// bytes). It does not retain raw; the caller zeroes it.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != 32 && len(raw) != 64 {
		return nil, fmt.Errorf("%w: got %d bits", ErrKeySize, len(raw)*8)
	}
	mem, err := newLockedMem(xts.StateSize)
	if err != nil {
		return nil, err
	}
	c, err := xts.NewInState(mem.b, raw)
	if err != nil {
		mem.free()
		return nil, fmt.Errorf("volume key: %w", err)
	}
	return &Key{bits: len(raw) * 8, mem: mem, cipher: c}, nil
}

// Bits returns the key length in bits: 256 or 512.
func (k *Key) Bits() int { return k.bits }

// Destroy zeroes the key schedules and releases their memory. The Key must
// not be used afterwards; Destroy is idempotent.
func (k *Key) Destroy() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mem == nil {
		return
	}
	k.cipher.Wipe()
	k.mem.free()
	k.mem, k.cipher = nil, nil
}
