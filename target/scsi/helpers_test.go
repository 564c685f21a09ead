package scsi

import (
	"context"
	"encoding/binary"
	"log/slog"
	"sync/atomic"
	"testing"
	"unsafe"

	"hastor/blockdev"
)

const testVolume = "vol-test-0001"

// alignedBuf returns a 4096-aligned buffer of length n whose capacity is n
// rounded up to a multiple of 4096 (at least 4096), as the transport
// provides.
func alignedBuf(n int) []byte {
	c := (n + 4095) &^ 4095
	if c == 0 {
		c = 4096
	}
	raw := make([]byte, c+4096)
	off := int(-uintptr(unsafe.Pointer(&raw[0])) & 4095)
	return raw[off : off+n : off+c]
}

type luOpt func(*LUConfig)

func withBlockSize(bs int) luOpt        { return func(c *LUConfig) { c.BlockSize = bs } }
func withReadOnly() luOpt               { return func(c *LUConfig) { c.ReadOnly = true } }
func withWriteCache() luOpt             { return func(c *LUConfig) { c.WriteCache = true } }
func withMaxTransfer(n int) luOpt       { return func(c *LUConfig) { c.MaxTransferBytes = n } }
func withDev(d blockdev.Device) luOpt   { return func(c *LUConfig) { c.Dev = d } }
func withSize(size int64, bs int) luOpt { return withDev(blockdev.NewMem(size, bs)) }

// fullyProvisioned backs the LU with a Mem that cannot deallocate (only
// the Device methods), as a replicated or encrypted volume.
func fullyProvisioned(size int64, bs int) luOpt {
	return withDev(struct{ blockdev.Device }{blockdev.NewMem(size, bs)})
}

// newTestLU returns an LU over a 1 MiB Mem device with 512-byte blocks
// unless options say otherwise.
func newTestLU(t testing.TB, opts ...luOpt) *LU {
	t.Helper()
	cfg := LUConfig{VolumeID: testVolume, Logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 512
	}
	if cfg.Dev == nil {
		cfg.Dev = blockdev.NewMem(1<<20, cfg.BlockSize)
	}
	lu, err := NewLU(cfg)
	if err != nil {
		t.Fatalf("NewLU: %v", err)
	}
	return lu
}

var nexusSeq atomic.Uint32

// newNexus returns a nexus attached to lu with its initial unit attention
// (29h/00h) consumed.
func newNexus(t testing.TB, lu *LU) *Nexus {
	t.Helper()
	seq := nexusSeq.Add(1)
	n := &Nexus{InitiatorName: "iqn.2024-01.test:init", ISID: [6]byte{0x80, 0, 0, 0, byte(seq >> 8), byte(seq)},
		TargetName: "iqn.2024-01.test:tgt", RelativeTargetPort: 1, TPGT: 1}
	lu.Attach(n)
	r := run(t, lu, n, cdb6(opTestUnitReady), nil)
	expectSense(t, r, SenseUnitAttention, ascPowerOnResetOccurred)
	expectGood(t, run(t, lu, n, cdb6(opTestUnitReady), nil))
	return n
}

// run decodes cdb and executes it with a buffer sized as the transport
// would: for data-out, data (copied into an aligned buffer); for data-in,
// Command.DataLen bytes.
func run(t testing.TB, lu *LU, n *Nexus, cdb []byte, data []byte) Response {
	t.Helper()
	r, _ := runData(t, lu, n, cdb, data)
	return r
}

// runData is run that also returns the data-in bytes.
func runData(t testing.TB, lu *LU, n *Nexus, cdb []byte, data []byte) (Response, []byte) {
	t.Helper()
	cmd := lu.Decode(cdb)
	var buf []byte
	switch cmd.Dir {
	case DirRead:
		buf = alignedBuf(int(cmd.DataLen))
	case DirWrite:
		buf = alignedBuf(len(data))
		copy(buf, data)
	default:
		if cmd.DataLen != 0 {
			t.Fatalf("Dir none with DataLen %d", cmd.DataLen)
		}
		if data != nil {
			buf = alignedBuf(len(data))
			copy(buf, data)
		}
	}
	r := lu.Execute(context.Background(), n, &cmd, buf)
	if r.DataLen < 0 || r.DataLen > len(buf) {
		t.Fatalf("DataLen %d outside buffer of %d", r.DataLen, len(buf))
	}
	if r.Status == StatusCheckCondition && r.SenseLen == 0 {
		t.Fatalf("CHECK CONDITION without sense data")
	}
	return r, buf[:r.DataLen]
}

func cdb6(op byte, b ...byte) []byte {
	c := make([]byte, 16)
	c[0] = op
	copy(c[1:], b)
	return c
}

