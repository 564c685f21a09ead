package pdu

import (
	"bytes"
	"testing"
)

// RFC 7143 Appendix B.4 gives CRC32C examples; the digest goes on the wire
// least significant byte first.
func TestCRC32CVectors(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		wire []byte
	}{
		{"32 zeros", make([]byte, 32), []byte{0xaa, 0x36, 0x91, 0x8a}},
		{"32 ones", bytes.Repeat([]byte{0xff}, 32), []byte{0x43, 0xab, 0xa8, 0x62}},
		{"incrementing", func() []byte {
			b := make([]byte, 32)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}(), []byte{0x4e, 0x79, 0xdd, 0x46}},
	}
	for _, c := range cases {
		var got [4]byte
		PutDigest(got[:], CRC32C(0, c.in))
		if !bytes.Equal(got[:], c.wire) {
			t.Errorf("%s: digest % x, want % x", c.name, got, c.wire)
		}
	}
}

func TestHeaderFields(t *testing.T) {
	var h Header
	h.SetOpcode(OpSCSICmd, true)
	h.SetDataSegmentLength(0x123456)
	h.SetITT(0xdeadbeef)
	h.SetLUN(0x0001000000000000)
	if h.Opcode() != OpSCSICmd || !h.Immediate() {
		t.Fatalf("opcode %v immediate %v", h.Opcode(), h.Immediate())
	}
	if h.DataSegmentLength() != 0x123456 {
		t.Fatalf("dsl %#x", h.DataSegmentLength())
	}
	if h.ITT() != 0xdeadbeef || h.LUN() != 0x0001000000000000 {
		t.Fatalf("itt %#x lun %#x", h.ITT(), h.LUN())
	}
	BuildDataIn(&h, 5, 7, FlagFinal|FlagStatus|FlagUnderflow, 2, 3, 4096, 512, 100)
	if h.Opcode() != OpDataIn || h[3] != 2 || h.DataSN() != 3 || h.BufferOffset() != 4096 || h.U32(44) != 512 || h.TTT() != ReservedTag {
		t.Fatalf("data-in fields wrong: % x", h[:])
	}
}

func TestPad(t *testing.T) {
	for n, want := range map[int]int{0: 0, 1: 3, 2: 2, 3: 1, 4: 0, 5: 3, 4096: 0} {
		if got := Pad(n); got != want {
			t.Errorf("Pad(%d)=%d want %d", n, got, want)
		}
	}
}
