package uml

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of Options.
const (
	DefaultMemory  = "384M"
	DefaultTimeout = 3 * time.Minute
)

// Console markers printed by scripts/uml/guest/init.sh and iscsi.sh.
const (
	markBooted = "UML-BOOTED"
	markStep   = "UML-STEP: "
	markResult = "UML-RESULT: "
)

var (
	// ErrInvalidOptions reports Options that Run cannot use.
	ErrInvalidOptions = errors.New("uml: invalid options")
	// ErrTimeout reports that the guest did not finish within
	// Options.Timeout and was killed.
	ErrTimeout = errors.New("uml: guest timed out")
	// ErrNoResult reports that the guest stopped without printing a
	// result line (kernel panic, crash of init).
	ErrNoResult = errors.New("uml: guest ended without a result")
	// ErrGuestFailed reports that the guest script failed; the error is a
	// *GuestError naming the step.
	ErrGuestFailed = errors.New("uml: guest script failed")
)

// GuestError is returned when the guest printed "UML-RESULT: FAIL <step>".
type GuestError struct {
	Step string
}

func (e *GuestError) Error() string {
	return fmt.Sprintf("uml: guest script failed in step %q", e.Step)
}

// Is makes errors.Is(err, ErrGuestFailed) true.
func (e *GuestError) Is(target error) bool { return target == ErrGuestFailed }

// Options describe one guest run.
type Options struct {
	// Rootfs is the guest root directory from EnsureRootfs. Required.
	Rootfs string
	// Netns attaches the guest's eth0 to the namespace's tap, with
	// GuestAddr, and runs the kernel inside the namespace. Nil gives a
	// guest without network.
	Netns *Netns
	// Script is the guest workload, POSIX sh run under "set -eu" after
	// the guest library. Required.
	Script string
	// Env adds variables to the script's environment. Names must match
	// [A-Za-z_][A-Za-z0-9_]*.
	Env map[string]string
	// Memory is the guest RAM in the kernel's mem= syntax; default
	// DefaultMemory. It is a sparse host file: only touched pages cost.
	Memory string
	// Timeout bounds the run, boot included; default DefaultTimeout. On
	// expiry the kernel's process group is killed and Run returns
	// ErrTimeout naming the last step.
	Timeout time.Duration
	// Console, if not nil, receives a live copy of the guest console.
	Console io.Writer
	// RunDir is the host directory the guest mounts on /hastor (scripts,
	// env, logs/). Default: a temporary directory removed when Run
	// returns; pass t.TempDir() to keep the guest's logs for the test.
	// The path, like Rootfs, must not contain commas or white space.
	RunDir string
}

// Step is a guest step and when its marker reached the host.
type Step struct {
	Name string
	At   time.Duration // since the kernel process started
}

// Result is what a guest run produced. Run returns it (non-nil) whenever
// the kernel was started, also together with an error.
type Result struct {
	// Console is everything the guest printed (kernel log, script output).
	Console string
	// Passed is true when the guest printed "UML-RESULT: PASS".
	Passed bool
	// Steps lists the steps the script entered, in order.
	Steps []Step
	// Boot is the time from starting the kernel to the guest's init.
	Boot time.Duration
	// Elapsed is the time from starting the kernel to its exit.
	Elapsed time.Duration
	// RunDir is Options.RunDir (holding console.log and the guest's logs/),
	// or empty when Run removed its own.
	RunDir string
}

// LastStep names the last step the guest entered, or "".
func (r *Result) LastStep() string {
	if len(r.Steps) == 0 {
		return ""
	}
	return r.Steps[len(r.Steps)-1].Name
}

// StepDurations gives each step's duration (up to the next step, the last
// one up to the kernel's exit), in order, as "name=1.2s" words.
func (r *Result) StepDurations() string {
	var b strings.Builder
	for i, s := range r.Steps {
		end := r.Elapsed
		if i+1 < len(r.Steps) {
			end = r.Steps[i+1].At
		}
		fmt.Fprintf(&b, "%s=%.1fs ", s.Name, (end - s.At).Seconds())
	}
	return strings.TrimSpace(b.String())
}

var (
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	memorySize = regexp.MustCompile(`^[0-9]+[kKmMgG]$`)
)

