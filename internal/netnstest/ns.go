package netnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var (
	// ErrNotNumeric reports an address whose host is not an IP literal.
	ErrNotNumeric = errors.New("netnstest: address must be a numeric IP and port")
	// ErrNetwork reports a network other than tcp, tcp4, tcp6 (or udp*
	// for DialContext).
	ErrNetwork = errors.New("netnstest: unsupported network")
	// ErrRestore reports that the thread could not return to its own
	// network namespace; the thread was discarded.
	ErrRestore = errors.New("netnstest: cannot restore the thread's network namespace")
	// ErrClosed reports a socket requested after the Net was cleaned up.
	ErrClosed = errors.New("netnstest: net already cleaned up")
)

// NS is a network namespace made by Net.Namespace.
type NS struct {
	net  *Net
	name string // real netns name
	path string // bind mount under /run/netns
}

// Name returns the real namespace name (as ip netns knows it).
func (ns *NS) Name() string { return ns.name }

// Command returns a command that runs name with args inside the namespace
// (ip netns exec). ip execs the program, so the process started is the
// program itself and cmd.Process, cancellation by ctx and signals reach it.
// The caller starts, waits for and stops it.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, ns.net.ipPath, append([]string{"netns", "exec", ns.name, name}, args...)...)
}

// Run runs name with args inside the namespace, waits at most two minutes
// and returns its combined output; it fails the test, with the output,
// when the program fails.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	out, err := ns.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netnstest: in %s: %s %s: %v\n%s", ns.name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// DialContext connects to addr from inside the namespace, from this
// process: the socket is created in the namespace and stays there. addr
// must be a numeric "ip:port" (a host name would be resolved on other
// threads, outside the namespace). The connection is closed at cleanup if
// the caller has not closed it.
func (ns *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("%w: %q", ErrNetwork, network)
	}
	if err := checkNumeric(addr, false); err != nil {
		return nil, err
	}
	var conn net.Conn
	err := ns.inNetns(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("netnstest: dial %s %s in %s: %w", network, addr, ns.name, err)
	}
	if err := ns.net.track(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Listen opens a listener inside the namespace, from this process. addr
// is "ip:port" with a numeric IP, or ":port" for every address of the
// namespace; port 0 picks a free port. The listener is closed at cleanup if
// the caller has not closed it; accepted connections are the caller's.
func (ns *NS) Listen(network, addr string) (net.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("%w: %q", ErrNetwork, network)
	}
	if err := checkNumeric(addr, true); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := ns.inNetns(func() error {
		var lc net.ListenConfig
		l, err := lc.Listen(context.Background(), network, addr)
		ln = l
		return err
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("netnstest: listen %s %s in %s: %w", network, addr, ns.name, err)
	}
	if err := ns.net.track(ln); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// checkNumeric accepts "ip:port" (and ":port" when emptyHost).
func checkNumeric(addr string, emptyHost bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrNotNumeric, addr, err)
	}
	if host == "" && emptyHost {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%w: %q", ErrNotNumeric, addr)
	}
	return nil
}

// inNetns runs f on a fresh goroutine locked to its OS thread while that
// thread is in the namespace. The caller's own thread never changes
// namespace.
func (ns *NS) inNetns(f func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- ns.runLocked(f) }()
	return <-errc
}

// runLocked must be the whole body of its goroutine: when the thread
// cannot return to its namespace it stays locked, and the runtime ends a
// thread whose goroutine exits while locked, so no other goroutine ever
// runs in the wrong namespace. Threads the runtime creates while this one
// is locked are cloned from a clean template thread, not from this one.
func (ns *NS) runLocked(f func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open %s: %w", ns.path, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		// setns changes nothing when it fails: the thread is clean.
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns.path, err)
	}
	ferr := f()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Keep the thread locked: it dies with this goroutine.
		return errors.Join(ferr, fmt.Errorf("%w: %w", ErrRestore, err))
	}
	runtime.UnlockOSThread()
	return ferr
}
