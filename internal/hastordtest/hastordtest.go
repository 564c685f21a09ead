// Package hastordtest starts real hastord processes for integration tests:
// it builds the binary once per test binary, writes a configuration file,
// picks free ports, waits until the portal accepts connections and stops
// the daemon (and reports its log on failure) when the test ends.
//
// Callers own the *testing.T; every process started is stopped in
// t.Cleanup.
package hastordtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// build caches the hastord binary for the life of the test binary.
var build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of a hastord built from this checkout (with the
// race detector when the tests run with it).
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "hastord-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(dir, "hastord")
		args := []string{"build", "-o", build.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "hastor/cmd/hastord")
		cmd := exec.Command("go", args...)
		cmd.Dir = moduleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build hastord: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// RequireTool returns the path of an external program. When it is missing
// the test fails in CI (CI is set) and is skipped elsewhere.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required but not installed (run scripts/install-test-deps.sh)", name)
	}
	t.Skipf("%s not installed (run scripts/install-test-deps.sh)", name)
	return ""
}

// RequireRoot fails in CI and skips elsewhere when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root")
	}
	t.Skip("this test needs root")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// DiskDir returns a directory on a filesystem that supports O_DIRECT
// (t.TempDir may be tmpfs, which does not).
func DiskDir(t testing.TB) string {
	t.Helper()
	for _, base := range []string{os.Getenv("HASTOR_TEST_DISK_DIR"), "/var/tmp", os.TempDir()} {
		if base == "" {
			continue
		}
		if err := os.MkdirAll(base, 0o755); err != nil {
			continue
		}
		if !supportsDirect(base) {
			continue
		}
		dir, err := os.MkdirTemp(base, "hastor-test-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	t.Fatal("no directory that supports O_DIRECT; set HASTOR_TEST_DISK_DIR")
	return ""
}

func supportsDirect(dir string) bool {
	f, err := os.CreateTemp(dir, "odirect-probe-")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	fd, err := syscall.Open(name, syscall.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		return false
	}
	syscall.Close(fd)
	return true
}

// Daemon is a running hastord.
type Daemon struct {
	Addr    string // host:port of the first portal
	Config  string // path of the configuration file
	LogPath string
	cmd     *exec.Cmd
	done    chan error
	stopped bool
}

// Options describe a daemon to start.
type Options struct {
	// Config is the YAML configuration. The placeholders {{PORT}} and
	// {{STATE}} are replaced by a free port and a fresh state directory.
	Config string
	// Host is the portal address to wait on (default 127.0.0.1).
	Host string
	// Port, when non-zero, is used instead of a free loopback port.
	Port int
	// Netns, when set, runs the daemon inside that network namespace.
	Netns string
	// StateDir, when set, is used instead of a fresh directory.
	StateDir string
	// Args are extra command-line arguments (e.g. --node NAME).
	Args []string
}

// Start writes the configuration, starts hastord and waits until the
// portal accepts TCP connections.
func Start(t testing.TB, opts Options) *Daemon {
	t.Helper()
	bin := Binary(t)
	dir := DiskDir(t)
	state := opts.StateDir
	if state == "" {
		state = filepath.Join(dir, "state")
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := opts.Port
	if port == 0 {
		port = FreePort(t)
	}
	cfg := strings.NewReplacer("{{PORT}}", strconv.Itoa(port), "{{STATE}}", state).Replace(opts.Config)
	cfgPath := filepath.Join(dir, "hastor.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Addr: net.JoinHostPort(host, strconv.Itoa(port)), Config: cfgPath, LogPath: filepath.Join(dir, "hastord.log")}
	logf, err := os.Create(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{bin, "--config", cfgPath}, opts.Args...)
	if opts.Netns != "" {
		args = append([]string{"ip", "netns", "exec", opts.Netns}, args...)
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Stdout = logf
	d.cmd.Stderr = logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("hastord log (%s):\n%s", d.LogPath, d.Log())
		}
	})
	if err := d.waitReady(opts.Netns, 20*time.Second); err != nil {
		t.Fatalf("hastord did not start: %v\n%s", err, d.Log())
	}
	return d
}

// Log returns the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// PID returns the daemon's process id (of `ip netns exec` when in a
// namespace, which execs hastord in place).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

func (d *Daemon) waitReady(netns string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.done <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		if d.portOpen(netns) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("portal %s not open after %v", d.Addr, timeout)
}

func (d *Daemon) portOpen(netns string) bool {
	if netns == "" {
		c, err := net.DialTimeout("tcp", d.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	host, port, _ := net.SplitHostPort(d.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", netns, "ss", "-Htln", "src", host, "sport", "= :"+port).Output()
	return len(bytes.TrimSpace(out)) > 0
}

// Stop sends SIGTERM and waits for a clean exit; it fails the test if the
// daemon had crashed or does not stop in time.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	d.stop(t)
}

func (d *Daemon) stop(t testing.TB) {
	if d.stopped {
		return
	}
	d.stopped = true
	select {
	case err := <-d.done:
		d.done <- err
		t.Errorf("hastord exited before the test ended: %v\n%s", err, d.Log())
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Errorf("hastord exited with %v\n%s", err, d.Log())
		}
	case <-time.After(30 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		t.Errorf("hastord did not stop within 30s of SIGTERM\n%s", d.Log())
	}
}

// Kill stops the daemon with SIGKILL (a crash).
func (d *Daemon) Kill() {
	d.stopped = true
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	err := <-d.done
	d.done <- err
}

// CheckLog fails the test when the daemon logged a panic or a data race.
func (d *Daemon) CheckLog(t testing.TB) {
	t.Helper()
	l := d.Log()
	for _, bad := range []string{"panic", "WARNING: DATA RACE", "fatal error"} {
		if strings.Contains(l, bad) {
			t.Errorf("hastord log contains %q:\n%s", bad, l)
		}
	}
}
