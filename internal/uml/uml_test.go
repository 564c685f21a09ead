package uml

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConsoleMarkers(t *testing.T) {
	c := newConsole(nil)
	c.start = time.Now()
	// Kernel messages may interleave with marker lines and arrive in pieces.
	for _, chunk := range []string{
		"Linux version 6.1\nRun /sbin/hastor-uml-init as init process\nUML-BO",
		"OTED\nUML-STEP: login (uptime 2.1s)\nsd 0:0:0:1: [sda] ",
		"Attached\nfoo UML-STEP: fio-verify (uptime 3s)\r\n",
		"UML-RESULT: FAIL fio-verify",
	} {
		if _, err := c.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	r := c.result(time.Second)
	if r.Passed || c.failStep != "fio-verify" {
		t.Fatalf("passed=%v failStep=%q, want a failure in fio-verify", r.Passed, c.failStep)
	}
	var names []string
	for _, s := range r.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "login,fio-verify" {
		t.Fatalf("steps %q", got)
	}
	if r.LastStep() != "fio-verify" || !strings.Contains(r.StepDurations(), "login=") {
		t.Fatalf("last step %q, durations %q", r.LastStep(), r.StepDurations())
	}
	if !strings.HasPrefix(r.Console, "Linux version") {
		t.Fatalf("console %q", r.Console)
	}

	c = newConsole(nil)
	c.start = time.Now()
	_, _ = c.Write([]byte("UML-BOOTED\nUML-RESULT: PASS\n"))
	if r := c.result(time.Second); !r.Passed {
		t.Fatal("PASS not recognised")
	}
}

func TestGuestErrorIs(t *testing.T) {
	var err error = &GuestError{Step: "login"}
	var ge *GuestError
	if !errors.Is(err, ErrGuestFailed) || !errors.As(err, &ge) || ge.Step != "login" {
		t.Fatalf("errors.Is/As do not classify %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	o := Options{Memory: "lots", RunDir: "/tmp/a b", Env: map[string]string{"1X": "y"}, Timeout: -1}
	err := o.validate()
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("got %v", err)
	}
	for _, field := range []string{"Rootfs", "Script", "Memory", "RunDir", "Env", "Timeout"} {
		if !strings.Contains(err.Error(), "field "+field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}

func TestShellExports(t *testing.T) {
	got := shellExports(map[string]string{"B": "it's", "A": "x y"})
	want := "export A='x y'\nexport B='it'\\''s'\n"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}
