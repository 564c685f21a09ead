package netnstest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// echo serves ln until it is closed: every connection gets back each line
// it sends, prefixed with the local address the connection arrived on.
func echo(t *testing.T, ln net.Listener) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				local := c.LocalAddr().(*net.TCPAddr).IP.String()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, local+" "+line); err != nil {
						return
					}
				}
			})
		}
	})
}

// roundTrip dials addr from ns, sends a line and checks the echo.
func roundTrip(t *testing.T, ns *NS, addr, wantLocal, wantServer string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != wantLocal {
		t.Errorf("dial %s: local address %s, want %s", addr, got, wantLocal)
	}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := wantServer + " hello\n"; line != want {
		t.Errorf("dial %s: got %q, want %q", addr, line, want)
	}
}

// twoNodes makes namespaces a and b joined by two links.
func twoNodes(t *testing.T) (n *Net, a, b *NS, l1, l2 *Link) {
	n = New(t)
	a, b = n.Namespace("a"), n.Namespace("b")
	l1 = n.Link(a, "10.77.1.1/24", b, "10.77.1.2/24")
	l2 = n.Link(a, "10.77.2.1/24", b, "10.77.2.2/24")
	return n, a, b, l1, l2
}

func TestTwoLinks(t *testing.T) {
	_, a, b, l1, l2 := twoNodes(t)
	ln, err := b.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, ln)
	port := portOf(ln)
	roundTrip(t, a, net.JoinHostPort(l1.AddrB(), port), l1.AddrA(), l1.AddrB())
	roundTrip(t, a, net.JoinHostPort(l2.AddrB(), port), l2.AddrA(), l2.AddrB())
	// b reaches its own listener over its own loopback.
	roundTrip(t, b, net.JoinHostPort("127.0.0.1", port), "127.0.0.1", "127.0.0.1")
}

func portOf(ln net.Listener) string {
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func TestDownUp(t *testing.T) {
	_, a, b, l1, l2 := twoNodes(t)
	ln, err := b.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, ln)
	port := portOf(ln)
	addr1 := net.JoinHostPort(l1.AddrB(), port)

	// A connection made before the cable pull survives it (no reset).
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	old, err := a.DialContext(ctx, "tcp", addr1)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	r := bufio.NewReader(old)

	l1.Down()
	dctx, dcancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	c, err := a.DialContext(dctx, "tcp", addr1)
	dcancel()
	if err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded with the link down", addr1)
	}
	t.Logf("dial with link down: %v", err)
	// The other link is independent.
	roundTrip(t, a, net.JoinHostPort(l2.AddrB(), port), l2.AddrA(), l2.AddrB())
	// Written while down: stalls in the send queue, delivered after Up.
	if _, err := io.WriteString(old, "late\n"); err != nil {
		t.Fatalf("write on stalled connection: %v", err)
	}

	l1.Up()
	roundTrip(t, a, addr1, l1.AddrA(), l1.AddrB())
	if err := old.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("old connection after Up: %v", err)
	}
	if want := l1.AddrB() + " late\n"; line != want {
		t.Errorf("old connection: got %q, want %q", line, want)
	}
}

func TestCommand(t *testing.T) {
	_, a, b, l1, _ := twoNodes(t)
	out, err := a.Command(t.Context(), "ip", "-brief", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), l1.AddrA()+"/24") || strings.Contains(string(out), l1.AddrB()+"/") {
		t.Errorf("ip addr in a: want %s and not %s:\n%s", l1.AddrA(), l1.AddrB(), out)
	}
	if !strings.Contains(string(out), l1.IfA()) {
		t.Errorf("ip addr in a: no interface %s:\n%s", l1.IfA(), out)
	}
	out2 := b.Run(t, "ip", "-brief", "link", "show", "lo")
	if !strings.Contains(out2, "UP") && !strings.Contains(out2, "UNKNOWN") {
		t.Errorf("lo in b is not up:\n%s", out2)
	}
}

