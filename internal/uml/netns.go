package uml

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Default addresses of the tap link: a private /30 that exists only inside
// the namespace, so concurrent runs in other namespaces may reuse it.
var (
	defaultHostAddr  = netip.MustParsePrefix("10.213.0.1/30")
	defaultGuestAddr = netip.MustParsePrefix("10.213.0.2/30")
)

// TapName is the tap device in every namespace (names are per namespace).
const TapName = "umltap0"

// namePrefix starts every namespace this package creates; the creator's pid
// follows, so namespaces left by a killed test can be found and removed.
const namePrefix = "hastor-uml-"

// netnsDir is where "ip netns" keeps its namespace handles.
const netnsDir = "/run/netns"

// ErrNetns reports a failure to set up, enter or remove a namespace.
var ErrNetns = errors.New("uml: network namespace")

// NetnsConfig chooses the namespace name and link addresses; the zero value
// gives a fresh unique name and the default addresses.
type NetnsConfig struct {
	// Name of the namespace; default "hastor-uml-<pid>-<random>".
	Name string
	// HostAddr is the tap's address inside the namespace, where the target
	// listens; default 10.213.0.1/30.
	HostAddr netip.Prefix
	// GuestAddr is the guest's eth0 address, in the same subnet as
	// HostAddr; default 10.213.0.2/30.
	GuestAddr netip.Prefix
}

// Netns is a network namespace holding the tap device the guest's eth0 is
// attached to. Its fields are read-only after creation.
type Netns struct {
	Name      string
	Tap       string
	HostAddr  netip.Prefix
	GuestAddr netip.Prefix
}

// NewNetns creates a namespace for the test and removes it when the test
// ends (after the processes started with [Netns.Start], which are stopped
// first because their cleanups were registered later).
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := CreateNetns(ctx, NetnsConfig{})
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return n
}

// CreateNetns creates the namespace and its tap device. The caller must
// Close it. With an empty cfg.Name it first removes namespaces left behind
// by test processes that no longer exist.
func CreateNetns(ctx context.Context, cfg NetnsConfig) (*Netns, error) {
	if cfg.Name == "" {
		removeStale(ctx)
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNetns, err)
		}
		cfg.Name = fmt.Sprintf("%s%d-%s", namePrefix, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if !cfg.HostAddr.IsValid() {
		cfg.HostAddr = defaultHostAddr
	}
	if !cfg.GuestAddr.IsValid() {
		cfg.GuestAddr = defaultGuestAddr
	}
	if !cfg.HostAddr.Addr().Is4() || cfg.HostAddr.Masked() != cfg.GuestAddr.Masked() ||
		cfg.HostAddr.Addr() == cfg.GuestAddr.Addr() {
		return nil, fmt.Errorf("%w: host %v and guest %v must be distinct IPv4 addresses of one subnet",
			ErrNetns, cfg.HostAddr, cfg.GuestAddr)
	}
	n := &Netns{Name: cfg.Name, Tap: TapName, HostAddr: cfg.HostAddr, GuestAddr: cfg.GuestAddr}
	if err := ipCmd(ctx, "netns", "add", n.Name); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "tuntap", "add", "dev", n.Tap, "mode", "tap"},
		{"-n", n.Name, "addr", "add", n.HostAddr.String(), "dev", n.Tap},
		{"-n", n.Name, "link", "set", n.Tap, "up"},
	}
	for _, args := range steps {
		if err := ipCmd(ctx, args...); err != nil {
			return nil, errors.Join(err, n.Close())
		}
	}
	return n, nil
}

// Close kills any process still in the namespace and deletes it.
func (n *Netns) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	killNetnsPids(ctx, n.Name)
	return ipCmd(ctx, "netns", "del", n.Name)
}

// HostIP is HostAddr without the prefix length: where the target listens.
func (n *Netns) HostIP() netip.Addr { return n.HostAddr.Addr() }

// Command returns a command that runs name with args in the namespace (via
// "ip netns exec"), in its own process group. Cancelling ctx kills the whole
// group. The caller starts and waits for it.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// Do runs fn on an OS thread that has entered the namespace, so sockets fn
// creates belong to it (and stay there after Do returns).
func (n *Netns) Do(fn func() error) error {
	target, err := os.Open(filepath.Join(netnsDir, n.Name))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNetns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only if it returns to the original
		// namespace; otherwise it exits with this goroutine.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: %w", ErrNetns, err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: setns %s: %w", ErrNetns, n.Name, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("%w: restore: %w", ErrNetns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Listen opens a listener inside the namespace, e.g. Listen("tcp",
// netip.AddrPortFrom(n.HostIP(), 0).String()) for an in-process target.
func (n *Netns) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// Dial connects from inside the namespace.
func (n *Netns) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// WaitListening polls until a TCP connection to addr inside the namespace
// succeeds (a daemon started with Start is ready) or ctx ends.
func (n *Netns) WaitListening(ctx context.Context, addr netip.AddrPort) error {
	for {
		c, err := n.Dial(ctx, "tcp", addr.String())
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("uml: %v not listening in %s: %w (last: %w)", addr, n.Name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreePort returns a TCP port free on HostIP. Only this test's processes
// live in the namespace, so it stays free until the caller binds it.
func (n *Netns) FreePort() (uint16, error) {
	l, err := n.Listen("tcp", netip.AddrPortFrom(n.HostIP(), 0).String())
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}

// ipCmd runs ip(8) with args.
func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: ip %s: %w: %s", ErrNetns, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// killNetnsPids SIGKILLs every process in the named namespace.
func killNetnsPids(ctx context.Context, name string) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeStale deletes namespaces named namePrefix<pid>-... whose creating
// process is gone (a test killed before its cleanups ran).
func removeStale(ctx context.Context) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		killNetnsPids(ctx, e.Name())
		_ = ipCmd(ctx, "netns", "del", e.Name())
	}
}

// killGroup SIGKILLs the process group of a started command (its Setpgid
// made the group id equal to its pid).
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
