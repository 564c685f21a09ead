package itest

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"hastor/internal/hastordtest"
	"hastor/internal/initiator"
)

// twoLUNs starts hastord with LUN 0 on image file path0 and LUN 1 on
// path1, 64 MiB each with the extra configuration lines extra0 and extra1,
// logs in as ini1 and waits until both LUNs are ready.
func twoLUNs(ctx context.Context, t *testing.T, path0, path1, extra0, extra1 string) (*hastordtest.Daemon, *initiator.Session) {
	t.Helper()
	cfg := lunConfig(path0, "64MiB", "") + extra0 + `      - lun: 1
        volume_id: itest-lun1
        path: ` + path1 + `
        size: 64MiB
` + extra1
	d := hastordtest.Start(t, hastordtest.Options{Config: cfg})
	s := durabilityLogin(t, ctx, d)
	if err := s.WaitReady(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return d, s
}

// lbaRun is one LBA status descriptor of GET LBA STATUS.
type lbaRun struct {
	LBA         uint64
	Blocks      uint32
	Deallocated bool
}

// getLBAStatus runs GET LBA STATUS (SBC-3) from lba and returns its
// descriptors.
func getLBAStatus(ctx context.Context, t *testing.T, s *initiator.Session, lun, lba uint64) []lbaRun {
	t.Helper()
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = 0x9E, 0x12
	binary.BigEndian.PutUint64(cdb[2:10], lba)
	binary.BigEndian.PutUint32(cdb[10:14], 1024)
	r, err := s.Do(ctx, lun, cdb, nil, 1024)
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		t.Fatalf("GET LBA STATUS (LUN %d, LBA %d): %v", lun, lba, err)
	}
	if len(r.Data) < 8 || int(binary.BigEndian.Uint32(r.Data[0:4]))+4 != len(r.Data) || (len(r.Data)-8)%16 != 0 {
		t.Fatalf("GET LBA STATUS: malformed parameter data % x", r.Data)
	}
	var runs []lbaRun
	for d := r.Data[8:]; len(d) >= 16; d = d[16:] {
		runs = append(runs, lbaRun{binary.BigEndian.Uint64(d[0:8]), binary.BigEndian.Uint32(d[8:12]), d[12]&0x0F == 1})
	}
	return runs
}

// unmap sends UNMAP (SBC-3) for blocks blocks from lba.
func unmap(ctx context.Context, s *initiator.Session, lun, lba uint64, blocks uint32) error {
	p := make([]byte, 24)
	binary.BigEndian.PutUint16(p[0:2], 22)
	binary.BigEndian.PutUint16(p[2:4], 16)
	binary.BigEndian.PutUint64(p[8:16], lba)
	binary.BigEndian.PutUint32(p[16:20], blocks)
	cdb := make([]byte, 10)
	cdb[0] = 0x42
	binary.BigEndian.PutUint16(cdb[7:9], uint16(len(p)))
	r, err := s.Do(ctx, lun, cdb, p, 0)
	if err != nil {
		return err
	}
	return r.Err()
}

// allocated returns the bytes of storage path's file occupies.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestThinProvisioning: on an image file, UNMAP punches holes that free
// the file's storage, and GET LBA STATUS shows the holes (SBC-3 "logical
// block provisioning"); a LUN with thin_provisioning: false reports LBPME=0
// and refuses UNMAP.
func TestThinProvisioning(t *testing.T) {
	dir := hastordtest.DiskDir(t)
	thin, thick := filepath.Join(dir, "thin.img"), filepath.Join(dir, "thick.img")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, s := twoLUNs(ctx, t, thin, thick, "        block_size: 4096\n", "        block_size: 4096\n        thin_provisioning: false\n")
	const blocks = 64 << 20 / 4096

	lbpme := func(lun uint64) bool {
		cdb := make([]byte, 16)
		cdb[0], cdb[1] = 0x9E, 0x10
		binary.BigEndian.PutUint32(cdb[10:14], 32)
		r, err := s.Do(ctx, lun, cdb, nil, 32)
		if err != nil || r.Err() != nil || len(r.Data) < 15 {
			t.Fatalf("READ CAPACITY(16) on LUN %d: %v %v", lun, err, r.Err())
		}
		return r.Data[14]&0x80 != 0
	}
	if !lbpme(0) || lbpme(1) {
		t.Fatalf("LBPME: LUN 0 %v, LUN 1 %v; want thin and fully provisioned", lbpme(0), lbpme(1))
	}

	// A new image file is all holes; 4 MiB written at block 256 is mapped.
	if got := getLBAStatus(ctx, t, s, 0, 0); len(got) != 1 || got[0] != (lbaRun{0, blocks, true}) {
		t.Fatalf("new LUN: %+v, want one deallocated run", got)
	}
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i*13 + 1)
	}
	for _, lun := range []uint64{0, 1} {
		if err := s.Write16(ctx, lun, 256, data, 4096, false); err != nil {
			t.Fatal(err)
		}
	}
	want := []lbaRun{{0, 256, true}, {256, 1024, false}, {1280, blocks - 1280, true}}
	if got := getLBAStatus(ctx, t, s, 0, 0); !slices.Equal(got, want) {
		t.Fatalf("after the write: %+v, want %+v", got, want)
	}
	if got := getLBAStatus(ctx, t, s, 0, 300); !slices.Equal(got, []lbaRun{{300, 980, false}, {1280, blocks - 1280, true}}) {
		t.Fatalf("from LBA 300: %+v", got)
	}

	// UNMAP the middle 2 MiB: its storage is freed and it reads as zeros.
	before := allocated(t, thin)
	if err := unmap(ctx, s, 0, 512, 512); err != nil {
		t.Fatal(err)
	}
	if freed := before - allocated(t, thin); freed < 2<<20 {
		t.Errorf("UNMAP of 2 MiB freed %d bytes of %s", freed, thin)
	}
	want = []lbaRun{{0, 256, true}, {256, 256, false}, {512, 512, true}, {1024, 256, false}, {1280, blocks - 1280, true}}
	if got := getLBAStatus(ctx, t, s, 0, 0); !slices.Equal(got, want) {
		t.Fatalf("after UNMAP: %+v, want %+v", got, want)
	}
	back, err := s.Read16(ctx, 0, 256, 1024, 4096)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range back {
		w := data[i]
		if i >= 1<<20 && i < 3<<20 {
			w = 0
		}
		if b != w {
			t.Fatalf("byte %d after UNMAP: %#x, want %#x", i, b, w)
		}
	}

	// The fully provisioned LUN: UNMAP is not supported, nothing is freed,
	// every block is mapped.
	before = allocated(t, thick)
	var se *initiator.SCSIError
	if err := unmap(ctx, s, 1, 256, 512); !errors.As(err, &se) {
		t.Fatalf("UNMAP on the fully provisioned LUN: %v, want ILLEGAL REQUEST", err)
	} else if k, asc, _ := se.SenseKey(); k != 0x5 || asc != 0x20 {
		t.Fatalf("UNMAP on the fully provisioned LUN: sense key %#x asc %#x, want 5h/20h (INVALID COMMAND OPERATION CODE)", k, asc)
	}
	if after := allocated(t, thick); after != before {
		t.Errorf("%s: %d bytes allocated after a refused UNMAP, %d before", thick, after, before)
	}
	if got := getLBAStatus(ctx, t, s, 1, 0); len(got) != 1 || got[0] != (lbaRun{0, blocks, false}) {
		t.Fatalf("fully provisioned LUN: %+v, want one mapped run", got)
	}
	d.CheckLog(t)
}
