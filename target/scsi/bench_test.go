package scsi

import (
	"context"
	"sync"
	"testing"

	"hastor/blockdev"
)

// nullDev is a Device that stores nothing, so benchmarks measure this
// package alone.
type nullDev struct{ size int64 }

func (d nullDev) ReadAt(p []byte, _ int64) (int, error)     { return len(p), nil }
func (d nullDev) WriteAt(p []byte, _ int64) (int, error)    { return len(p), nil }
func (d nullDev) WriteAtFUA(p []byte, _ int64) (int, error) { return len(p), nil }
func (d nullDev) Flush() error                              { return nil }
func (d nullDev) Size() int64                               { return d.size }
func (d nullDev) Close() error                              { return nil }

var _ blockdev.FUAWriter = nullDev{}

// hotPath decodes and executes one command the way the transport does.
func hotPath(lu *LU, n *Nexus, cdb []byte, buf []byte) Response {
	cmd := lu.Decode(cdb)
	return lu.Execute(context.Background(), n, &cmd, buf)
}

// READ, WRITE and TEST UNIT READY do not allocate (Decode included).
func TestHotPathZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for name, dev := range map[string]blockdev.Device{"null": nullDev{1 << 30}, "mem": blockdev.NewMem(1<<30, 512)} {
		for _, wce := range []bool{false, true} {
			lu := newTestLU(t, withDev(dev), func(c *LUConfig) { c.WriteCache = wce })
			n := newNexus(t, lu)
			buf := alignedBuf(4096)
			cases := map[string][]byte{
				"READ(10)":        cdbRW(opRead10, 8, 8, 0),
				"READ(16)":        cdbRW(opRead16, 8, 8, 0),
				"WRITE(10)":       cdbRW(opWrite10, 8, 8, 0),
				"WRITE(16) FUA":   cdbRW(opWrite16, 8, 8, 0x08),
				"TEST UNIT READY": cdb6(opTestUnitReady),
			}
			for cname, cdb := range cases {
				hotPath(lu, n, cdb, buf) // warm up (Mem allocates a block once)
				allocs := testing.AllocsPerRun(100, func() {
					if r := hotPath(lu, n, cdb, buf); r.Status != StatusGood {
						t.Fatalf("%s: status %#x", cname, r.Status)
					}
				})
				if allocs != 0 {
					t.Errorf("%s/wce=%v/%s: %v allocs per command", name, wce, cname, allocs)
				}
			}
		}
	}
}

func benchRW(b *testing.B, dev blockdev.Device, op byte, wce bool) {
	lu := newTestLU(b, withDev(dev), func(c *LUConfig) { c.WriteCache = wce })
	n := newNexus(b, lu)
	cdb := cdbRW(op, 8, 4096/512, 0)
	buf := alignedBuf(4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r := hotPath(lu, n, cdb, buf); r.Status != StatusGood {
			b.Fatalf("status %#x", r.Status)
		}
	}
}

// Decode+Execute of a 4 KiB READ(10)/WRITE(10), device cost excluded.
func BenchmarkRead10_4k(b *testing.B)  { benchRW(b, nullDev{1 << 30}, opRead10, true) }
func BenchmarkWrite10_4k(b *testing.B) { benchRW(b, nullDev{1 << 30}, opWrite10, true) }

// WCE=0: every write takes the FUA path.
func BenchmarkWrite10_4k_WCE0(b *testing.B) { benchRW(b, nullDev{1 << 30}, opWrite10, false) }

// Against blockdev.Mem (a mutex and a map per block).
func BenchmarkRead10_4k_Mem(b *testing.B)  { benchRW(b, blockdev.NewMem(1<<30, 512), opRead10, true) }
func BenchmarkWrite10_4k_Mem(b *testing.B) { benchRW(b, blockdev.NewMem(1<<30, 512), opWrite10, true) }

// Many goroutines on one LU, each with its own nexus: the path takes no
// LU-wide lock.
func BenchmarkRead10_4k_Parallel(b *testing.B) {
	lu := newTestLU(b, withDev(nullDev{1 << 30}))
	var mu sync.Mutex
	b.SetBytes(4096)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		n := newNexus(b, lu)
		mu.Unlock()
		cdb := cdbRW(opRead10, 8, 8, 0)
		buf := alignedBuf(4096)
		for pb.Next() {
			hotPath(lu, n, cdb, buf)
		}
	})
}

// Many goroutines writing the same stripe: every WRITE takes the stripe's
// lock shared (stripes.go), so this measures the cost of that shared lock
// under contention.
func BenchmarkWrite10_4k_Parallel(b *testing.B) {
	lu := newTestLU(b, withDev(nullDev{1 << 30}), withWriteCache())
	var mu sync.Mutex
	b.SetBytes(4096)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		n := newNexus(b, lu)
		mu.Unlock()
		cdb := cdbRW(opWrite10, 8, 8, 0)
		buf := alignedBuf(4096)
		for pb.Next() {
			hotPath(lu, n, cdb, buf)
		}
	})
}

// ORWRITE of 4 KiB: exclusive stripe lock, read, OR, write.
func BenchmarkORWrite16_4k(b *testing.B) {
	lu := newTestLU(b, withDev(nullDev{1 << 30}), withWriteCache())
	n := newNexus(b, lu)
	cdb := cdbRW(opORWrite16, 8, 8, 0)
	buf := alignedBuf(4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		if r := hotPath(lu, n, cdb, buf); r.Status != StatusGood {
			b.Fatalf("status %#x", r.Status)
		}
	}
}

func BenchmarkDecodeRead16(b *testing.B) {
	lu := newTestLU(b, withDev(nullDev{1 << 30}))
	cdb := cdbRW(opRead16, 8, 8, 0)
	b.ReportAllocs()
	for b.Loop() {
		c := lu.Decode(cdb)
		if !c.Valid() {
			b.Fatal("invalid")
		}
	}
}