// validate applies defaults and reports every problem at once, each
// naming its field.
func (o *Options) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("field %s: "+format, append([]any{field}, args...)...))
	}
	if o.Memory == "" {
		o.Memory = DefaultMemory
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Rootfs == "" {
		bad("Rootfs", "empty (use EnsureRootfs)")
	} else if _, err := os.Stat(filepath.Join(o.Rootfs, "sbin", "hastor-uml-init")); err != nil {
		bad("Rootfs", "not a rootfs from build-rootfs.sh: %v", err)
	}
	if strings.TrimSpace(o.Script) == "" {
		bad("Script", "empty")
	}
	if o.Timeout < 0 {
		bad("Timeout", "%v is negative", o.Timeout)
	}
	if !memorySize.MatchString(o.Memory) {
		bad("Memory", "%q is not like 384M", o.Memory)
	}
	for _, p := range []struct{ name, val string }{{"Rootfs", o.Rootfs}, {"RunDir", o.RunDir}} {
		if strings.ContainsAny(p.val, ", \t\n\"") {
			bad(p.name, "%q contains a comma, quote or white space", p.val)
		}
	}
	for k := range o.Env {
		if !envName.MatchString(k) {
			bad("Env", "name %q is not a shell name", k)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return nil
}

// Run boots the guest, runs opt.Script in it and waits for the guest to
// power off or for opt.Timeout. The error is nil only if the script passed;
// otherwise it wraps ErrGuestFailed (as *GuestError), ErrTimeout,
// ErrNoResult, ErrInvalidOptions, ctx.Err() or a setup failure.
func Run(ctx context.Context, opt Options) (*Result, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	scripts, err := ScriptsDir()
	if err != nil {
		return nil, err
	}
	runDir := opt.RunDir
	if runDir == "" {
		if runDir, err = os.MkdirTemp("", "hastor-uml-run-"); err != nil {
			return nil, fmt.Errorf("uml: run dir: %w", err)
		}
		defer os.RemoveAll(runDir)
	}
	if runDir, err = filepath.Abs(runDir); err != nil {
		return nil, fmt.Errorf("uml: run dir: %w", err)
	}
	if err := prepareRunDir(runDir, scripts, opt); err != nil {
		return nil, err
	}

	args := []string{
		"mem=" + opt.Memory,
		"rootfstype=hostfs", "rootflags=" + opt.Rootfs, "ro",
		"init=/sbin/hastor-uml-init",
		"HASTOR_RUN=" + runDir,
		"con=null", "con0=null,fd:1", "ssl=null",
		"uml_dir=" + runDir,
	}
	runCtx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	var cmd *exec.Cmd
	if opt.Netns != nil {
		args = append(args, "eth0=tuntap,"+opt.Netns.Tap)
		cmd = opt.Netns.Command(runCtx, Kernel, args...)
	} else {
		cmd = exec.CommandContext(runCtx, Kernel, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return killGroup(cmd) }
		cmd.WaitDelay = 10 * time.Second
	}
	cmd.Dir = runDir
	cmd.Env = append(os.Environ(), "TMPDIR="+memoryDir(opt.Memory, runDir))
	con := newConsole(opt.Console)
	cmd.Stdout = con // the same writer for both: one copying goroutine
	cmd.Stderr = con

	con.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("uml: start %s: %w", Kernel, err)
	}
	waitErr := cmd.Wait()
	_ = killGroup(cmd) // helpers the kernel left behind, if any
	res := con.result(time.Since(con.start))
	if opt.RunDir != "" {
		res.RunDir = runDir
		_ = os.WriteFile(filepath.Join(runDir, "console.log"), []byte(res.Console), 0o644)
	}

	switch {
	case res.Passed:
		return res, nil
	case ctx.Err() != nil:
		return res, fmt.Errorf("uml: run cancelled in step %q: %w", res.LastStep(), ctx.Err())
	case runCtx.Err() != nil:
		return res, fmt.Errorf("%w after %v in step %q", ErrTimeout, opt.Timeout, res.LastStep())
	case con.failStep != "":
		return res, &GuestError{Step: con.failStep}
	default:
		return res, fmt.Errorf("%w (last step %q, kernel exit: %v)", ErrNoResult, res.LastStep(), waitErr)
	}
}

// memoryDir picks where the kernel keeps its RAM file (it honours TMPDIR,
// else prefers /dev/shm): /dev/shm when it has room for the guest's memory,
// since containers often give it only 64 MiB and the guest would then die
// of SIGBUS, else runDir.
func memoryDir(memory, runDir string) string {
	n, _ := strconv.ParseUint(memory[:len(memory)-1], 10, 64)
	switch memory[len(memory)-1] {
	case 'k', 'K':
		n <<= 10
	case 'm', 'M':
		n <<= 20
	case 'g', 'G':
		n <<= 30
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC &&
		st.Bavail*uint64(st.Bsize) >= n+n/2 {
		return "/dev/shm"
	}
	return runDir
}

// prepareRunDir fills the directory the guest mounts on /hastor.
func prepareRunDir(runDir, scripts string, opt Options) error {
	if err := os.MkdirAll(filepath.Join(runDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("uml: run dir: %w", err)
	}
	for _, f := range []string{"init.sh", "iscsi.sh"} {
		b, err := os.ReadFile(filepath.Join(scripts, "guest", f))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMissingDependency, err)
		}
		if err := os.WriteFile(filepath.Join(runDir, f), b, 0o644); err != nil {
			return fmt.Errorf("uml: run dir: %w", err)
		}
	}
	env := map[string]string{"UML_MODULES": ModulesDir}
	if n := opt.Netns; n != nil {
		env["GUEST_ADDR"] = n.GuestAddr.String()
		env["HOST_ADDR"] = n.HostAddr.String()
		env["HOST_IP"] = n.HostIP().String()
	}
	for k, v := range opt.Env {
		env[k] = v
	}
	if err := os.WriteFile(filepath.Join(runDir, "env"), []byte(shellExports(env)), 0o644); err != nil {
		return fmt.Errorf("uml: run dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(runDir, "test.sh"), []byte(opt.Script), 0o644); err != nil {
		return fmt.Errorf("uml: run dir: %w", err)
	}
	return nil
}

// shellExports renders env as sorted "export K='V'" lines.
func shellExports(env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(env[k], "'", `'\''`))
	}
	return b.String()
}

