package target

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"hastor/target/login"
)

// TestRandomIOAgainstModel drives random WRITE and READ commands of random
// sizes through sessions with randomly negotiated parameters (burst
// lengths, segment sizes, InitialR2T, digests), so that immediate data,
// unsolicited Data-Out and R2T sequences mix in every way, and checks every
// READ against an in-memory model of all acknowledged writes.
func TestRandomIOAgainstModel(t *testing.T) {
	const blocks = 4096 // 2 MiB of the LU
	ts := newTestServer(t)
	model := make([]byte, blocks*512)
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(v ...string) string { return v[rng.IntN(len(v))] }
	for s := range 6 {
		mbl := pick("4096", "16384", "65536", "262144")
		keys := login.Text{
			{Key: "HeaderDigest", Value: pick("None", "CRC32C")},
			{Key: "DataDigest", Value: pick("None", "CRC32C")},
			{Key: "MaxRecvDataSegmentLength", Value: pick("512", "4096", "8192", "65536")},
			{Key: "InitialR2T", Value: pick("Yes", "No")},
			{Key: "ImmediateData", Value: pick("Yes", "No")},
			{Key: "MaxBurstLength", Value: mbl},
			{Key: "FirstBurstLength", Value: pick("512", "4096", mbl)},
			{Key: "MaxOutstandingR2T", Value: pick("1", "2", "8")},
		}
		i := ts.loggedInISID(t, keys, byte(s+1))
		clearUA(t, i)
		for op := range 60 {
			n := 1 + rng.IntN(300)
			lba := rng.IntN(blocks - n)
			if rng.IntN(2) == 0 {
				data := make([]byte, n*512)
				for k := range data {
					data[k] = byte(rng.Uint32())
				}
				r, err := i.command(0, write10(uint32(lba), uint16(n)), uint32(len(data)), data, false)
				if err != nil || r.status != 0 {
					t.Fatalf("session %d op %d: write %d blocks at %d: %v status %d (keys %v)", s, op, n, lba, err, r.status, keys)
				}
				copy(model[lba*512:], data)
				continue
			}
			r, err := i.command(0, read10(uint32(lba), uint16(n)), uint32(n*512), nil, true)
			if err != nil || r.status != 0 {
				t.Fatalf("session %d op %d: read: %v status %d", s, op, err, r.status)
			}
			if want := model[lba*512 : (lba+n)*512]; !bytes.Equal(r.data, want) {
				t.Fatalf("session %d op %d: read %d blocks at %d differs from the model (keys %v)", s, op, n, lba, keys)
			}
		}
	}
}
