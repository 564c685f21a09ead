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
	"strings"
	"testing"
)

// ErrMissingDependency reports that a tool, a script or a privilege the
// harness needs is not there.
var ErrMissingDependency = errors.New("uml: missing dependency")

// Kernel is the User-Mode Linux kernel binary of Debian's user-mode-linux
// package.
const Kernel = "linux.uml"

// ModulesDir holds the kernel modules of [Kernel] (same package); the guest
// mounts it on /lib/modules.
const ModulesDir = "/usr/lib/uml/modules"

// baseTools are the host programs every run needs.
var baseTools = []string{Kernel, "mmdebstrap", "ip", "flock", "bash"}

// Check reports, as one error wrapping ErrMissingDependency, everything that
// [Run] and [EnsureRootfs] need and this host lacks: root, the base tools and
// the extra ones named, /dev/net/tun, the kernel modules and the scripts.
func Check(extraTools ...string) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root privileges")
	}
	for _, tool := range append(append([]string(nil), baseTools...), extraTools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	if _, err := os.Stat(ModulesDir); err != nil {
		missing = append(missing, ModulesDir)
	}
	if _, err := ScriptsDir(); err != nil {
		missing = append(missing, "scripts/uml")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s (run scripts/uml/install-deps.sh as root)",
			ErrMissingDependency, strings.Join(missing, ", "))
	}
	return nil
}

// Require skips the test when [Check] fails, or fails it when the
// environment variable CI is set (CI must run these tests). It also skips
// under -short, since a guest run takes seconds and the rootfs minutes.
func Require(t testing.TB, extraTools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("uml: User-Mode Linux tests do not run with -short")
	}
	if err := Check(extraTools...); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v", err)
		}
		t.Skipf("%v", err)
	}
}

// ScriptsDir returns the directory holding build-rootfs.sh and guest/: the
// environment variable HASTOR_UML_SCRIPTS if set, else scripts/uml of the
// hastor module found by walking up from the working directory (go test
// runs in the package directory).
func ScriptsDir() (string, error) {
	if d := os.Getenv("HASTOR_UML_SCRIPTS"); d != "" {
		return checkScriptsDir(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%w: scripts dir: %w", ErrMissingDependency, err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(gomod), []byte("module hastor")) {
			return checkScriptsDir(filepath.Join(dir, "scripts", "uml"))
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("%w: no hastor go.mod above %s", ErrMissingDependency, wd)
		}
	}
}

func checkScriptsDir(dir string) (string, error) {
	for _, f := range []string{"build-rootfs.sh", "guest/init.sh", "guest/iscsi.sh"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("%w: %w", ErrMissingDependency, err)
		}
	}
	return dir, nil
}

// EnsureRootfs returns the guest root directory, building it with
// scripts/uml/build-rootfs.sh when the cache has no copy for the current
// inputs (about half a minute with a near mirror; a cache hit is instant).
// The build's progress goes to log, which may be nil. Concurrent callers,
// also from other processes, wait for one build.
func EnsureRootfs(ctx context.Context, log io.Writer) (string, error) {
	scripts, err := ScriptsDir()
	if err != nil {
		return "", err
	}
	if log == nil {
		log = io.Discard
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(scripts, "build-rootfs.sh"))
	cmd.Stdout = &stdout
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("uml: build-rootfs.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := lines[len(lines)-1]
	if _, err := os.Stat(filepath.Join(dir, "sbin", "hastor-uml-init")); err != nil {
		return "", fmt.Errorf("uml: build-rootfs.sh gave %q: %w", dir, err)
	}
	return dir, nil
}
