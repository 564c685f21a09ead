package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fastKDF keeps the tests quick; the defaults calibrate to about 2 s.
var fastKDF = []string{"--pbkdf", "pbkdf2", "--iterations", "1000"}

type result struct {
	code     int
	out, err string
}

// ctl runs hastorctl in-process. term, when set, answers passphrase
// prompts in order.
func ctl(t *testing.T, term []string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	st := stdio{in: strings.NewReader(""), out: &out, err: &errb}
	if term != nil {
		st.term = func(prompt string) ([]byte, error) {
			if len(term) == 0 {
				t.Fatalf("unexpected prompt %q", prompt)
			}
			p := term[0]
			term = term[1:]
			return []byte(p), nil
		}
	}
	code := run(context.Background(), args, st)
	return result{code, out.String(), errb.String()}
}

func keyFile(t *testing.T, dir, name, pass string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func want(t *testing.T, r result, code int, substr string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.out+r.err, substr) {
		t.Fatalf("exit %d (want %d), output does not contain %q:\nstdout: %s\nstderr: %s", r.code, code, substr, r.out, r.err)
	}
}

// The life of a volume through the CLI: format, keys added, changed and
// removed, a header backup, a crypto erase, and the backup restoring access.
func TestVolumeLifecycle(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "vol.img")
	k1 := keyFile(t, dir, "k1", "passphrase one")
	k2 := keyFile(t, dir, "k2", "passphrase two")
	k3 := keyFile(t, dir, "k3", "passphrase three")

	want(t, ctl(t, nil, append([]string{"format", "--size", "32MiB", "--key-file", k1}, append(fastKDF, img)...)...), 0, "aes-xts-plain64 with 4096-byte sectors")
	want(t, ctl(t, nil, append([]string{"format", "--key-file", k1}, append(fastKDF, img)...)...), 1, "already holds a LUKS2 volume")
	want(t, ctl(t, nil, append([]string{"add-key", "--key-file", k1, "--new-key-file", k2}, append(fastKDF, img)...)...), 0, "keyslot 1")
	want(t, ctl(t, nil, append([]string{"add-key", "--key-file", k3, "--new-key-file", k2}, append(fastKDF, img)...)...), 1, "passphrase")
	want(t, ctl(t, nil, append([]string{"change-key", "--key-file", k2, "--new-key-file", k3}, append(fastKDF, img)...)...), 0, "keyslot 1 changed")
	want(t, ctl(t, nil, "remove-key", "--key-file", k1, img), 0, "keyslot 0 removed")
	want(t, ctl(t, nil, "remove-key", "--slot", "1", img), 1, "last keyslot")

	dump := ctl(t, nil, "dump", img)
	want(t, dump, 0, "1: luks2")
	if strings.Contains(dump.out, "0: luks2") || strings.Contains(dump.out, "passphrase") {
		t.Fatalf("dump:\n%s", dump.out)
	}

	backup := filepath.Join(dir, "hdr.backup")
	want(t, ctl(t, nil, "header-backup", img, backup), 0, "header saved")
	want(t, ctl(t, nil, "header-backup", img, backup), 1, "must not exist")
	want(t, ctl(t, nil, "erase", img), 1, "add --yes")
	want(t, ctl(t, nil, "erase", "--yes", img), 0, "all keyslots destroyed")
	want(t, ctl(t, nil, append([]string{"add-key", "--key-file", k3, "--new-key-file", k1}, append(fastKDF, img)...)...), 1, "")
	want(t, ctl(t, nil, "header-restore", img, backup), 1, "add --yes")
	want(t, ctl(t, nil, "header-restore", "--yes", img, backup), 0, "header restored")
	want(t, ctl(t, nil, append([]string{"add-key", "--key-file", k3, "--new-key-file", k1}, append(fastKDF, img)...)...), 0, "passphrase added")
}

func TestPassphrasePrompts(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "vol.img")
	args := append([]string{"format", "--size", "32MiB"}, append(fastKDF, img)...)
	want(t, ctl(t, nil, args...), 1, "not a terminal")
	want(t, ctl(t, []string{"typed once", "typed twice"}, args...), 1, "do not match")
	want(t, ctl(t, []string{"same", "same"}, args...), 0, "LUKS2 volume")
	k := keyFile(t, dir, "k", "same")
	want(t, ctl(t, nil, append([]string{"add-key", "--key-file", k, "--new-key-file", k}, append(fastKDF, img)...)...), 0, "passphrase added")
}

func TestUsage(t *testing.T) {
	want(t, ctl(t, nil), 2, "usage: hastorctl COMMAND")
	want(t, ctl(t, nil, "frobnicate"), 2, "unknown command")
	want(t, ctl(t, nil, "dump"), 2, "want 1 arguments")
	want(t, ctl(t, nil, "remove-key", "--slot", "1", "--key-file", "x", "img"), 2, "not both")
	want(t, ctl(t, nil, "dump", "/nonexistent/img"), 1, "no such file")
	want(t, ctl(t, nil, "status", "--socket", filepath.Join(t.TempDir(), "none.sock")), 1, "is it running")
}

// The real binary reads a passphrase from a terminal without echoing it.
func TestTerminalPassphraseIsNotEchoed(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hastorctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	master, slave := openPTY(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "vol.img")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"format", "--size", "32MiB"}, append(fastKDF, img)...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	expect := func(s string) {
		t.Helper()
		for !strings.Contains(seen.String(), s) {
			master.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, err := master.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %q: %v; terminal showed %q", s, err, seen.String())
			}
			seen.Write(buf[:n])
		}
	}
	expect("Passphrase for " + img + ": ")
	master.Write([]byte("tty secret\n"))
	expect("Verify Passphrase")
	master.Write([]byte("tty secret\n"))
	expect("LUKS2 volume")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("hastorctl: %v; terminal showed %q", err, seen.String())
	}
	if strings.Contains(seen.String(), "tty secret") {
		t.Fatalf("the passphrase was echoed: %q", seen.String())
	}
	k := keyFile(t, dir, "k", "tty secret")
	want(t, ctl(t, nil, append([]string{"add-key", "--key-file", k, "--new-key-file", k}, append(fastKDF, img)...)...), 0, "passphrase added")
}

// openPTY returns a new pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// Two header writers never run at once; the second is told why.
func TestHeaderLock(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "vol.img")
	k := keyFile(t, dir, "k", "pass")
	want(t, ctl(t, nil, append([]string{"format", "--size", "32MiB", "--key-file", k}, append(fastKDF, img)...)...), 0, "LUKS2 volume")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lockHeader(f); err != nil {
		t.Fatal(err)
	}
	want(t, ctl(t, nil, "erase", "--yes", img), 1, "another hastorctl")
	want(t, ctl(t, nil, "dump", img), 0, "0: luks2")
}