// TestCleanup checks that namespaces, and with them the links and the
// processes left running in them, are gone once the test that made them
// ends.
func TestCleanup(t *testing.T) {
	var names []string
	var ifs []string
	var pid int
	t.Run("inner", func(t *testing.T) {
		_, a, b, l1, l2 := twoNodes(t)
		names = []string{a.Name(), b.Name()}
		ifs = []string{l1.IfA(), l1.IfB(), l2.IfA(), l2.IfB()}
		for _, name := range names {
			if len(name) > maxIfName || !strings.HasPrefix(name, namePrefix) {
				t.Errorf("namespace name %q", name)
			}
		}
		// A process the test "forgot" to stop.
		cmd := a.Command(context.Background(), "sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid = cmd.Process.Pid
		// Reap it once killed so no zombie is left.
		go cmd.Wait()
		if _, err := a.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	if len(names) == 0 {
		t.Fatal("inner test did not run")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	for _, name := range names {
		if strings.Contains(string(out), name) {
			t.Errorf("namespace %s still listed:\n%s", name, out)
		}
		if _, err := os.Stat(netnsDir + "/" + name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s/%s: %v", netnsDir, name, err)
		}
	}
	for _, ifname := range ifs {
		if _, err := net.InterfaceByName(ifname); err == nil {
			t.Errorf("interface %s exists in the host namespace", ifname)
		}
	}
	if err := waitGone(pid); err != nil {
		t.Error(err)
	}
}

// waitGone waits until pid has exited (was killed by cleanup and reaped).
func waitGone(pid int) error {
	for range 1000 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("process left in the namespace still runs after cleanup")
}

func TestSetRate(t *testing.T) {
	_, a, b, l1, _ := twoNodes(t)
	ln, err := b.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, ln)
	addr := net.JoinHostPort(l1.AddrB(), portOf(ln))
	l1.SetRate(50_000_000)
	for _, q := range []struct {
		ns  *NS
		dev string
	}{{a, l1.IfA()}, {b, l1.IfB()}} {
		if out := q.ns.Run(t, "tc", "qdisc", "show", "dev", q.dev, "root"); !strings.Contains(out, "tbf") {
			t.Errorf("%s: no tbf qdisc:\n%s", q.dev, out)
		}
	}
	roundTrip(t, a, addr, l1.AddrA(), l1.AddrB())
	l1.SetRate(0)
	if out := a.Run(t, "tc", "qdisc", "show", "dev", l1.IfA(), "root"); strings.Contains(out, "tbf") {
		t.Errorf("tbf still there after SetRate(0):\n%s", out)
	}
	l1.SetRate(0) // no-op
	roundTrip(t, a, addr, l1.AddrA(), l1.AddrB())
}

// TestThreadsStayHome dials and listens from many goroutines at once and
// then checks that no thread of this process was left in a test
// namespace.
func TestThreadsStayHome(t *testing.T) {
	home := netnsOfThread(t)
	_, a, b, l1, _ := twoNodes(t)
	ln, err := b.Listen("tcp", l1.AddrB()+":0")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, ln)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := a.DialContext(ctx, "tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
			l, err := a.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Error(err)
				return
			}
			l.Close()
		})
	}
	wg.Wait()
	// Every OS thread of the process, not just this goroutine's.
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got, err := os.Readlink("/proc/self/task/" + e.Name() + "/ns/net")
		if err != nil {
			continue // thread exited meanwhile
		}
		if got != home {
			t.Errorf("thread %s is in %s, want %s", e.Name(), got, home)
		}
	}
}

func netnsOfThread(t *testing.T) string {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBadAddresses(t *testing.T) {
	n := New(t)
	a := n.Namespace("a")
	if _, err := a.DialContext(t.Context(), "tcp", "localhost:80"); !errors.Is(err, ErrNotNumeric) {
		t.Errorf("dial host name: %v, want ErrNotNumeric", err)
	}
	if _, err := a.DialContext(t.Context(), "unix", "/x"); !errors.Is(err, ErrNetwork) {
		t.Errorf("dial unix: %v, want ErrNetwork", err)
	}
	if _, err := a.Listen("tcp", "example.com:0"); !errors.Is(err, ErrNotNumeric) {
		t.Errorf("listen host name: %v, want ErrNotNumeric", err)
	}
	// Nothing listens in a: refused, not reaching the host's loopback.
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if c, err := a.DialContext(ctx, "tcp", hostLn.Addr().String()); err == nil {
		c.Close()
		t.Error("namespace a reached the host's loopback listener")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial host loopback from a: %v, want connection refused", err)
	}
}
