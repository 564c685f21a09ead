package replication

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hastor/blockdev"
)

// filePair runs two Nodes on O_DIRECT files (or, with mem, in-memory
// devices) over loopback TCP, with conns data connections on one path;
// the data areas are filled with non-zero bytes (so no resync chunk is
// sent as a discard, and no write allocates).
func filePair(b *testing.B, size int64, conns int, mem bool) [2]*Node {
	dir := b.TempDir()
	pool := blockdev.NewPool()
	var data, metas [2]blockdev.Device
	for i := range 2 {
		var f, mf blockdev.Device = blockdev.NewMem(size, 512), blockdev.NewMem(8<<20, 512)
		if !mem {
			var err error
			if f, err = blockdev.Open(filepath.Join(dir, string(rune('a'+i))), blockdev.Options{Size: size, Create: true}); err != nil {
				b.Fatal(err)
			}
			if mf, err = blockdev.Open(filepath.Join(dir, string(rune('a'+i))+".meta"), blockdev.Options{Size: 8 << 20, Create: true}); err != nil {
				b.Fatal(err)
			}
		}
		b.Cleanup(func() { f.Close(); mf.Close() })
		buf := pool.Get(1 << 20)
		for off := int64(0); off < size; off += 1 << 20 {
			for j := 0; j < len(buf.B); j += 8 {
				binary.LittleEndian.PutUint64(buf.B[j:], uint64(off)+uint64(j)|1+uint64(i)<<40)
			}
			if _, err := f.WriteAt(buf.B, off); err != nil {
				b.Fatal(err)
			}
		}
		pool.Put(buf)
		data[i], metas[i] = f, mf
	}
	return runPair(b, ProtocolC, data, metas, conns)
}

// BenchmarkFullSync measures an idle full sync of 1 GiB between two
// nodes on O_DIRECT files over loopback TCP, from the forced promotion to
// both disks UpToDate.
func BenchmarkFullSync(b *testing.B) {
	const size = 1 << 30
	b.SetBytes(size)
	for range b.N {
		b.StopTimer()
		nodes := filePair(b, size, 2, false)
		for nodes[0].Status().Conn != Established {
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
		if err := nodes[0].Promote(context.Background(), true); err != nil {
			b.Fatal(err)
		}
		for !synced(nodes[0].Status()) {
			time.Sleep(200 * time.Microsecond)
		}
	}
}

// BenchmarkWrite measures replicated writes (protocol C) through the
// primary's Device: 32 writers of random 4 KiB blocks, or of sequential
// 1 MiB pieces, over loopback TCP, on O_DIRECT files or (dev=mem, which
// leaves the replication path's own cost) in-memory devices.
func BenchmarkWrite(b *testing.B) {
	for _, mem := range []bool{false, true} {
		for _, bs := range []int{4 << 10, 1 << 20} {
			dev := "file"
			if mem {
				dev = "mem"
			}
			b.Run(fmt.Sprintf("dev=%s/bs=%dk", dev, bs>>10), func(b *testing.B) { benchWrite(b, bs, mem) })
		}
	}
}

func benchWrite(b *testing.B, bs int, mem bool) {
	const size = 256 << 20
	nodes := filePair(b, size, 2, mem)
	if err := nodes[0].Promote(context.Background(), true); err != nil {
		b.Fatal(err)
	}
	for !synced(nodes[0].Status()) {
		time.Sleep(time.Millisecond)
	}
	dev := nodes[0].Device()
	pool := blockdev.NewPool()
	b.SetBytes(int64(bs))
	cpu0 := cpuTime(b)
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := pool.Get(bs)
			defer pool.Put(buf)
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				off := i * int64(bs) % size
				if bs < 1<<20 {
					off = rng.Int64N(size/int64(bs)) * int64(bs)
				}
				if _, err := dev.WriteAt(buf.B, off); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime returns the process's user and system CPU time so far: both
// nodes run in it, so this is what a replicated write costs in all.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
