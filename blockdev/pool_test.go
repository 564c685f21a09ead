package blockdev

import (
	"strconv"
	"sync"
	"testing"
)

func TestPoolClasses(t *testing.T) {
	p := NewPool()
	for _, tc := range []struct{ n, cap int }{
		{0, 4096}, {1, 4096}, {512, 4096}, {4096, 4096}, {4097, 8192},
		{65536, 65536}, {65537, 131072}, {1 << 20, 1 << 20},
		{MaxPooled, MaxPooled}, {MaxPooled + 1, MaxPooled + 4096},
		{3 * MaxPooled, 3 * MaxPooled},
	} {
		b := p.Get(tc.n)
		if len(b.B) != tc.n || cap(b.B) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want %d %d", tc.n, len(b.B), cap(b.B), tc.n, tc.cap)
		}
		if !aligned(b.B) {
			t.Errorf("Get(%d): buffer at %p not %d-aligned", tc.n, &b.B[:1][0], Align)
		}
		p.Put(b)
		if b.B != nil {
			t.Errorf("Put left B set")
		}
		p.Put(b) // double Put is a no-op
	}
	p.Put(nil)
}

func TestPoolReuse(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	p := NewPool()
	b := p.Get(8192)
	p.Put(b)
	if c := p.Get(5000); c != b || len(c.B) != 5000 {
		t.Errorf("Get after Put did not reuse the buffer")
	}
	other := p.Get(1 << 20)
	p.Put(other)
	if c := p.Get(4096); c == other {
		t.Errorf("Get(4096) returned a 1 MiB-class buffer")
	}
}

// TestPoolNoAllocs checks the steady state of the data path: Get and Put
// of pooled sizes do not allocate.
func TestPoolNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	p := NewPool()
	sizes := []int{512, 4096, 65536, 1 << 20, MaxPooled}
	for _, n := range sizes {
		p.Put(p.Get(n))
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, n := range sizes {
			p.Put(p.Get(n))
		}
	})
	if allocs != 0 {
		t.Errorf("Get/Put allocate %v times per run, want 0", allocs)
	}
}

func TestPoolConcurrent(t *testing.T) {
	p := NewPool()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				n := 512 << ((g + i) % 10)
				b := p.Get(n)
				if len(b.B) != n || !aligned(b.B) {
					t.Errorf("Get(%d): len %d aligned %v", n, len(b.B), aligned(b.B))
					return
				}
				b.B[0], b.B[n-1] = byte(g), byte(i) // the race detector flags shared buffers
				p.Put(b)
			}
		})
	}
	wg.Wait()
}

func BenchmarkPoolGetPut(b *testing.B) {
	for _, n := range []int{4096, 65536, 1 << 20} {
		b.Run(sizeName(n), func(b *testing.B) {
			p := NewPool()
			p.Put(p.Get(n))
			b.ReportAllocs()
			for b.Loop() {
				p.Put(p.Get(n))
			}
		})
	}
}

func BenchmarkPoolGetPutParallel(b *testing.B) {
	p := NewPool()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Put(p.Get(65536))
		}
	})
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 4096} {
		p := make([]byte, n)
		if !IsZero(p) {
			t.Fatalf("%d zero bytes: not zero", n)
		}
		for i := range n {
			p[i] = 1
			if IsZero(p) {
				t.Fatalf("%d bytes with byte %d set: zero", n, i)
			}
			p[i] = 0
		}
	}
}
