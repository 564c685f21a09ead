package ackcheck

import (
	"bytes"
	"testing"
)

func TestStampDecode(t *testing.T) {
	const bs = 4096
	a := make([]byte, bs)
	b := make([]byte, bs)
	Stamp(a, 7, 100)
	Stamp(b, 7, 101)
	if o := Decode(a, 7); o.Kind != KindStamp || o.Seq != 100 {
		t.Fatalf("stamp: %+v", o)
	}
	if bytes.Equal(a[HeaderLen:], b[HeaderLen:]) {
		t.Fatal("two writes of a block have the same payload")
	}
	if o := Decode(make([]byte, bs), 7); o.Kind != KindZero {
		t.Fatalf("zeros: %+v", o)
	}
	if o := Decode(a, 8); o.Kind != KindCorrupt {
		t.Fatalf("misdirected: %+v", o)
	}
	// A torn write: the first 512-byte sectors of one write, the rest of
	// another.
	for _, cut := range []int{512, 2048, 3584} {
		torn := append(append([]byte(nil), b[:cut]...), a[cut:]...)
		if o := Decode(torn, 7); o.Kind != KindCorrupt {
			t.Fatalf("torn at %d: %+v", cut, o)
		}
		half := append(append([]byte(nil), a[:cut]...), make([]byte, bs-cut)...)
		if o := Decode(half, 7); o.Kind != KindCorrupt {
			t.Fatalf("half-zero at %d: %+v", cut, o)
		}
	}
	for _, i := range []int{0, offBlock, offSeq, offSize, offCRC, HeaderLen, bs - 1} {
		c := append([]byte(nil), a...)
		c[i] ^= 0x10
		if o := Decode(c, 7); o.Kind != KindCorrupt {
			t.Fatalf("flipped byte %d: %+v", i, o)
		}
	}
	if o := Decode(a[:100], 7); o.Kind != KindCorrupt {
		t.Fatalf("odd size: %+v", o)
	}
}

func TestDecodeNoAlloc(t *testing.T) {
	p := make([]byte, 4096)
	Stamp(p, 3, 9)
	if n := testing.AllocsPerRun(100, func() { Decode(p, 3) }); n != 0 {
		t.Fatalf("Decode allocates %v times", n)
	}
}

func FuzzDecode(f *testing.F) {
	p := make([]byte, 128)
	Stamp(p, 1, 2)
	f.Add(p, uint64(1))
	f.Add(make([]byte, 64), uint64(0))
	f.Fuzz(func(t *testing.T, p []byte, b uint64) {
		o := Decode(p, Block(b))
		if o.Kind == KindStamp {
			// Only a genuine stamp may decode as one.
			q := make([]byte, len(p))
			Stamp(q, Block(b), o.Seq)
			if !bytes.Equal(p, q) {
				t.Fatalf("garbage decoded as stamp seq %d", o.Seq)
			}
		}
	})
}

func BenchmarkStamp(b *testing.B) {
	p := make([]byte, 4096)
	b.SetBytes(4096)
	for i := range b.N {
		Stamp(p, Block(i), Seq(i))
	}
}
