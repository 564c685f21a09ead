package uml

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This file proves the harness against Debian's tgt, a known-good target;
// hastord's tests follow the same shape.

// tgt is a tgtd running in a test namespace.
type tgt struct {
	t    testing.TB
	ns   *Netns
	ctl  int // tgtd management "control port" (names its unix socket)
	proc *Process
}

// startTgt starts tgtd in ns with its iSCSI portal on ns.HostIP():port.
func startTgt(t testing.TB, ns *Netns, port uint16) *tgt {
	t.Helper()
	ctl := freeTgtControlPort(t)
	portal := netip.AddrPortFrom(ns.HostIP(), port).String()
	g := &tgt{t: t, ns: ns, ctl: ctl}
	g.proc = ns.Start(t, "tgtd", "-f", "-C", strconv.Itoa(ctl), "--iscsi", "portal="+portal)
	t.Cleanup(func() {
		// tgtd ignores SIGTERM while it has targets; its state is disposable.
		_ = g.proc.Kill()
		// It also leaves its management socket behind.
		sock := fmt.Sprintf("/var/run/tgtd/socket.%d", ctl)
		_ = os.Remove(sock)
		_ = os.Remove(sock + ".lock")
	})
	// Wait until the management socket answers (bounded, not a timed
	// assertion: failure means tgtd did not come up at all).
	for i := 0; ; i++ {
		select {
		case <-g.proc.Done():
			t.Fatalf("tgtd exited: %v\n%s", g.proc.Err(), g.proc.Output())
		default:
		}
		if _, err := g.adm("--op", "show", "--mode", "sys"); err == nil {
			break
		} else if i == 200 {
			t.Fatalf("tgtd management socket: %v\n%s", err, g.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return g
}

// freeTgtControlPort picks a control port whose lock file no tgtd holds
// (other tgtd instances may run on the host).
func freeTgtControlPort(t testing.TB) int {
	t.Helper()
	if err := os.MkdirAll("/var/run/tgtd", 0o755); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		port := 1000 + rand.IntN(32767-1000) // tgtd accepts up to 32767
		f, err := os.OpenFile(fmt.Sprintf("/var/run/tgtd/socket.%d.lock", port), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 1}
		err = syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk)
		f.Close()
		if err == nil && lk.Type == syscall.F_UNLCK {
			return port
		}
	}
	t.Fatal("no free tgtd control port")
	return 0
}

// adm runs tgtadm against this tgtd.
func (g *tgt) adm(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := g.ns.Command(ctx, "tgtadm", append([]string{"-C", strconv.Itoa(g.ctl), "--lld", "iscsi"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tgtadm %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

func (g *tgt) mustAdm(args ...string) {
	g.t.Helper()
	if _, err := g.adm(args...); err != nil {
		g.t.Fatal(err)
	}
}

// addTarget creates target tid with a sizeMiB LUN 1 backed by a file in dir.
func (g *tgt) addTarget(tid int, iqn, dir string, sizeMiB int64) {
	g.t.Helper()
	img := filepath.Join(dir, fmt.Sprintf("lun-%d.img", tid))
	f, err := os.Create(img)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		g.t.Fatal(err)
	}
	f.Close()
	id := strconv.Itoa(tid)
	g.mustAdm("--op", "new", "--mode", "target", "--tid", id, "-T", iqn)
	g.mustAdm("--op", "new", "--mode", "logicalunit", "--tid", id, "--lun", "1", "-b", img)
	g.mustAdm("--op", "bind", "--mode", "target", "--tid", id, "-I", "ALL")
}

// addAccount creates a CHAP account and binds it to tid (outgoing: the
// target's own credentials for mutual CHAP).
func (g *tgt) addAccount(tid int, user, secret string, outgoing bool) {
	g.t.Helper()
	g.mustAdm("--op", "new", "--mode", "account", "--user", user, "--password", secret)
	args := []string{"--op", "bind", "--mode", "account", "--tid", strconv.Itoa(tid), "--user", user}
	if outgoing {
		args = append(args, "--outgoing")
	}
	g.mustAdm(args...)
}

// tgtGuestScript is the guest side of TestKernelInitiatorAgainstTgt.
const tgtGuestScript = `
P=$HOST_IP:$PORT
step iscsid
iscsi_start
step discovery
iscsi_discover "$P"

# One-way CHAP: a wrong secret is refused, the right one works; no digests.
step chap-wrong-secret
iscsi_node_new "$T2" "$P"
iscsi_chap "$T2" "$P" "$USER2" wrong-secret-0123
if iscsi_login "$T2" "$P"; then fail "login with a wrong CHAP secret succeeded"; fi
step chap-oneway
iscsi_chap "$T2" "$P" "$USER2" "$SECRET2"
iscsi_login "$T2" "$P"
iscsi_expect_digests "$T2" off
d=$(iscsi_disk "$T2")
check_pattern "$d" 4
iscsi_logout "$T2" "$P"

# Mutual CHAP: the initiator refuses a target that proves the wrong secret.
step chap-mutual-wrong-target-secret
iscsi_node_new "$T1" "$P"
iscsi_digests "$T1" "$P" CRC32C
iscsi_chap "$T1" "$P" "$USER1" "$SECRET1" "$USER1_OUT" wrong-secret-0123
if iscsi_login "$T1" "$P"; then fail "login accepted a target with the wrong mutual secret"; fi
step chap-mutual-digests
iscsi_chap "$T1" "$P" "$USER1" "$SECRET1" "$USER1_OUT" "$SECRET1_OUT"
iscsi_login "$T1" "$P"
iscsi_expect_digests "$T1" on
iscsi_logout "$T1" "$P"

suite_full "$T1" "$P"
`

// TestKernelInitiatorAgainstTgt runs Linux's iSCSI initiator in a UML guest
// against tgtd: CHAP one-way and mutual (RFC 7143 §12.1.3), CRC32C header
// and data digests (§13.1), O_DIRECT pattern, fio verify, ext4 across a
// logout/login, fsck.
func TestKernelInitiatorAgainstTgt(t *testing.T) {
	Require(t, "tgtd", "tgtadm")
	start := time.Now()
	rootfs, err := EnsureRootfs(t.Context(), testLogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rootfs %s ready in %.1fs", rootfs, time.Since(start).Seconds())

	ns := NewNetns(t)
	port, err := ns.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	g := startTgt(t, ns, port)
	dir := DiskTempDir(t)
	const (
		t1 = "iqn.2025-01.org.hastor.test:tgt-mutual"
		t2 = "iqn.2025-01.org.hastor.test:tgt-oneway"
	)
	g.addTarget(1, t1, dir, 64)
	g.mustAdm("--op", "update", "--mode", "target", "--tid", "1", "-n", "HeaderDigest", "-v", "CRC32C")
	g.mustAdm("--op", "update", "--mode", "target", "--tid", "1", "-n", "DataDigest", "-v", "CRC32C")
	g.addAccount(1, "user1", "secret1-0123456", false)
	g.addAccount(1, "target1", "tsecret1-012345", true)
	g.addTarget(2, t2, dir, 16)
	g.addAccount(2, "user2", "secret2-0123456", false)

	res := RunT(t, Options{
		Rootfs: rootfs,
		Netns:  ns,
		Script: tgtGuestScript,
		Env: map[string]string{
			"PORT": strconv.Itoa(int(port)),
			"T1":   t1, "USER1": "user1", "SECRET1": "secret1-0123456",
			"USER1_OUT": "target1", "SECRET1_OUT": "tsecret1-012345",
			"T2": t2, "USER2": "user2", "SECRET2": "secret2-0123456",
		},
		Timeout: 3 * time.Minute,
	})
	t.Logf("total test time %.1fs (boot %.2fs, guest %.1fs)",
		time.Since(start).Seconds(), res.Boot.Seconds(), res.Elapsed.Seconds())
}

// TestNetnsListen checks that an in-process listener opened in the
// namespace is reachable from a process in it.
func TestNetnsListen(t *testing.T) {
	Require(t)
	ns := NewNetns(t)
	l, err := ns.Listen("tcp", netip.AddrPortFrom(ns.HostIP(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, err = c.Write([]byte("hello\n"))
			c.Close()
		}
		accepted <- err
	}()
	addr := l.Addr().(*net.TCPAddr)
	// bash's /dev/tcp connects from inside the namespace.
	out, err := ns.Command(t.Context(), "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && cat <&3", addr.IP, addr.Port)).CombinedOutput()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("connect in namespace: %v %q", err, out)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	// WaitListening and Dial reach it from this process (the kernel
	// completes the handshake from the backlog without Accept).
	if err := ns.WaitListening(t.Context(), addr.AddrPort()); err != nil {
		t.Fatal(err)
	}
}

// testLogWriter sends build progress to t.Log line by line.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

// TestRunReportsFailedStep checks the FAIL path without network: the error
// is a *GuestError naming the step, and the guest's own output is kept.
func TestRunReportsFailedStep(t *testing.T) {
	Require(t)
	rootfs, err := EnsureRootfs(t.Context(), testLogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), Options{
		Rootfs:  rootfs,
		Script:  "step first\necho marker-$GREETING\nstep second\nfalse\nstep never\n",
		Env:     map[string]string{"GREETING": "it's me"},
		Timeout: 2 * time.Minute,
	})
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Step != "second" {
		t.Fatalf("got %v, want a GuestError in step second", err)
	}
	if !strings.Contains(res.Console, "marker-it's me") || res.Passed || res.Boot <= 0 {
		t.Fatalf("passed=%v boot=%v console:\n%s", res.Passed, res.Boot, res.Console)
	}
}

// TestRunTimeoutKillsGuest checks that a hung guest is killed with all its
// host processes and reported with its step.
func TestRunTimeoutKillsGuest(t *testing.T) {
	Require(t)
	rootfs, err := EnsureRootfs(t.Context(), testLogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	res, err := Run(t.Context(), Options{
		Rootfs:  rootfs,
		Script:  "step hang\nsleep 3600\n",
		Timeout: 15 * time.Second,
		RunDir:  runDir,
	})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	t.Logf("%v; console has %d bytes", err, len(res.Console))
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "HASTOR_RUN="+runDir) {
			t.Errorf("guest process left behind: %s", p)
		}
	}
}
