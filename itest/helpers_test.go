package itest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"hastor/internal/hastordtest"
)

const (
	targetIQN = "iqn.2026-11.dev.hastor:itest"
	ini1      = "iqn.2026-11.dev.hastor:initiator-1"
	ini2      = "iqn.2026-11.dev.hastor:initiator-2"
)

// lunConfig returns a configuration with one target and one LUN; extra is
// spliced into the target (auth, initiators).
func lunConfig(path, size string, extra string) string {
	return lunConfigISCSI(path, size, extra, "")
}

// lunConfigISCSI is lunConfig with extra lines for the iscsi section.
func lunConfigISCSI(path, size, extra, iscsi string) string {
	sizeLine := ""
	if size != "" {
		sizeLine = "        size: " + size + "\n"
	}
	return `state_dir: {{STATE}}
portals: ["127.0.0.1:{{PORT}}"]
iscsi:
  nop_in_interval: 0s
` + iscsi + `targets:
  - iqn: ` + targetIQN + `
    alias: itest
` + extra + `    luns:
      - lun: 0
        volume_id: itest-lun0
        path: ` + path + "\n" + sizeLine
}

// url returns the iSCSI URL of LUN 0 of the test target.
func url(d *hastordtest.Daemon, creds string) string {
	if creds != "" {
		creds += "@"
	}
	return fmt.Sprintf("iscsi://%s%s/%s/0", creds, d.Addr, targetIQN)
}

// run runs a command with a deadline and returns its combined output.
func run(t testing.TB, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, ctx.Err())
	}
	return out.String(), err
}

func mustRun(t testing.TB, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, timeout, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}
