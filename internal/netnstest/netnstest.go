package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// namePrefix starts the name of every namespace and interface made here.
	namePrefix = "hst-"
	// maxIfName is the longest Linux interface name (IFNAMSIZ-1).
	maxIfName = 15
	// netnsDir is where ip netns keeps its named namespaces.
	netnsDir = "/run/netns"
	// cmdTimeout bounds every ip/tc command the helper runs itself.
	cmdTimeout = 30 * time.Second
	// runTimeout bounds NS.Run.
	runTimeout = 2 * time.Minute
)

// Net is the set of namespaces and links made by one test. Everything is
// removed in t.Cleanup.
type Net struct {
	t      testing.TB
	ipPath string
	prefix string // "hst-" + 6 hex digits, unique on this host

	mu struct {
		sync.Mutex
		namespaces []*NS
		links      int
		closers    []io.Closer // sockets made by DialContext and Listen
		closed     bool
	}
}

// New makes an empty Net for t. It fails (CI set) or skips the test when
// it does not run as root or ip is missing.
func New(t testing.TB) *Net {
	t.Helper()
	requireRoot(t)
	ipPath := requireTool(t, "ip")
	warmUpNet()
	prefix, err := uniquePrefix()
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	n := &Net{t: t, ipPath: ipPath, prefix: prefix}
	t.Cleanup(n.cleanup)
	return n
}

// warmUpNet makes the net package probe the IP stack's capabilities (it
// does so once per process, on the first socket) in the host namespace
// rather than inside a test namespace.
func warmUpNet() {
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
}

// uniquePrefix returns "hst-" and a random suffix that no named namespace
// on this host starts with.
func uniquePrefix() (string, error) {
	var b [3]byte
	for range 16 {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		p := namePrefix + hex.EncodeToString(b[:])
		if !prefixInUse(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no unused namespace prefix in %s", netnsDir)
}

func prefixInUse(p string) bool {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), p) {
			return true
		}
	}
	return false
}

// Prefix returns the prefix shared by the names of this Net's namespaces
// and interfaces.
func (n *Net) Prefix() string { return n.prefix }

// Namespace creates a network namespace with the loopback interface up.
// name is a short label (letters, digits, '-', '_', at most 16
// characters); the real namespace name is NS.Name.
func (n *Net) Namespace(name string) *NS {
	n.t.Helper()
	if !validLabel(name) {
		n.t.Fatalf("netnstest: bad namespace label %q", name)
	}
	ns := &NS{net: n, name: n.prefix + "-" + name}
	ns.path = netnsDir + "/" + ns.name
	n.mu.Lock()
	for _, o := range n.mu.namespaces {
		if o.name == ns.name {
			n.mu.Unlock()
			n.t.Fatalf("netnstest: namespace %q made twice", name)
		}
	}
	n.mu.Unlock()
	n.mustIP("netns", "add", ns.name)
	n.mu.Lock()
	n.mu.namespaces = append(n.mu.namespaces, ns)
	n.mu.Unlock()
	n.mustIP("-n", ns.name, "link", "set", "dev", "lo", "up")
	return ns
}

func validLabel(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// Link joins a and b with a veth pair, assigns addrA in a and addrB in b
// (CIDR notation, e.g. "10.77.1.1/24" and "10.77.1.2/24"; IPv6 addresses
// are added without duplicate address detection so they work at once),
// brings both ends up and returns a handle. Each end lives only in its
// namespace; it never appears in the host namespace.
func (n *Net) Link(a *NS, addrA string, b *NS, addrB string) *Link {
	n.t.Helper()
	if a == nil || b == nil || a.net != n || b.net != n {
		n.t.Fatal("netnstest: Link needs two namespaces of this Net")
	}
	if a == b {
		n.t.Fatalf("netnstest: Link needs two different namespaces, got %s twice", a.name)
	}
	pa, err := parsePrefix(addrA)
	if err != nil {
		n.t.Fatalf("netnstest: %v", err)
	}
	pb, err := parsePrefix(addrB)
	if err != nil {
		n.t.Fatalf("netnstest: %v", err)
	}
	n.mu.Lock()
	n.mu.links++
	idx := n.mu.links
	n.mu.Unlock()
	l := &Link{
		net: n, a: a, b: b,
		ifA:   n.prefix + strconv.Itoa(idx) + "a",
		ifB:   n.prefix + strconv.Itoa(idx) + "b",
		addrA: pa, addrB: pb,
	}
	if len(l.ifB) > maxIfName {
		n.t.Fatalf("netnstest: too many links (interface name %q is longer than %d)", l.ifB, maxIfName)
	}
	// Run in a: the first end is made there and the peer directly in b.
	n.mustIP("-n", a.name, "link", "add", "name", l.ifA, "type", "veth", "peer", "name", l.ifB, "netns", b.name)
	n.mustIP(addrArgs(a.name, l.ifA, pa)...)
	n.mustIP(addrArgs(b.name, l.ifB, pb)...)
	l.Up()
	return l
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: want CIDR notation like 10.77.1.1/24: %w", s, err)
	}
	if !p.Addr().IsValid() || p.Addr().IsUnspecified() {
		return netip.Prefix{}, fmt.Errorf("address %q is not a host address", s)
	}
	return p, nil
}

