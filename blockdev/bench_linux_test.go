//go:build linux

package blockdev

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

const benchFileSize = 256 << 20

// benchFilePath returns the path of a fully written (allocated) file of
// benchFileSize, closed.
func benchFilePath(b *testing.B) string {
	b.Helper()
	path := filepath.Join(directDir(b), "bench")
	f, err := Open(path, Options{Size: benchFileSize, Create: true, BlockSize: 4096})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPool()
	buf := p.Get(4 << 20)
	defer p.Put(buf)
	fillPattern(buf.B, 1)
	for off := int64(0); off < benchFileSize; off += int64(len(buf.B)) {
		if _, err := f.WriteAt(buf.B, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

type benchOp func(f *File, p []byte, off int64) (int, error)

func readOp(f *File, p []byte, off int64) (int, error)     { return f.ReadAt(p, off) }
func writeOp(f *File, p []byte, off int64) (int, error)    { return f.WriteAt(p, off) }
func writeFUAOp(f *File, p []byte, off int64) (int, error) { return f.WriteAtFUA(p, off) }

// BenchmarkFileRand4K does 4 KiB transfers at random aligned offsets of
// a filled 256 MiB file from qd goroutines at once (the number of SCSI
// commands in flight), with the synchronous and the AIO path. Compare
// with fio --ioengine=libaio --direct=1 --bs=4k --iodepth=qd.
func BenchmarkFileRand4K(b *testing.B) {
	path := benchFilePath(b)
	for _, op := range []struct {
		name string
		fn   benchOp
	}{{"read", readOp}, {"write", writeOp}, {"writefua", writeFUAOp}} {
		for _, qd := range []int{1, 8, 32} {
			for _, mode := range ioModes {
				name := fmt.Sprintf("op=%s/qd=%d/io=%v", op.name, qd, mode)
				b.Run(name, func(b *testing.B) {
					f := openMode(b, path, Options{BlockSize: 4096}, mode)
					benchRandom4K(b, f, op.fn, qd)
				})
			}
		}
	}
}

// benchRandom4K runs b.N transfers spread over qd goroutines and reports
// IOPS and cpu-ns/op (user plus system CPU time of the process per
// transfer, from getrusage) besides the usual ns/op (wall time per
// transfer, all goroutines together) and allocs/op.
func benchRandom4K(b *testing.B, f *File, op benchOp, qd int) {
	pool := NewPool()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		ready sync.WaitGroup
		start = make(chan struct{})
		n     = int64(b.N)
	)
	for w := range qd {
		ready.Add(1)
		wg.Go(func() {
			buf := pool.Get(4096)
			r := rand.New(rand.NewPCG(uint64(w), 1))
			ready.Done()
			<-start
			for next.Add(1) <= n {
				if _, err := op(f, buf.B, r.Int64N(benchFileSize/4096)*4096); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	ready.Wait()
	b.SetBytes(4096)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	close(start)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "IOPS")
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the user plus system CPU time of the process in ns.
func cpuTime(b *testing.B) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkFileFlush(b *testing.B) {
	f := mustOpen(b, benchFilePath(b), Options{BlockSize: 4096})
	pool := NewPool()
	buf := pool.Get(4096)
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		if _, err := f.WriteAt(buf.B, off); err != nil {
			b.Fatal(err)
		}
		if err := f.Flush(); err != nil {
			b.Fatal(err)
		}
		off = (off + 4096) % benchFileSize
	}
}