// cdbRW builds a 6/10/12/16-byte block command CDB with the given flags
// byte (byte 1).
func cdbRW(op byte, lba uint64, n uint32, flags byte) []byte {
	c := make([]byte, 16)
	c[0] = op
	switch op >> 5 {
	case 0:
		c[1] = byte(lba>>16) & 0x1F
		c[2], c[3] = byte(lba>>8), byte(lba)
		c[4] = byte(n)
	case 1:
		c[1] = flags
		binary.BigEndian.PutUint32(c[2:6], uint32(lba))
		binary.BigEndian.PutUint16(c[7:9], uint16(n))
	case 5:
		c[1] = flags
		binary.BigEndian.PutUint32(c[2:6], uint32(lba))
		binary.BigEndian.PutUint32(c[6:10], n)
	case 4:
		c[1] = flags
		binary.BigEndian.PutUint64(c[2:10], lba)
		binary.BigEndian.PutUint32(c[10:14], n)
	}
	return c
}

type parsedSense struct {
	code  byte
	key   SenseKey
	asc   ascCode
	info  uint64
	valid bool
	sksv  bool
	cd    bool
	bpv   bool
	bit   uint8
	field int
}

func parseSense(t testing.TB, s []byte) parsedSense {
	t.Helper()
	var p parsedSense
	if len(s) < 8 {
		t.Fatalf("sense data too short: % x", s)
	}
	p.code = s[0] & 0x7F
	var sks []byte
	switch p.code {
	case 0x70, 0x71:
		if len(s) < 18 {
			t.Fatalf("fixed sense too short: % x", s)
		}
		p.key = SenseKey(s[2] & 0x0F)
		p.asc = ascCode(s[12])<<8 | ascCode(s[13])
		p.valid = s[0]&0x80 != 0
		p.info = uint64(binary.BigEndian.Uint32(s[3:7]))
		sks = s[15:18]
	case 0x72, 0x73:
		p.key = SenseKey(s[1] & 0x0F)
		p.asc = ascCode(s[2])<<8 | ascCode(s[3])
		if int(s[7])+8 != len(s) {
			t.Fatalf("descriptor sense: additional length %d, total %d", s[7], len(s))
		}
		for d := s[8:]; len(d) >= 2; d = d[2+int(d[1]):] {
			switch d[0] {
			case 0x00:
				p.valid = d[2]&0x80 != 0
				p.info = binary.BigEndian.Uint64(d[4:12])
			case 0x02:
				sks = d[4:7]
			}
		}
	default:
		t.Fatalf("unknown sense response code %#x", p.code)
	}
	if sks != nil && sks[0]&0x80 != 0 {
		p.sksv = true
		p.cd = sks[0]&0x40 != 0
		p.bpv = sks[0]&0x08 != 0
		p.bit = sks[0] & 7
		p.field = int(sks[1])<<8 | int(sks[2])
	}
	return p
}

func expectGood(t testing.TB, r Response) {
	t.Helper()
	if r.Status != StatusGood {
		p := parseSense(t, r.SenseData())
		t.Fatalf("status %#x, want GOOD; sense key %#x asc %04x", r.Status, p.key, uint16(p.asc))
	}
}

func expectSense(t testing.TB, r Response, key SenseKey, asc ascCode) parsedSense {
	t.Helper()
	if r.Status != StatusCheckCondition {
		t.Fatalf("status %#x, want CHECK CONDITION (%#x/%04x)", r.Status, key, uint16(asc))
	}
	p := parseSense(t, r.SenseData())
	if p.key != key || p.asc != asc {
		t.Fatalf("sense %#x/%04x, want %#x/%04x", p.key, uint16(p.asc), key, uint16(asc))
	}
	return p
}

// expectInvalidCDB checks ILLEGAL REQUEST, INVALID FIELD IN CDB with the
// field pointer at byte/bit.
func expectInvalidCDB(t testing.TB, r Response, byteOff int, bit uint8) {
	t.Helper()
	p := expectSense(t, r, SenseIllegalRequest, ascInvalidFieldInCDB)
	if !p.sksv || !p.cd || !p.bpv || p.field != byteOff || p.bit != bit {
		t.Fatalf("field pointer sksv=%v cd=%v bpv=%v byte %d bit %d, want CDB byte %d bit %d",
			p.sksv, p.cd, p.bpv, p.field, p.bit, byteOff, bit)
	}
}

func expectInvalidParam(t testing.TB, r Response, byteOff int, bit uint8) {
	t.Helper()
	p := expectSense(t, r, SenseIllegalRequest, ascInvalidFieldInParam)
	if !p.sksv || p.cd || !p.bpv || p.field != byteOff || p.bit != bit {
		t.Fatalf("field pointer sksv=%v cd=%v bpv=%v byte %d bit %d, want param byte %d bit %d",
			p.sksv, p.cd, p.bpv, p.field, p.bit, byteOff, bit)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>9)
	}
	return b
}
