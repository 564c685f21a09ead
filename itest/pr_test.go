package itest

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hastor/internal/hastordtest"
	"hastor/internal/initiator"
)

// readKeys returns the registered keys that READ KEYS (SPC-4) reports.
func readKeys(ctx context.Context, t *testing.T, s *initiator.Session) []uint64 {
	t.Helper()
	r, err := s.Do(ctx, 0, []byte{0x5E, 0x00, 0, 0, 0, 0, 0, 0x01, 0x00, 0}, nil, 256)
	if err == nil {
		err = r.Err()
	}
	if err != nil || len(r.Data) < 8 {
		t.Fatalf("READ KEYS: %v % x", err, r.Data)
	}
	var keys []uint64
	for p := r.Data[8:]; len(p) >= 8; p = p[8:] {
		keys = append(keys, binary.BigEndian.Uint64(p))
	}
	return keys
}

// registerAPTPL sends PERSISTENT RESERVE OUT REGISTER AND IGNORE EXISTING
// KEY with service action key key and the APTPL bit aptpl.
func registerAPTPL(ctx context.Context, t *testing.T, s *initiator.Session, key uint64, aptpl bool) {
	t.Helper()
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[8:16], key)
	if aptpl {
		p[20] = 0x01
	}
	r, err := s.Do(ctx, 0, []byte{0x5F, 0x06, 0, 0, 0, 0, 0, 0, 24, 0}, p, 0)
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		t.Fatalf("REGISTER AND IGNORE EXISTING KEY (APTPL %v): %v", aptpl, err)
	}
}

// TestPersistThroughPowerLoss: registrations made with APTPL survive a
// kill -9 and restart of hastord (they are in the state directory before
// the command returns); once a registration clears APTPL, a restart
// forgets them, as SPC-4 says a power loss does.
func TestPersistThroughPowerLoss(t *testing.T) {
	dir := hastordtest.DiskDir(t)
	state := filepath.Join(dir, "state")
	cfg := lunConfig(filepath.Join(dir, "lun0.img"), "16MiB", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func() (*hastordtest.Daemon, *initiator.Session) {
		d := hastordtest.Start(t, hastordtest.Options{Config: cfg, StateDir: state})
		return d, durabilityLogin(t, ctx, d)
	}
	d, s := start()
	registerAPTPL(ctx, t, s, 0xA1, true)
	d.Kill()
	d, s = start()
	if keys := readKeys(ctx, t, s); len(keys) != 1 || keys[0] != 0xA1 {
		t.Fatalf("after a restart: keys %x, want [a1]", keys)
	}
	registerAPTPL(ctx, t, s, 0xA2, false)
	d.Stop(t)
	_, s = start()
	if keys := readKeys(ctx, t, s); len(keys) != 0 {
		t.Fatalf("after a restart without APTPL: keys %x, want none", keys)
	}

	// An admin clears what an initiator left behind: the registrant gets
	// RESERVATIONS PREEMPTED, and the stored state goes too.
	registerAPTPL(ctx, t, s, 0xA3, true)
	file := filepath.Join(state, "itest-lun0.reservations")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("APTPL state not stored: %v", err)
	}
	ctl := hastordtest.Hastorctl(t)
	sock := filepath.Join(state, "hastord.sock")
	if out, err := run(t, time.Minute, nil, ctl, "clear-reservations", "--socket", sock, "itest-lun0"); err == nil || !strings.Contains(out, "--yes") {
		t.Fatalf("clear-reservations without --yes: %v\n%s", err, out)
	}
	mustRun(t, time.Minute, nil, ctl, "clear-reservations", "--yes", "--socket", sock, "itest-lun0")
	err := s.TestUnitReady(ctx, 0)
	var se *initiator.SCSIError
	if !errors.As(err, &se) || len(se.Sense) < 14 || se.Sense[12] != 0x2A || se.Sense[13] != 0x03 {
		t.Fatalf("after clear-reservations: %v, want UNIT ATTENTION 2Ah/03h", err)
	}
	if keys := readKeys(ctx, t, s); len(keys) != 0 {
		t.Fatalf("after clear-reservations: keys %x", keys)
	}
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the stored state is still there: %v", err)
	}
}
