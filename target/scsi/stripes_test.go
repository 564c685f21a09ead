package scsi

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// span covers exactly the locks {s mod nStripes : s in the range's stripes},
// in ascending order, as at most two disjoint intervals.
func TestStripeSpan(t *testing.T) {
	var s stripeLocks
	s.init(9) // 256 blocks per stripe
	per := uint64(1) << s.shift
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(lba uint64, n uint32) {
		t.Helper()
		sp := s.span(LBA(lba), Blocks(n))
		got := map[uint16]bool{}
		prev := -1
		for _, iv := range [][2]uint16{{sp.lo1, sp.hi1}, {sp.lo2, sp.hi2}} {
			if iv[0] > iv[1] || iv[1] > nStripes {
				t.Fatalf("lba %d n %d: bad interval %v", lba, n, iv)
			}
			for i := iv[0]; i < iv[1]; i++ {
				if int(i) <= prev {
					t.Fatalf("lba %d n %d: not ascending: %+v", lba, n, sp)
				}
				prev = int(i)
				got[i] = true
			}
		}
		want := map[uint16]bool{}
		if n > 0 {
			for st := lba / per; st <= (lba+uint64(n)-1)/per && len(want) < nStripes; st++ {
				want[uint16(st%nStripes)] = true
			}
		}
		if len(got) != len(want) {
			t.Fatalf("lba %d n %d: %d locks, want %d (%+v)", lba, n, len(got), len(want), sp)
		}
		for i := range want {
			if !got[i] {
				t.Fatalf("lba %d n %d: lock %d missing (%+v)", lba, n, i, sp)
			}
		}
	}
	check(0, 0)
	check(0, 1)
	check(per-1, 2)                // two stripes
	check(per*(nStripes-1), 2*256) // wraps: last and first lock
	check(0, uint32(per*nStripes)) // exactly all
	check(5, uint32(per*nStripes)) // more than all
	check(1<<40, 1)
	for i := 0; i < 20000; i++ {
		lba := rng.Uint64N(1 << 44)
		var n uint32
		switch rng.IntN(3) {
		case 0:
			n = uint32(rng.IntN(16))
		case 1:
			n = uint32(rng.IntN(4096))
		default:
			n = uint32(rng.Uint64N(per * (nStripes + 2)))
		}
		check(lba, n)
	}
}

// Random shared and exclusive holders of random (wrapping, huge, tiny)
// ranges never deadlock, and an exclusive holder never overlaps another
// holder of any of its locks.
func TestStripeLocksExclusion(t *testing.T) {
	var s stripeLocks
	s.init(12)
	per := uint64(1) << s.shift
	var shared, excl [nStripes]atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for i := 0; i < 400; i++ {
				lba := LBA(rng.Uint64N(per * nStripes * 4))
				n := Blocks(1 + rng.Uint64N(per*uint64(1+rng.IntN(nStripes+4))/4))
				each := func(sp stripeSpan, f func(i uint16)) {
					for i := sp.lo1; i < sp.hi1; i++ {
						f(i)
					}
					for i := sp.lo2; i < sp.hi2; i++ {
						f(i)
					}
				}
				if rng.IntN(4) == 0 {
					sp := s.lock(lba, n)
					each(sp, func(i uint16) {
						if excl[i].Add(1) != 1 || shared[i].Load() != 0 {
							t.Errorf("lock %d: exclusive holder overlaps another holder", i)
						}
					})
					each(sp, func(i uint16) { excl[i].Add(-1) })
					s.unlock(sp)
				} else {
					sp := s.rlock(lba, n)
					each(sp, func(i uint16) {
						shared[i].Add(1)
						if excl[i].Load() != 0 {
							t.Errorf("lock %d: shared holder overlaps an exclusive one", i)
						}
					})
					each(sp, func(i uint16) { shared[i].Add(-1) })
					s.runlock(sp)
				}
			}
		}()
	}
	wg.Wait()
}
