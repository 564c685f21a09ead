package scsi

import (
	"context"
	"log/slog"
	"testing"

	"hastor/blockdev"
)

// FuzzDecodeExecute feeds random CDBs and data to Decode and Execute on a
// shared LU (so state such as D_SENSE and WCE carries over between inputs)
// and checks that nothing panics and the results keep the contract.
// ops: bit 0 targets the absent-LUN stand-in, bit 1 resets the LU first,
// bit 2 detaches and reattaches the nexus first. Seed corpus:
// testdata/fuzz/FuzzDecodeExecute.
func FuzzDecodeExecute(f *testing.F) {
	f.Add(cdbRW(opRead10, 0, 1, 0), []byte{}, uint32(512), byte(0))
	f.Add(cdbRW(opWrite16, 1, 1, 0x08), pattern(512, 1), uint32(512), byte(0))
	f.Add(cdb6(opInquiry, 1, 0x83, 0, 255), []byte{}, uint32(255), byte(1))
	f.Add(modeSelect6(controlPage(true, false)), controlPage(true, false), uint32(16), byte(2))
	f.Add(cdbRW(opORWrite16, 2, 1, 0x08), pattern(512, 2), uint32(512), byte(0))
	f.Add(cdbRW(opPreFetch10, 2, 0, 0x02), []byte{}, uint32(0), byte(0))
	f.Add(cdbGetLBAStatus(3, 24), []byte{}, uint32(24), byte(0))
	f.Add(cdb6(opReserve6), []byte{}, uint32(0), byte(4))
	f.Add(cdbReadDefect(true, true, false, 3, 0, 32), []byte{}, uint32(32), byte(0))
	f.Add(cdbCAW(4, 1, 0x08), pattern(1024, 3), uint32(1024), byte(0))
	f.Add(cdbWriteSame(opWriteSame16, 5, 0, 0x08), make([]byte, 512), uint32(512), byte(0))
	f.Add(cdbWriteSame(opWriteSame10, 5, 3, 0), pattern(512, 4), uint32(512), byte(0))
	unmap, params := unmapParams(unmapDesc{1, 2}, unmapDesc{60, 4})
	f.Add(unmap, params, uint32(len(params)), byte(0))
	prout, prParams := cdbPROut(proutRegisterIgnore, 0, 0, 7)
	f.Add(prout, prParams, uint32(len(prParams)), byte(0))
	prout, prParams = cdbPROut(proutReserve, prExclusiveAccess, 7, 0)
	f.Add(prout, prParams, uint32(len(prParams)), byte(4))
	f.Add(cdbPRIn(prinReadFullStatus, 200), []byte{}, uint32(200), byte(0))

	lu, err := NewLU(LUConfig{Dev: blockdev.NewMem(64*512, 512), VolumeID: "fuzz", MaxTransferBytes: 32 << 10,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	tgt, err := NewTarget("iqn.2024-01.test:fuzz", []*LU{lu})
	if err != nil {
		f.Fatal(err)
	}
	n := &Nexus{InitiatorName: "iqn.fuzz", TargetName: tgt.Name(), TPGT: 1}
	tgt.Attach(n)
	xcopy, xparams := xcopyList(1, listIDHold, []*LU{lu}, xcopySeg{blocks: 4, srcLBA: 0, dstLBA: 6}, xcopySeg{blocks: 8, srcLBA: 2, dstLBA: 4})
	f.Add(xcopy, xparams, uint32(len(xparams)), byte(0))
	f.Add(cdbReceiveCopyResults(saCopyStatus, 1, 64), []byte{}, uint32(64), byte(0))
	f.Add(cdbReceiveCopyResults(saOperatingParams, 0, 64), []byte{}, uint32(64), byte(0))

	f.Fuzz(func(t *testing.T, cdb []byte, data []byte, edtl uint32, ops byte) {
		target := tgt.LU(0)
		if ops&1 != 0 {
			target = tgt.LU(1)
		}
		if ops&2 != 0 {
			lu.Reset(n)
		}
		if ops&4 != 0 {
			tgt.Detach(n)
			tgt.Attach(n)
		}
		cmd := target.Decode(cdb)
		cmd.CheckTransferLength(edtl)
		if !cmd.Valid() && (cmd.Dir != DirNone || cmd.DataLen != 0) {
			t.Fatalf("invalid command with Dir %v DataLen %d", cmd.Dir, cmd.DataLen)
		}
		if cmd.Dir == DirNone && cmd.DataLen != 0 {
			t.Fatalf("DirNone with DataLen %d", cmd.DataLen)
		}
		var buf []byte
		switch cmd.Dir {
		case DirRead:
			l := min(cmd.DataLen, edtl, 1<<20)
			buf = alignedBuf(int(l))
		case DirWrite:
			buf = alignedBuf(min(len(data), int(cmd.DataLen)))
			copy(buf, data)
		default:
			buf = alignedBuf(min(len(data), 4096))
			copy(buf, data)
		}
		r := target.Execute(context.Background(), n, &cmd, buf)
		if r.DataLen < 0 || r.DataLen > len(buf) || (cmd.Dir != DirRead && r.DataLen != 0) {
			t.Fatalf("DataLen %d with buffer %d, Dir %v", r.DataLen, len(buf), cmd.Dir)
		}
		switch r.Status {
		case StatusGood, StatusReservationConflict:
			if r.SenseLen != 0 {
				t.Fatalf("GOOD with %d bytes of sense", r.SenseLen)
			}
		case StatusCheckCondition:
			if r.SenseLen < 8 || r.SenseLen > SenseMax {
				t.Fatalf("sense length %d", r.SenseLen)
			}
			parseSense(t, r.SenseData())
			if r.DataLen != 0 {
				t.Fatalf("CHECK CONDITION with %d data bytes", r.DataLen)
			}
		default:
			t.Fatalf("status %#x", r.Status)
		}
	})
}
