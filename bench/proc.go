package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors of process handling.
var (
	// errExited: a target process ended while it was needed.
	errExited = errors.New("process exited")
	// errNotReady: a target did not accept connections in time.
	errNotReady = errors.New("target not ready")
	// errBadStat: /proc/PID/stat did not parse.
	errBadStat = errors.New("bad /proc stat line")
)

// interruptSignal is what fio gets to stop early.
const interruptSignal = syscall.SIGINT

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. The
// kernel fixes it at 100 on every architecture Go's linux ports run on.
const clockTicks = 100

// childAttr puts a child in its own process group (so a terminal's Ctrl-C
// reaches only the harness, which then stops the child itself) and has the
// kernel SIGKILL it if the harness dies first.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup signals the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to group %d: %w", sig, pid, err)
	}
	return nil
}

// process is a long-running child (a target daemon) whose output goes to a
// log file. The harness owns it: stop must be called exactly once.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result; read only after done is closed
}

// startProcess starts bin with args, env added to the harness's environment,
// and stdout+stderr appended to logPath.
func startProcess(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	fmt.Fprintf(lf, "# %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// alive returns errExited (with the exit status) once the process has ended.
func (p *process) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%w: %s: %v (see %s)", errExited, p.name, p.err, p.log.Name())
	default:
		return nil
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then sends
// SIGKILL and waits for the process to be reaped.
func (p *process) stop(grace time.Duration) {
	defer p.log.Close()
	select {
	case <-p.done:
		return
	default:
	}
	_ = signalGroup(p.pid(), syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		// The leader is gone; make sure no helper it forked lingers.
		_ = signalGroup(p.pid(), syscall.SIGKILL)
		return
	case <-t.C:
	}
	_ = signalGroup(p.pid(), syscall.SIGKILL)
	<-p.done
}

// cpuTime returns the user+system CPU time of all threads of the process,
// from /proc/PID/stat.
func (p *process) cpuTime() (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid()) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("%s: cpu time: %w", p.name, err)
	}
	return parseStatCPU(string(data))
}

// parseStatCPU extracts utime+stime (fields 14 and 15, proc(5)) from a
// /proc/PID/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from its last ')'.
func parseStatCPU(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: no ')'", errBadStat)
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: %d fields after comm", errBadStat, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: %w", errBadStat, err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// machineCPU returns the time all CPUs together spent busy (every state
// but idle and iowait) since boot, and the number of CPUs, from
// /proc/stat.
func machineCPU() (busy time.Duration, cpus int, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("machine cpu time: %w", err)
	}
	return parseProcStat(string(data))
}

// parseProcStat parses /proc/stat (proc(5)): the busy ticks of the "cpu"
// line (user, nice, system, irq, softirq, steal; guest time is already in
// user) and the count of "cpuN" lines.
func parseProcStat(text string) (time.Duration, int, error) {
	var busy time.Duration
	cpus, found := 0, false
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "cpu":
			if len(f) < 9 {
				return 0, 0, fmt.Errorf("%w: /proc/stat cpu line has %d fields", errBadStat, len(f))
			}
			var ticks uint64
			for i, v := range f[1:9] {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("%w: /proc/stat: %w", errBadStat, err)
				}
				if i != 3 && i != 4 { // idle, iowait
					ticks += n
				}
			}
			busy, found = time.Duration(ticks)*time.Second/clockTicks, true
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			cpus++
		}
	}
	if !found || cpus == 0 {
		return 0, 0, fmt.Errorf("%w: /proc/stat has no cpu lines", errBadStat)
	}
	return busy, cpus, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	return port, nil
}

// waitListening waits until addr accepts a TCP connection, p exits, ctx
// ends, or timeout passes.
func waitListening(ctx context.Context, p *process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if err := p.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s: %s not listening after %v: %w", errNotReady, p.name, addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runTool runs a short-lived helper (tgtadm, go build, a script) and returns
// its combined output, with the output in the error on failure.
func runTool(ctx context.Context, env []string, dir, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, tail(string(out), 1500))
	}
	return string(out), nil
}
