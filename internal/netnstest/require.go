package netnstest

import (
	"os"
	"os/exec"
	"testing"
)

// requireTool returns the path of an external program. When it is missing
// the test fails in CI (CI is set) and is skipped elsewhere.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required but not installed (install iproute2; run scripts/install-test-deps.sh)", name)
	}
	t.Skipf("%s not installed (install iproute2; run scripts/install-test-deps.sh)", name)
	return ""
}

// requireRoot fails in CI and skips elsewhere when not running as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("network namespace tests need root")
	}
	t.Skip("network namespace tests need root")
}
