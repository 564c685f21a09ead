package hastordtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// builds caches the helper binaries for the life of the test binary.
var builds struct {
	mu    sync.Mutex
	paths map[string]string
}

// built runs make(dir) once per test binary for name and returns the path
// it produced.
func built(t testing.TB, name string, make func(out string) error) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if p, ok := builds.paths[name]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "hastor-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	if err := make(out); err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	if builds.paths == nil {
		builds.paths = map[string]string{}
	}
	builds.paths[name] = out
	return out
}

// Hastorctl returns the path of a hastorctl built from this checkout.
func Hastorctl(t testing.TB) string {
	t.Helper()
	return built(t, "hastorctl", func(out string) error {
		cmd := exec.Command("go", "build", "-o", out, "hastor/cmd/hastorctl")
		cmd.Dir = moduleRoot()
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v\n%s", err, b)
		}
		return nil
	})
}

// ISCSIIO returns the path of iscsiio (iscsiio/iscsiio.c), a minimal libiscsi
// initiator that runs TEST UNIT READY, WRITE(16) or READ(16), built with
// the C compiler against libiscsi-dev (scripts/install-test-deps.sh).
func ISCSIIO(t testing.TB) string {
	t.Helper()
	RequireTool(t, "cc")
	if _, err := os.Stat("/usr/include/iscsi/iscsi.h"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("libiscsi-dev is required but not installed (run scripts/install-test-deps.sh)")
		}
		t.Skip("libiscsi-dev not installed (run scripts/install-test-deps.sh)")
	}
	return built(t, "iscsiio", func(out string) error {
		src := filepath.Join(moduleRoot(), "internal", "hastordtest", "iscsiio", "iscsiio.c")
		cmd := exec.Command("cc", "-O2", "-Wall", "-Werror", "-o", out, src, "-liscsi")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v\n%s", err, b)
		}
		return nil
	})
}
