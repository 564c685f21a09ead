package uml

import (
	"os"
	"os/user"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// DiskTempDir returns a directory for backing files that is on a real disk:
// t.TempDir() unless that is on tmpfs (where O_DIRECT and fsync behave
// differently), else a directory under the cache,
// ${HASTOR_CACHE:-$HOME/.cache/hastor}/uml/tmp. It is removed when the test
// ends.
func DiskTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return dir
	}
	base := filepath.Join(CacheDir(), "tmp")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatalf("uml: %v", err)
	}
	dir, err := os.MkdirTemp(base, "test-")
	if err != nil {
		t.Fatalf("uml: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// CacheDir is ${HASTOR_CACHE:-$HOME/.cache/hastor}/uml, where
// build-rootfs.sh keeps its rootfs.
func CacheDir() string {
	base := os.Getenv("HASTOR_CACHE")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil { // HOME unset: ask the user database, as the script does
			if u, uerr := user.Current(); uerr == nil {
				home = u.HomeDir
			}
		}
		base = filepath.Join(home, ".cache", "hastor")
	}
	return filepath.Join(base, "uml")
}
