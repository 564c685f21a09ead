package scsi

import (
	"sync"
	"unsafe"
)

// Atomic read-modify-write commands and the stripe lock
//
// Some commands read logical blocks, compute new contents from them and
// write them back, and SBC-3 requires that to happen as an uninterrupted
// sequence ("ORWRITE (16)", "COMPARE AND WRITE", which VMware's ATS
// locking depends on): no other command may modify those blocks between
// the read and the write. Ordinary commands stay concurrent and unordered
// (SIMPLE task attribute), so only the read-modify-write commands pay for
// the exclusion:
//
//   - The LBA space is cut into stripes of stripeBytes (128 KiB). Stripe s
//     maps onto lock s mod nStripes, a sync.RWMutex padded to its own cache
//     line, so the lock table is a fixed 16 KiB per LU whatever its size.
//   - Every command that modifies the medium (WRITE, WRITE AND VERIFY,
//     WRITE SAME and UNMAP) holds the locks of the stripes it touches
//     shared while it writes: an RLock/RUnlock pair per stripe (one or two
//     for a typical I/O), no allocation, and no contention among writers.
//   - A read-modify-write command holds the same locks exclusively from
//     before its read until its write has returned.
//   - READ and VERIFY take no lock. A READ that overlaps a read-modify-write
//     command sees each block before or after it, as it would with a
//     concurrent WRITE (the blockdev contract already leaves overlapping
//     reads and writes unordered); the uninterrupted-sequence guarantee is
//     that no other modification lands between the read and the write.
//   - Locks are always taken in ascending lock index. A range that wraps
//     around the table takes [0, hi] and then [lo, nStripes), and a range
//     spanning nStripes stripes or more takes them all. So every waiter
//     holds only locks with lower indices than the one it waits for, and no
//     cycle (deadlock) can form, even with RWMutex's writer preference.
//   - Two unrelated ranges that share a lock (same stripe index modulo
//     nStripes) only cost a false wait of a read-modify-write command: the
//     hash never affects correctness.
//
// A waiting lock cannot be cancelled through the command's context; the
// holders are bounded I/O, so the wait is too.
const (
	stripeBytesShift = 17 // 128 KiB stripes
	nStripes         = 256
)

// paddedRWMutex keeps each stripe lock on its own cache line, so that writers
// of different stripes do not contend on one line.
type paddedRWMutex struct {
	sync.RWMutex
	_ [64 - unsafe.Sizeof(sync.RWMutex{})%64]byte
}

// stripeLocks is the lock table of one LU. Its zero value is ready for use
// once shift is set.
type stripeLocks struct {
	shift uint // log2 of the stripe length in logical blocks
	locks [nStripes]paddedRWMutex
}

// stripeSpan names the locks a range holds: [lo1, hi1) and [lo2, hi2),
// ascending and disjoint. It is a small value so holding one costs nothing.
type stripeSpan struct {
	lo1, hi1, lo2, hi2 uint16
}

// init sets the stripe length for logical blocks of 1<<bshift bytes.
func (s *stripeLocks) init(bshift uint) {
	s.shift = stripeBytesShift - bshift
}

// span returns the locks covering blocks [lba, lba+n). n may be 0 (no
// locks). The range must lie within the LU (Decode checked it).
func (s *stripeLocks) span(lba LBA, n Blocks) stripeSpan {
	if n == 0 {
		return stripeSpan{}
	}
	first := uint64(lba) >> s.shift
	last := (uint64(lba) + uint64(n) - 1) >> s.shift
	if last-first+1 >= nStripes {
		return stripeSpan{lo1: 0, hi1: nStripes}
	}
	lo, hi := uint16(first%nStripes), uint16(last%nStripes)
	if lo <= hi {
		return stripeSpan{lo1: lo, hi1: hi + 1}
	}
	return stripeSpan{lo1: 0, hi1: hi + 1, lo2: lo, hi2: nStripes}
}

// rlock takes the locks of [lba, lba+n) shared, for a command that
// modifies those blocks, and returns what to pass to runlock.
func (s *stripeLocks) rlock(lba LBA, n Blocks) stripeSpan {
	sp := s.span(lba, n)
	for i := sp.lo1; i < sp.hi1; i++ {
		s.locks[i].RLock()
	}
	for i := sp.lo2; i < sp.hi2; i++ {
		s.locks[i].RLock()
	}
	return sp
}

func (s *stripeLocks) runlock(sp stripeSpan) {
	for i := sp.lo1; i < sp.hi1; i++ {
		s.locks[i].RUnlock()
	}
	for i := sp.lo2; i < sp.hi2; i++ {
		s.locks[i].RUnlock()
	}
}

// lock takes the locks of [lba, lba+n) exclusively, for a read-modify-write
// command, and returns what to pass to unlock.
func (s *stripeLocks) lock(lba LBA, n Blocks) stripeSpan {
	sp := s.span(lba, n)
	for i := sp.lo1; i < sp.hi1; i++ {
		s.locks[i].Lock()
	}
	for i := sp.lo2; i < sp.hi2; i++ {
		s.locks[i].Lock()
	}
	return sp
}

func (s *stripeLocks) unlock(sp stripeSpan) {
	for i := sp.lo1; i < sp.hi1; i++ {
		s.locks[i].Unlock()
	}
	for i := sp.lo2; i < sp.hi2; i++ {
		s.locks[i].Unlock()
	}
}
