//go:build linux

package blockdev

import (
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
)

const benchFileSize = 256 << 20

// benchFile returns a fully written (allocated) file of benchFileSize.
func benchFile(b *testing.B) *File {
	b.Helper()
	f := mustOpen(b, filepath.Join(directDir(b), "bench"), Options{Size: benchFileSize, Create: true, BlockSize: 4096})
	p := NewPool()
	buf := p.Get(4 << 20)
	defer p.Put(buf)
	fillPattern(buf.B, 1)
	for off := int64(0); off < benchFileSize; off += int64(len(buf.B)) {
		if _, err := f.WriteAt(buf.B, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Flush(); err != nil {
		b.Fatal(err)
	}
	return f
}

type benchOp func(f *File, p []byte, off int64) (int, error)

func benchRandom4K(b *testing.B, op benchOp, parallel bool) {
	f := benchFile(b)
	pool := NewPool()
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		buf := pool.Get(4096)
		r := rand.New(rand.NewPCG(1, 1))
		for b.Loop() {
			if _, err := op(f, buf.B, r.Int64N(benchFileSize/4096)*4096); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	var seed atomic.Uint64
	b.SetParallelism(8) // many in-flight commands per LUN
	b.RunParallel(func(pb *testing.PB) {
		buf := pool.Get(4096)
		r := rand.New(rand.NewPCG(seed.Add(1), 1))
		for pb.Next() {
			if _, err := op(f, buf.B, r.Int64N(benchFileSize/4096)*4096); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func readOp(f *File, p []byte, off int64) (int, error)     { return f.ReadAt(p, off) }
func writeOp(f *File, p []byte, off int64) (int, error)    { return f.WriteAt(p, off) }
func writeFUAOp(f *File, p []byte, off int64) (int, error) { return f.WriteAtFUA(p, off) }

func BenchmarkFileRandRead4K(b *testing.B)          { benchRandom4K(b, readOp, false) }
func BenchmarkFileRandWrite4K(b *testing.B)         { benchRandom4K(b, writeOp, false) }
func BenchmarkFileRandWriteFUA4K(b *testing.B)      { benchRandom4K(b, writeFUAOp, false) }
func BenchmarkFileRandRead4KParallel(b *testing.B)  { benchRandom4K(b, readOp, true) }
func BenchmarkFileRandWrite4KParallel(b *testing.B) { benchRandom4K(b, writeOp, true) }

func BenchmarkFileFlush(b *testing.B) {
	f := benchFile(b)
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
