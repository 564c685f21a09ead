package crypt

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"golang.org/x/crypto/xts"

	"hastor/blockdev"
)

const testOffset = 1 << 20

func testKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 64)
	rand.Read(k)
	return k
}

func newTestDevice(t testing.TB, sector int, raw []byte) (*Device, *blockdev.Mem) {
	t.Helper()
	mem := blockdev.NewMem(8<<20, 512)
	d, err := NewDevice(mem, Layout{Offset: testOffset, SectorSize: sector, IVTweak: 3})
	if err != nil {
		t.Fatal(err)
	}
	if raw != nil {
		k, err := NewKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Unlock(k); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { d.Close() })
	return d, mem
}

func alignedBuf(n int) []byte { return blockdev.NewPool().Get(n).B }

// The bytes on the inner device are aes-xts-plain64 as dm-crypt writes for
// LUKS2: each sector's IV is its data-area offset in 512-byte units plus
// iv_tweak (checked with golang.org/x/crypto/xts as the reference).
func TestDeviceMatchesDmCryptLayout(t *testing.T) {
	for _, sector := range []int{512, 4096} {
		raw := testKey(t)
		d, mem := newTestDevice(t, sector, raw)
		if d.Size() != 8<<20-testOffset || d.BlockSize() != sector {
			t.Fatalf("Size %d BlockSize %d", d.Size(), d.BlockSize())
		}
		plain := make([]byte, 64<<10)
		rand.Read(plain)
		buf := alignedBuf(len(plain))
		copy(buf, plain)
		const off = 40960
		if _, err := d.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
		onDisk := alignedBuf(len(plain))
		if _, err := mem.ReadAt(onDisk, testOffset+off); err != nil {
			t.Fatal(err)
		}
		ref, _ := xts.NewCipher(aes.NewCipher, raw)
		want := make([]byte, len(plain))
		for i := 0; i < len(plain); i += sector {
			ref.Encrypt(want[i:i+sector], plain[i:i+sector], uint64(off+i)/512+3)
		}
		if !bytes.Equal(onDisk, want) {
			t.Fatalf("sector %d: ciphertext on the inner device differs from aes-xts-plain64", sector)
		}
		got := alignedBuf(len(plain))
		if _, err := d.ReadAt(got, off); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("sector %d: read back: %v", sector, err)
		}
		fua := alignedBuf(sector)
		copy(fua, plain[:sector])
		if _, err := d.WriteAtFUA(fua, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadAt(got[:sector], 0); err != nil || !bytes.Equal(got[:sector], plain[:sector]) {
			t.Fatalf("FUA write read back: %v", err)
		}
	}
}

func TestDeviceLocked(t *testing.T) {
	d, mem := newTestDevice(t, 4096, nil)
	if !errors.Is(d.Ready(), ErrLocked) {
		t.Fatalf("Ready = %v", d.Ready())
	}
	buf := alignedBuf(4096)
	if _, err := d.ReadAt(buf, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("ReadAt = %v", err)
	}
	before := alignedBuf(4096)
	mem.ReadAt(before, testOffset)
	if _, err := d.WriteAt(buf, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("WriteAt = %v", err)
	}
	after := alignedBuf(4096)
	mem.ReadAt(after, testOffset)
	if !bytes.Equal(before, after) {
		t.Fatal("a locked device wrote")
	}
	k, _ := NewKey(testKey(t))
	if err := d.Unlock(k); err != nil {
		t.Fatal(err)
	}
	k2, _ := NewKey(testKey(t))
	defer k2.Destroy()
	if err := d.Unlock(k2); !errors.Is(err, ErrAlreadyUnlocked) {
		t.Fatalf("second Unlock = %v", err)
	}
	if d.Ready() != nil {
		t.Fatal("not ready after Unlock")
	}
	d.Close()
	if _, err := d.ReadAt(buf, 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("ReadAt after Close = %v", err)
	}
}

// The data area's bounds protect the header before it.
func TestDeviceBounds(t *testing.T) {
	d, _ := newTestDevice(t, 4096, testKey(t))
	buf := alignedBuf(8192)
	for _, c := range []struct {
		off  int64
		n    int
		want error
	}{
		{-4096, 4096, blockdev.ErrOutOfRange},
		{d.Size() - 4096, 8192, blockdev.ErrOutOfRange},
		{512, 4096, blockdev.ErrAlignment},
		{0, 512, blockdev.ErrAlignment},
	} {
		if _, err := d.WriteAt(buf[:c.n], c.off); !errors.Is(err, c.want) {
			t.Errorf("WriteAt(%d bytes at %d) = %v, want %v", c.n, c.off, err, c.want)
		}
	}
	for _, lay := range []Layout{
		{Offset: 100, SectorSize: 512},
		{Offset: 0, SectorSize: 1024},
		{Offset: 9 << 20, SectorSize: 512},
		{Offset: 4096, Size: 1000, SectorSize: 512},
	} {
		if _, err := NewDevice(blockdev.NewMem(8<<20, 512), lay); err == nil {
			t.Errorf("NewDevice accepted %+v", lay)
		}
	}
}

// Concurrent writers and readers on disjoint blocks, with the race
// detector: every block reads back as written.
func TestDeviceConcurrent(t *testing.T) {
	d, _ := newTestDevice(t, 4096, testKey(t))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf, got := alignedBuf(4096), alignedBuf(4096)
			for i := 0; i < 50; i++ {
				off := int64(g*50+i) * 4096
				binary.LittleEndian.PutUint64(buf, uint64(off))
				want := bytes.Clone(buf)
				if _, err := d.WriteAt(buf, off); err != nil {
					t.Error(err)
					return
				}
				if _, err := d.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
					t.Errorf("block at %d: %v", off, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestKeySizes(t *testing.T) {
	for _, n := range []int{0, 16, 48, 128} {
		if _, err := NewKey(make([]byte, n)); !errors.Is(err, ErrKeySize) {
			t.Errorf("NewKey(%d bytes) = %v", n, err)
		}
	}
	k, err := NewKey(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if k.Bits() != 512 {
		t.Fatalf("Bits = %d", k.Bits())
	}
	k.Destroy()
	k.Destroy()
}

func BenchmarkDevice(b *testing.B) {
	for _, sector := range []int{512, 4096} {
		b.Run(map[int]string{512: "sector512", 4096: "sector4096"}[sector], func(b *testing.B) {
			d, _ := newTestDevice(b, sector, testKey(b))
			buf := alignedBuf(1 << 20)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.WriteAt(buf, 0); err != nil {
					b.Fatal(err)
				}
				if _, err := d.ReadAt(buf, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
