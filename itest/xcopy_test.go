package itest

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"hastor/internal/hastordtest"
	"hastor/internal/initiator"
)

// naaDesignator returns the NAA designator of LUN lun from VPD page 83h.
func naaDesignator(ctx context.Context, t *testing.T, s *initiator.Session, lun uint64) []byte {
	t.Helper()
	r, err := s.Do(ctx, lun, []byte{0x12, 0x01, 0x83, 0, 255, 0}, nil, 255)
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		t.Fatalf("INQUIRY VPD 83h on LUN %d: %v", lun, err)
	}
	for p := r.Data[4:]; len(p) >= 4 && len(p) >= 4+int(p[3]); p = p[4+int(p[3]):] {
		if p[1]&0x30 == 0 && p[1]&0x0F == 3 {
			return p[:4+int(p[3])]
		}
	}
	t.Fatalf("LUN %d has no NAA designator: % x", lun, r.Data)
	return nil
}

// TestExtendedCopyBetweenLUNs: VMware's full copy (EXTENDED COPY, LID1)
// sent to LUN 1 copies blocks from LUN 0 into it inside hastord, and
// RECEIVE COPY RESULTS reports the held status.
func TestExtendedCopyBetweenLUNs(t *testing.T) {
	dir := hastordtest.DiskDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, s := twoLUNs(ctx, t, filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img"), "", "")
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := s.Write16(ctx, 0, 4096, data, 512, false); err != nil {
		t.Fatal(err)
	}

	// Two CSCDs (LUN 0, LUN 1), two segments of 2 MiB each.
	p := make([]byte, 16, 16+64+56)
	p[0] = 7 // LIST IDENTIFIER; LIST ID USAGE 00b: hold the status
	binary.BigEndian.PutUint16(p[2:4], 64)
	binary.BigEndian.PutUint32(p[8:12], 56)
	for _, lun := range []uint64{0, 1} {
		cscd := make([]byte, 32)
		cscd[0] = 0xE4
		copy(cscd[4:28], naaDesignator(ctx, t, s, lun))
		cscd[30] = 0x02 // DISK BLOCK LENGTH 512
		p = append(p, cscd...)
	}
	for i := range uint64(2) {
		seg := make([]byte, 28)
		seg[0], seg[3] = 0x02, 0x18
		binary.BigEndian.PutUint16(seg[6:8], 1) // source CSCD 0, destination CSCD 1
		binary.BigEndian.PutUint16(seg[10:12], 4096)
		binary.BigEndian.PutUint64(seg[12:20], 4096+i*4096)
		binary.BigEndian.PutUint64(seg[20:28], 100000+i*4096)
		p = append(p, seg...)
	}
	cdb := make([]byte, 16)
	cdb[0] = 0x83
	binary.BigEndian.PutUint32(cdb[10:14], uint32(len(p)))
	r, err := s.Do(ctx, 1, cdb, p, 0)
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		t.Fatalf("EXTENDED COPY: %v", err)
	}
	got, err := s.Read16(ctx, 1, 100000, 8192, 512)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("LUN 1 does not hold the blocks copied from LUN 0")
	}

	rcr := make([]byte, 16)
	rcr[0], rcr[1], rcr[2] = 0x84, 0x00, 7 // COPY STATUS, list 7
	binary.BigEndian.PutUint32(rcr[10:14], 12)
	r, err = s.Do(ctx, 1, rcr, nil, 12)
	if err == nil {
		err = r.Err()
	}
	if err != nil || len(r.Data) != 12 || r.Data[4] != 0x01 || binary.BigEndian.Uint16(r.Data[5:7]) != 2 ||
		binary.BigEndian.Uint32(r.Data[8:12]) != 4<<20 {
		t.Fatalf("COPY STATUS: %v % x", err, r.Data)
	}
	d.CheckLog(t)
}

// xcopyParams returns an EXTENDED COPY (LID1) parameter list copying
// blocks 512-byte blocks from LBA src of the LU named by designator from
// to LBA dst of the LU named by to, as ESXi sends it: two identification
// CSCDs and one block to block segment, no list identifier.
func xcopyParams(from, to []byte, src, dst uint64, blocks uint16) []byte {
	p := make([]byte, 16, 16+64+28)
	p[1] = 0x18 // LIST ID USAGE 11b
	binary.BigEndian.PutUint16(p[2:4], 64)
	binary.BigEndian.PutUint32(p[8:12], 28)
	for _, d := range [][]byte{from, to} {
		cscd := make([]byte, 32)
		cscd[0] = 0xE4
		copy(cscd[4:28], d)
		cscd[30] = 0x02 // DISK BLOCK LENGTH 512
		p = append(p, cscd...)
	}
	seg := make([]byte, 28)
	seg[0], seg[3] = 0x02, 0x18
	binary.BigEndian.PutUint16(seg[6:8], 1)
	binary.BigEndian.PutUint16(seg[10:12], blocks)
	binary.BigEndian.PutUint64(seg[12:20], src)
	binary.BigEndian.PutUint64(seg[20:28], dst)
	return append(p, seg...)
}

// BenchmarkCopyBetweenLUNs compares copying 64 MiB from LUN 0 to LUN 1 of
// one hastord in 4 MiB pieces (ESXi's default XCOPY size) with EXTENDED
// COPY against reading and writing the same pieces through the initiator.
//
//	go test ./itest -run '^$' -bench CopyBetweenLUNs -benchtime 10x
func BenchmarkCopyBetweenLUNs(b *testing.B) {
	dir := hastordtest.DiskDir(b)
	cfg := lunConfig(filepath.Join(dir, "a.img"), "256MiB", "") + `      - lun: 1
        volume_id: itest-lun1
        path: ` + filepath.Join(dir, "b.img") + `
        size: 256MiB
`
	d := hastordtest.Start(b, hastordtest.Options{Config: cfg})
	ctx := context.Background()
	s, err := initiator.Dial(ctx, d.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Login(ctx, initiator.Options{InitiatorName: ini1, TargetName: targetIQN}); err != nil {
		b.Fatal(err)
	}
	for _, lun := range []uint64{0, 1} {
		if err := s.WaitReady(ctx, lun); err != nil {
			b.Fatal(err)
		}
	}
	naa := func(lun uint64) []byte {
		r, err := s.Do(ctx, lun, []byte{0x12, 0x01, 0x83, 0, 255, 0}, nil, 255)
		if err != nil || r.Err() != nil {
			b.Fatal(err, r.Err())
		}
		p := r.Data[4:]
		return p[:4+int(p[3])] // the first designator is the NAA
	}
	from, to := naa(0), naa(1)
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i*13 + 1)
	}
	const total, piece = 64 << 20, 4 << 20
	for off := 0; off < total; off += piece {
		if err := s.Write16(ctx, 0, initiator.LBA(off/512), data, 512, false); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("xcopy", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			for off := 0; off < total; off += piece {
				p := xcopyParams(from, to, uint64(off/512), uint64(off/512), piece/512)
				cdb := make([]byte, 16)
				cdb[0] = 0x83
				binary.BigEndian.PutUint32(cdb[10:14], uint32(len(p)))
				if r, err := s.Do(ctx, 1, cdb, p, 0); err != nil || r.Err() != nil {
					b.Fatal(err, r.Err())
				}
			}
		}
	})
	b.Run("read+write", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			for off := 0; off < total; off += piece {
				p, err := s.Read16(ctx, 0, initiator.LBA(off/512), piece/512, 512)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Write16(ctx, 1, initiator.LBA(off/512), p, 512, false); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
