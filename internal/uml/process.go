package uml

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Process is a long-running command (a target daemon) started in a
// namespace by [Netns.Start]. One goroutine waits for it; Done is closed
// when it has exited.
type Process struct {
	Cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
	err  error // written before done is closed
}

// Start starts name with args in the namespace, with stdout and stderr
// captured, and registers a cleanup that stops it (SIGTERM, then SIGKILL to
// its process group) and logs its output if the test failed.
func (n *Netns) Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	p := &Process{done: make(chan struct{})}
	p.Cmd = n.Command(context.Background(), name, args...)
	p.Cmd.Stdout = &p.out
	p.Cmd.Stderr = &p.out
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("uml: start %s in %s: %v", name, n.Name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.Output())
		}
	})
	return p
}

// Output returns what the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the exit error; valid after Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM to the process group, SIGKILL after a grace period if
// it is still running, kills what is left of the group, and waits.
func (p *Process) Stop() error {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
		}
	}
	if err := killGroup(p.Cmd); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// Kill SIGKILLs the process group and waits.
func (p *Process) Kill() error {
	if err := killGroup(p.Cmd); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu struct {
		sync.Mutex
		b bytes.Buffer
	}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Clone(l.mu.b.String())
}
