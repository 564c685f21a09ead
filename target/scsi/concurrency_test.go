package scsi

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
)

// Many commands of many nexuses on one LU at once, mixed with mode
// changes, resets and attach/detach: run under -race. Each goroutine owns
// a disjoint LBA range and checks its data against a model of every
// acknowledged write (STYLE §7).
func TestConcurrentCommands(t *testing.T) {
	lu := newTestLU(t, withSize(8<<20, 512)) // 16384 blocks
	const workers, ops, span = 8, 300, 1024
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			n := &Nexus{InitiatorName: "iqn.c", ISID: [6]byte{byte(w)}}
			lu.Attach(n)
			model := map[uint64][]byte{} // LBA → acknowledged data
			base := uint64(w * span)
			exec := func(cdb, data []byte) (Response, []byte) {
				for {
					r, d := runData(t, lu, n, cdb, data)
					if r.Status == StatusCheckCondition && parseSense(t, r.SenseData()).key == SenseUnitAttention {
						continue // from another worker's MODE SELECT or reset
					}
					return r, d
				}
			}
			for i := 0; i < ops; i++ {
				lba := base + uint64(rng.IntN(span-8))
				nb := uint32(1 + rng.IntN(8))
				switch rng.IntN(10) {
				case 0, 1, 2, 3:
					data := make([]byte, int(nb)*512)
					for j := range data {
						data[j] = byte(rng.Uint32())
					}
					op := []byte{opWrite10, opWrite16, opWriteVerify12}[rng.IntN(3)]
					flags := byte(0)
					if op != opWriteVerify12 && rng.IntN(2) == 0 {
						flags = 0x08
					}
					if r, _ := exec(cdbRW(op, lba, nb, flags), data); r.Status != StatusGood {
						t.Errorf("write status %#x", r.Status)
						return
					}
					for b := uint32(0); b < nb; b++ {
						model[lba+uint64(b)] = data[b*512 : (b+1)*512]
					}
				case 4, 5, 6:
					r, d := exec(cdbRW(opRead16, lba, nb, 0), nil)
					if r.Status != StatusGood {
						t.Errorf("read status %#x", r.Status)
						return
					}
					for b := uint32(0); b < nb; b++ {
						want, ok := model[lba+uint64(b)]
						if !ok {
							want = make([]byte, 512)
						}
						if !bytes.Equal(d[b*512:(b+1)*512], want) {
							t.Errorf("worker %d: LBA %d differs from the last acknowledged write", w, lba+uint64(b))
							return
						}
					}
				case 7:
					wce := rng.IntN(2) == 0
					exec(modeSelect6(cachingPage(wce)), cachingPage(wce))
				case 8:
					if rng.IntN(10) == 0 {
						lu.Reset(n)
					}
					exec(cdb6(opTestUnitReady), nil)
					exec(cdbRW(opSyncCache10, 0, 0, 0), nil)
				case 9:
					c := make([]byte, 16)
					c[0] = opReportLUNs
					binary.BigEndian.PutUint32(c[6:10], 64)
					exec(c, nil)
					exec(cdb6(opInquiry, 1, vpdDeviceID, 0, 255), nil)
					exec(modeSense6(0, pageAllPages, pcCurrent, 255), nil)
				}
			}
			lu.Detach(n)
		}()
	}
	wg.Wait()
}
