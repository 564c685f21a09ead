//go:build linux

package blockdev

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// skipOrFail skips the test, or fails it when CI is set (project rule:
// tests needing an external tool must not silently skip in CI).
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
	}
	t.Skip(msg)
}

// directDir returns an empty directory, removed after the test, on a
// filesystem that does real O_DIRECT I/O. t.TempDir is tried first; when
// it is on tmpfs (as /tmp is on many machines and CI runners), /var/tmp,
// which is normally on disk, is used. HASTOR_TEST_DIR overrides both.
func directDir(t testing.TB) string {
	t.Helper()
	var tried []string
	try := func(dir string) bool {
		probe := filepath.Join(dir, "odirect-probe")
		f, err := Open(probe, Options{Size: 1 << 20, Create: true, BlockSize: 4096})
		if err != nil {
			tried = append(tried, err.Error())
			return false
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(probe); err != nil {
			t.Fatal(err)
		}
		return true
	}
	mkTemp := func(parent string) string {
		dir, err := os.MkdirTemp(parent, "blockdev-test-")
		if err != nil {
			tried = append(tried, err.Error())
			return ""
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	if parent := os.Getenv("HASTOR_TEST_DIR"); parent != "" {
		if dir := mkTemp(parent); dir != "" && try(dir) {
			return dir
		}
		t.Fatalf("HASTOR_TEST_DIR=%s does not support O_DIRECT: %v", parent, tried)
	}
	if dir := t.TempDir(); try(dir) {
		return dir
	}
	if dir := mkTemp("/var/tmp"); dir != "" && try(dir) {
		return dir
	}
	skipOrFail(t, "no directory with O_DIRECT support found; set HASTOR_TEST_DIR to a directory on ext4/xfs: %s", strings.Join(tried, "; "))
	return ""
}

// loopDevice attaches a sparse backing file of size bytes as a loop device
// with the given logical sector size and returns its path. It is detached
// when the test ends.
func loopDevice(t testing.TB, size int64, sectorSize int) string {
	t.Helper()
	if _, err := exec.LookPath("losetup"); err != nil {
		skipOrFail(t, "loop device tests need losetup (util-linux): %v", err)
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "loop device tests need root")
	}
	backing := filepath.Join(directDir(t), "loop-backing")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--sector-size", strconv.Itoa(sectorSize), backing).CombinedOutput()
	if err != nil {
		skipOrFail(t, "losetup --find --show %s: %v: %s", backing, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	if _, err := exec.LookPath("udevadm"); err == nil {
		// udev probes new devices holding a shared flock on them.
		_ = exec.Command("udevadm", "settle").Run()
	}
	return dev
}

// mustOpen opens path or fails the test, closing the File at cleanup.
func mustOpen(t testing.TB, path string, opts Options) *File {
	t.Helper()
	f, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return f
}

// ioModes lists the IOMode values a File test runs under.
var ioModes = []IOMode{IOAuto, IOAsync, IOSync}

// requireAIO stops the test unless f uses native AIO. Where this package
// has the iocb layout, a kernel that refuses AIO is a skip (a failure in
// CI): the test would silently cover only the synchronous path.
func requireAIO(t testing.TB, f *File) {
	t.Helper()
	if f.AsyncIO() {
		return
	}
	if !haveAIOLayout {
		t.Skip("no native AIO on this architecture")
	}
	skipOrFail(t, "kernel refused a native AIO context (CONFIG_AIO off or fs.aio-max-nr reached)")
}

// openMode opens path with opts.IO = mode like mustOpen and checks that
// the File has an AIO context unless mode is IOSync.
func openMode(t testing.TB, path string, opts Options, mode IOMode) *File {
	t.Helper()
	opts.IO = mode
	f := mustOpen(t, path, opts)
	if mode != IOSync {
		requireAIO(t, f)
	} else if f.AsyncIO() {
		t.Fatalf("IO %v: File has an AIO context", mode)
	}
	return f
}