func addrArgs(ns, dev string, p netip.Prefix) []string {
	args := []string{"-n", ns, "addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() && !p.Addr().Is4In6() {
		args = append(args, "nodad")
	}
	return args
}

// ip runs the ip command with args and returns its combined output.
func (n *Net) ip(args ...string) (string, error) {
	return run(n.ipPath, args...)
}

func run(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", prog, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (n *Net) mustIP(args ...string) string {
	n.t.Helper()
	out, err := n.ip(args...)
	if err != nil {
		n.t.Fatalf("netnstest: %v", err)
	}
	return out
}

// track registers a socket to close at cleanup.
func (n *Net) track(c io.Closer) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		return ErrClosed
	}
	n.mu.closers = append(n.mu.closers, c)
	return nil
}

// cleanup closes the tracked sockets, kills what still runs in the
// namespaces and deletes them (which destroys their veth ends).
func (n *Net) cleanup() {
	n.mu.Lock()
	n.mu.closed = true
	closers, namespaces := n.mu.closers, n.mu.namespaces
	n.mu.closers, n.mu.namespaces = nil, nil
	n.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i].Close()
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		ns := namespaces[i]
		n.killAll(ns)
		if _, err := n.ip("netns", "del", ns.name); err != nil {
			n.t.Errorf("netnstest: cleanup: %v", err)
		}
	}
}

// killAll SIGKILLs every process left in ns (not this test process, whose
// main thread may be briefly inside ns during a DialContext or Listen).
func (n *Net) killAll(ns *NS) {
	out, err := n.ip("netns", "pids", ns.name)
	if err != nil {
		n.t.Errorf("netnstest: cleanup: %v", err)
		return
	}
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		n.t.Logf("netnstest: cleanup: killing pid %d left in %s", pid, ns.name)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Link is a veth pair joining two namespaces.
type Link struct {
	net          *Net
	a, b         *NS
	ifA, ifB     string
	addrA, addrB netip.Prefix
}

// Down sets both ends down, like pulling the cable: packets stop, the
// routes through the link disappear (dials to the peer fail with "network
// is unreachable" or time out), established TCP connections stall and
// retransmit but are not reset.
func (l *Link) Down() {
	l.net.t.Helper()
	l.net.mustIP("-n", l.a.name, "link", "set", "dev", l.ifA, "down")
	l.net.mustIP("-n", l.b.name, "link", "set", "dev", l.ifB, "down")
}

// Up sets both ends up again; IPv4 addresses and their routes come back.
func (l *Link) Up() {
	l.net.t.Helper()
	l.net.mustIP("-n", l.a.name, "link", "set", "dev", l.ifA, "up")
	l.net.mustIP("-n", l.b.name, "link", "set", "dev", l.ifB, "up")
}

// SetRate limits the traffic leaving each end to bitsPerSecond with a tc
// token bucket filter (tbf) as the root qdisc of both ends; 0 removes the
// limit. The bucket holds 10 ms of traffic (at least 16 KiB) and queues at
// most 500 ms of it; beyond that packets are dropped and TCP retransmits.
// It needs tc (the test fails in CI or skips when it is missing) and the
// kernel's sch_tbf.
func (l *Link) SetRate(bitsPerSecond int64) {
	l.net.t.Helper()
	tc := requireTool(l.net.t, "tc")
	if bitsPerSecond < 0 {
		l.net.t.Fatalf("netnstest: negative rate %d", bitsPerSecond)
	}
	for _, end := range []struct{ ns, dev string }{{l.a.name, l.ifA}, {l.b.name, l.ifB}} {
		var args []string
		if bitsPerSecond == 0 {
			if !hasRootQdisc(tc, end.ns, end.dev, "tbf") {
				continue
			}
			args = []string{"-n", end.ns, "qdisc", "del", "dev", end.dev, "root"}
		} else {
			burst := max(bitsPerSecond/8/100, 16<<10)
			args = []string{"-n", end.ns, "qdisc", "replace", "dev", end.dev, "root", "tbf",
				"rate", strconv.FormatInt(bitsPerSecond, 10) + "bit",
				"burst", strconv.FormatInt(burst, 10), "latency", "500ms"}
		}
		if _, err := run(tc, args...); err != nil {
			l.net.t.Fatalf("netnstest: %v", err)
		}
	}
}

func hasRootQdisc(tc, ns, dev, kind string) bool {
	out, err := run(tc, "-n", ns, "qdisc", "show", "dev", dev, "root")
	return err == nil && strings.Contains(out, "qdisc "+kind+" ")
}

// A returns the namespace of the first end.
func (l *Link) A() *NS { return l.a }

// B returns the namespace of the second end.
func (l *Link) B() *NS { return l.b }

// AddrA returns the IP address of the first end, without prefix length.
func (l *Link) AddrA() string { return l.addrA.Addr().String() }

// AddrB returns the IP address of the second end, without prefix length.
func (l *Link) AddrB() string { return l.addrB.Addr().String() }

// IfA returns the interface name of the first end (inside A).
func (l *Link) IfA() string { return l.ifA }

// IfB returns the interface name of the second end (inside B).
func (l *Link) IfB() string { return l.ifB }
