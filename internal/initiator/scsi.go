package initiator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// LBA is a logical block address on a LUN.
type LBA uint64

// Capacity is what READ CAPACITY(16) reports.
type Capacity struct {
	Blocks    uint64 // number of logical blocks (last LBA + 1)
	BlockSize int    // logical block length in bytes
}

// SCSI operation codes used by the helpers (SPC-4, SBC-3).
const (
	opTestUnitReady   = 0x00
	opSyncCache10     = 0x35
	opRead16          = 0x88
	opWrite16         = 0x8a
	opServiceAction16 = 0x9e
	saReadCapacity16  = 0x10
)

// Sense keys used by WaitReady.
const (
	SenseNotReady       = 0x2
	SenseUnitAttention  = 0x6
	SenseIllegalRequest = 0x5
)

// TestUnitReady runs TEST UNIT READY (SPC-4 §6.47).
func (s *Session) TestUnitReady(ctx context.Context, lun uint64) error {
	r, err := s.Do(ctx, lun, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0)
	if err != nil {
		return err
	}
	return r.Err()
}

// WaitReady runs TEST UNIT READY until it returns GOOD, retrying (at most
// 8 times) while the LUN reports a UNIT ATTENTION, which the first command
// after a login or a restart usually gets.
func (s *Session) WaitReady(ctx context.Context, lun uint64) error {
	var err error
	for range 8 {
		err = s.TestUnitReady(ctx, lun)
		var se *SCSIError
		if err == nil || !errors.As(err, &se) {
			return err
		}
		if k, _, _ := se.SenseKey(); k != SenseUnitAttention {
			return err
		}
	}
	return err
}

// ReadCapacity16 runs READ CAPACITY(16) (SBC-3 §5.16).
func (s *Session) ReadCapacity16(ctx context.Context, lun uint64) (Capacity, error) {
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = opServiceAction16, saReadCapacity16
	binary.BigEndian.PutUint32(cdb[10:14], 32)
	r, err := s.Do(ctx, lun, cdb, nil, 32)
	if err != nil {
		return Capacity{}, err
	}
	if err := r.Err(); err != nil {
		return Capacity{}, err
	}
	if len(r.Data) < 12 {
		return Capacity{}, fmt.Errorf("%w: READ CAPACITY(16) returned %d bytes", ErrProtocol, len(r.Data))
	}
	c := Capacity{Blocks: binary.BigEndian.Uint64(r.Data[0:8]) + 1, BlockSize: int(binary.BigEndian.Uint32(r.Data[8:12]))}
	if c.BlockSize <= 0 || c.BlockSize > 1<<20 {
		return Capacity{}, fmt.Errorf("%w: block length %d", ErrProtocol, c.BlockSize)
	}
	return c, nil
}

// Read16 reads blocks logical blocks of blockSize bytes at lba with
// READ(16) (SBC-3 §5.11).
func (s *Session) Read16(ctx context.Context, lun uint64, lba LBA, blocks uint32, blockSize int) ([]byte, error) {
	if blockSize <= 0 || uint64(blocks)*uint64(blockSize) > 1<<30 {
		return nil, fmt.Errorf("%w: read of %d blocks of %d bytes", ErrBadRequest, blocks, blockSize)
	}
	cdb := make([]byte, 16)
	cdb[0] = opRead16
	binary.BigEndian.PutUint64(cdb[2:10], uint64(lba))
	binary.BigEndian.PutUint32(cdb[10:14], blocks)
	r, err := s.Do(ctx, lun, cdb, nil, int(blocks)*blockSize)
	if err != nil {
		return nil, err
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if len(r.Data) != int(blocks)*blockSize {
		return nil, fmt.Errorf("%w: READ(16) returned %d of %d bytes", ErrProtocol, len(r.Data), int(blocks)*blockSize)
	}
	return r.Data, nil
}

// Write16 writes data (a whole number of blockSize blocks) at lba with
// WRITE(16) (SBC-3 §5.40); fua sets the FUA bit.
func (s *Session) Write16(ctx context.Context, lun uint64, lba LBA, data []byte, blockSize int, fua bool) error {
	if blockSize <= 0 || len(data) == 0 || len(data)%blockSize != 0 {
		return fmt.Errorf("%w: write of %d bytes in %d-byte blocks", ErrBadRequest, len(data), blockSize)
	}
	cdb := make([]byte, 16)
	cdb[0] = opWrite16
	if fua {
		cdb[1] = 0x08
	}
	binary.BigEndian.PutUint64(cdb[2:10], uint64(lba))
	binary.BigEndian.PutUint32(cdb[10:14], uint32(len(data)/blockSize))
	r, err := s.Do(ctx, lun, cdb, data, 0)
	if err != nil {
		return err
	}
	return r.Err()
}

// SynchronizeCache flushes the whole LUN with SYNCHRONIZE CACHE(10)
// (SBC-3 §5.22).
func (s *Session) SynchronizeCache(ctx context.Context, lun uint64) error {
	r, err := s.Do(ctx, lun, []byte{opSyncCache10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0)
	if err != nil {
		return err
	}
	return r.Err()
}
