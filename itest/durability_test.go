package itest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"hastor/internal/ackcheck"
	"hastor/internal/hastordtest"
	"hastor/internal/initiator"
)

// durabilityLogin dials d and logs in to the test target.
func durabilityLogin(t *testing.T, ctx context.Context, d *hastordtest.Daemon) *initiator.Session {
	t.Helper()
	s, err := initiator.Dial(ctx, d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Login(ctx, initiator.Options{InitiatorName: ini1, TargetName: targetIQN}); err != nil {
		t.Fatalf("login: %v\n%s", err, d.Log())
	}
	if err := s.WaitReady(ctx, 0); err != nil {
		t.Fatalf("TEST UNIT READY: %v", err)
	}
	return s
}

// TestAcknowledgedWritesSurviveKill: with write_cache false every write is
// durable before its GOOD status (SBC-3 §5.40, the WCE bit of the caching
// mode page, SBC-3 §6.5.5). Stamped 4 KiB writes run 32 at a time; hastord
// is killed with SIGKILL while they are in flight, restarted on the same
// image, and every block is read back: each must hold its last
// acknowledged write or a later write whose outcome was unknown, and
// blocks never written must still be zeros.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	dir := hastordtest.DiskDir(t)
	state := filepath.Join(dir, "state")
	img := filepath.Join(dir, "lun0.img")
	cfg := lunConfig(img, "64MiB", "") + "        write_cache: false\n"
	d := hastordtest.Start(t, hastordtest.Options{Config: cfg, StateDir: state})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := durabilityLogin(t, ctx, d)
	capa, err := s.ReadCapacity16(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	const blockSize = 4096
	// 16 MiB of the LUN: small enough that blocks are overwritten often.
	m, err := ackcheck.NewModel(ackcheck.Layout{BlockSize: blockSize, First: 0, Count: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if capa.Blocks*uint64(capa.BlockSize) < 4096*blockSize {
		t.Fatalf("LUN too small: %+v", capa)
	}
	modelPath := filepath.Join(dir, "ackcheck-model.json")

	// Kill hastord from another goroutine after 2 s of writing, or once
	// killAfterAcks writes were acknowledged if that comes first, while the
	// writers keep 32 writes in flight.
	const killAfterAcks = 50000
	var killOnce sync.Once
	killed := make(chan struct{})
	kill := func() {
		killOnce.Do(func() {
			go func() {
				d.Kill()
				close(killed)
			}()
		})
	}
	timer := time.AfterFunc(2*time.Second, kill)
	defer timer.Stop()
	st, runErr := ackcheck.Run(ctx, ackcheck.SessionDevice(s, 0, capa.BlockSize), m, ackcheck.RunOptions{
		QueueDepth: 32,
		Seed:       1,
		Duration:   time.Minute, // the kill ends the run long before
		OnAck: func(n int64) {
			if n == killAfterAcks {
				kill()
			}
		},
	})
	timer.Stop()
	kill() // in case the run ended some other way
	<-killed
	s.Close()
	d.CheckLog(t)
	t.Logf("run: %d writes issued, %d acknowledged, %d in flight at the kill (outcome unknown), %d failed with a SCSI status",
		st.Issued, st.Acked, st.Unknown, st.Failed)
	if !errors.Is(runErr, initiator.ErrConnLost) {
		t.Fatalf("the run ended with %v, want the lost connection of the kill", runErr)
	}
	if st.Acked == 0 || st.Unknown == 0 || st.Failed != 0 {
		t.Fatalf("the kill did not land while writes were in flight: %+v", st)
	}
	if err := m.SaveFile(modelPath); err != nil {
		t.Fatal(err)
	}

	// Restart on the same state and image, log in again and verify with
	// the model as saved to disk.
	d2 := hastordtest.Start(t, hastordtest.Options{Config: cfg, StateDir: state})
	s2 := durabilityLogin(t, ctx, d2)
	saved, err := ackcheck.LoadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ackcheck.Verify(ctx, ackcheck.SessionDevice(s2, 0, capa.BlockSize), saved, ackcheck.VerifyOptions{All: true, QueueDepth: 16})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	t.Logf("verify: %s", rep)
	if !rep.OK() {
		t.Fatalf("acknowledged writes lost after kill -9:\n%s", rep)
	}
	if rep.Acked == 0 {
		t.Fatalf("no block holds an acknowledged write: %s", rep)
	}
	if err := s2.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	d2.Stop(t)
	d2.CheckLog(t)

	// Negative control on the real path: roll two acknowledged blocks back
	// in the image behind the stopped daemon (one to zeros, one to an
	// older write of it) and check that Verify reports exactly those.
	var lost, stale ackcheck.Block
	var older ackcheck.Seq
	foundLost, foundStale := false, false
	for _, b := range saved.Touched() {
		h := saved.History(b)
		if a := saved.Acked(b); a == 0 || h[len(h)-1] != a {
			continue // keep to blocks whose last write was acknowledged
		}
		switch {
		case !foundLost:
			lost, foundLost = b, true
		case !foundStale && len(h) >= 2:
			stale, older, foundStale = b, h[len(h)-2], true
		}
	}
	if !foundLost || !foundStale {
		t.Fatal("no acknowledged blocks to roll back")
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, blockSize)
	_, err1 := f.WriteAt(buf, int64(lost)*blockSize)
	ackcheck.Stamp(buf, stale, older)
	_, err2 := f.WriteAt(buf, int64(stale)*blockSize)
	err3 := f.Sync()
	if err := errors.Join(err1, err2, err3, f.Close()); err != nil {
		t.Fatal(err)
	}
	d3 := hastordtest.Start(t, hastordtest.Options{Config: cfg, StateDir: state})
	s3 := durabilityLogin(t, ctx, d3)
	rep, err = ackcheck.Verify(ctx, ackcheck.SessionDevice(s3, 0, capa.BlockSize), saved, ackcheck.VerifyOptions{QueueDepth: 16})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	v := rep.Violations
	if len(v) != 2 || v[0].Block != min(lost, stale) || v[1].Block != max(lost, stale) {
		t.Fatalf("negative control: want violations at blocks %d (lost) and %d (stale), got:\n%s", lost, stale, rep)
	}
	for _, x := range v {
		if want := map[ackcheck.Block]ackcheck.Outcome{lost: ackcheck.ViolationLost, stale: ackcheck.ViolationStale}[x.Block]; x.Outcome != want {
			t.Fatalf("negative control: block %d reported %v, want %v", x.Block, x.Outcome, want)
		}
	}
	t.Logf("negative control: %s", rep)
	if err := s3.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	d3.Stop(t)
	d3.CheckLog(t)
}