// console records the guest console and notes the markers as lines
// complete. Written by the one goroutine exec uses to copy the output; read
// after Wait.
type console struct {
	live     io.Writer
	start    time.Time
	mu       sync.Mutex
	buf      bytes.Buffer
	scanned  int // bytes of buf already split into lines
	boot     time.Duration
	steps    []Step
	passed   bool
	failStep string
}

func newConsole(live io.Writer) *console { return &console{live: live} }

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live != nil {
		_, _ = c.live.Write(p) // a failing live copy must not stop the guest
	}
	c.buf.Write(p)
	now := time.Since(c.start)
	for {
		rest := c.buf.Bytes()[c.scanned:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		c.line(string(bytes.TrimRight(rest[:i], "\r")), now)
		c.scanned += i + 1
	}
	return len(p), nil
}

// line interprets one console line. Kernel messages can be printed in the
// middle of a line, so markers are searched anywhere in it.
func (c *console) line(l string, at time.Duration) {
	switch {
	case strings.Contains(l, markResult):
		r := strings.TrimSpace(l[strings.Index(l, markResult)+len(markResult):])
		c.passed = r == "PASS"
		c.failStep = ""
		if f, ok := strings.CutPrefix(r, "FAIL"); ok {
			c.failStep = strings.TrimSpace(f)
			if c.failStep == "" {
				c.failStep = "unknown"
			}
		}
	case strings.Contains(l, markStep):
		name, _, _ := strings.Cut(strings.TrimSpace(l[strings.Index(l, markStep)+len(markStep):]), " ")
		c.steps = append(c.steps, Step{Name: name, At: at})
	case strings.Contains(l, markBooted) && c.boot == 0:
		c.boot = at
	}
}

func (c *console) result(elapsed time.Duration) *Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scanned < c.buf.Len() { // a last line without newline
		c.line(string(c.buf.Bytes()[c.scanned:]), elapsed)
		c.scanned = c.buf.Len()
	}
	return &Result{
		Console: c.buf.String(),
		Passed:  c.passed,
		Steps:   append([]Step(nil), c.steps...),
		Boot:    c.boot,
		Elapsed: elapsed,
	}
}

// RunT runs the guest for a test: it uses t.TempDir() as the run directory
// (unless opt.RunDir is set) and fails the test on any error, logging the
// error, the console tail and, on a timeout, the tail of the guest's
// iscsid log. On success it logs the boot time and step durations, and the
// whole console if the environment variable HASTOR_UML_VERBOSE is set.
func RunT(t testing.TB, opt Options) *Result {
	t.Helper()
	if opt.RunDir == "" {
		opt.RunDir = t.TempDir()
	}
	res, err := Run(t.Context(), opt)
	if err != nil {
		var b strings.Builder
		fmt.Fprintf(&b, "%v\n", err)
		if res != nil {
			fmt.Fprintf(&b, "----- console (last 200 lines):\n%s\n", tailLines(res.Console, 200))
			if errors.Is(err, ErrTimeout) || errors.Is(err, ErrNoResult) {
				if log, rerr := os.ReadFile(filepath.Join(opt.RunDir, "logs", "iscsid.log")); rerr == nil {
					fmt.Fprintf(&b, "----- iscsid.log (last 60 lines):\n%s\n", tailLines(string(log), 60))
				}
			}
		}
		t.Fatalf("%s", b.String())
	}
	if os.Getenv("HASTOR_UML_VERBOSE") != "" {
		t.Logf("----- console:\n%s", res.Console)
	}
	t.Logf("uml: boot %.2fs, total %.2fs; steps: %s", res.Boot.Seconds(), res.Elapsed.Seconds(), res.StepDurations())
	return res
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
