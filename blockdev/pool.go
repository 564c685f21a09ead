package blockdev

import (
	"fmt"
	"math/bits"
	"sync"
	"unsafe"
)

const (
	minClassShift = 12 // smallest size class: 4 KiB
	maxClassShift = 24 // largest size class: 16 MiB
	numClasses    = maxClassShift - minClassShift + 1

	// MaxPooled is the largest request a Pool serves from its free lists;
	// larger buffers are allocated on Get and dropped on Put.
	MaxPooled = 1 << maxClassShift
)

// Pool hands out Align-aligned I/O buffers in power-of-two size classes
// from 4 KiB to 16 MiB. Get and Put do not allocate once the pool holds
// buffers of the sizes in use. A Pool is safe for concurrent use; callers
// own their Pool (there is no package-level one). Idle buffers may be
// released to the garbage collector, as with sync.Pool.
type Pool struct {
	classes [numClasses]sync.Pool
}

// Buf is a buffer from a Pool. B has the length asked for, starts at an
// address that is a multiple of Align and has as capacity its size class
// (for requests above MaxPooled: the length rounded up to Align).
// After Put, neither the Buf nor B may be used.
type Buf struct {
	B []byte

	full  []byte // whole aligned buffer: len == cap == class size
	class int8   // index into Pool.classes; -1 when not pooled
	free  bool   // in a pool; guards against double Put
}

// NewPool returns an empty Pool.
func NewPool() *Pool { return &Pool{} }

// Get returns a buffer with len(B) == n. The contents of B are undefined
// (not zeroed). n must not be negative.
func (p *Pool) Get(n int) *Buf {
	if n < 0 {
		panic(fmt.Sprintf("blockdev: Pool.Get(%d): negative size", n))
	}
	c := sizeClass(n)
	if c < 0 {
		size := (n + Align - 1) &^ (Align - 1)
		full := alignedSlice(size)
		return &Buf{B: full[:n], full: full, class: -1}
	}
	var b *Buf
	if v := p.classes[c].Get(); v != nil {
		b = v.(*Buf)
	} else {
		b = &Buf{full: alignedSlice(1 << (c + minClassShift)), class: int8(c)}
	}
	b.free = false
	b.B = b.full[:n]
	return b
}

// Put returns b to the pool. Putting nil or a Buf already put is a no-op;
// b may come from any Pool.
func (p *Pool) Put(b *Buf) {
	if b == nil || b.free {
		return
	}
	b.free = true
	b.B = nil
	if b.class < 0 {
		return
	}
	p.classes[b.class].Put(b)
}

// sizeClass returns the class index for n bytes, or -1 above MaxPooled.
func sizeClass(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	if n > MaxPooled {
		return -1
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// alignedSlice returns a zeroed slice of size bytes (size > 0) whose start
// is a multiple of Align and whose len and cap are size.
func alignedSlice(size int) []byte {
	// Go's allocator places blocks of these sizes on page boundaries in
	// practice; check rather than rely on it.
	b := make([]byte, size)
	if aligned(b) {
		return b
	}
	b = make([]byte, size+Align-1)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (Align - 1))
	return b[skip : skip+size : skip+size]
}
