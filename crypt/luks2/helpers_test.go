package luks2

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Small KDF parameters keep tests fast.
var (
	fastArgon  = PBKDF{Type: "argon2id", Time: 4, MemoryKiB: 32 << 10, Threads: 2}
	fastPBKDF2 = PBKDF{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}
)

func fastOpts() FormatOptions {
	return FormatOptions{PBKDF: fastPBKDF2, DigestIterations: 1000}
}

// needCryptsetup returns the cryptsetup path, skipping (or failing under
// CI) when it is not installed.
func needCryptsetup(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("cryptsetup")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cryptsetup not found (install cryptsetup-bin): %v", err)
		}
		t.Skipf("cryptsetup not found, skipping interop test (install cryptsetup-bin): %v", err)
	}
	return p
}

// cs runs cryptsetup and returns its combined output, failing on error.
func cs(t *testing.T, args ...string) string {
	t.Helper()
	out, err := csErr(t, args...)
	if err != nil {
		t.Fatalf("cryptsetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func csErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := needCryptsetup(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// keyFile writes a passphrase file and returns its path.
func keyFile(t *testing.T, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newImage creates a sparse file of size bytes.
func newImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

// openFile opens path read-write as Storage, closed at test end.
func openFile(t *testing.T, path string) File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return File{f}
}

var mkDumpRE = regexp.MustCompile(`(?s)MK dump:\s*(.*)`)

// dumpVolumeKey returns the volume key cryptsetup recovers with pass.
func dumpVolumeKey(t *testing.T, img, pass string) []byte {
	t.Helper()
	out := cs(t, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile(t, pass), img)
	m := mkDumpRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no MK dump in:\n%s", out)
	}
	h := strings.Join(strings.Fields(m[1]), "")
	k, err := hex.DecodeString(h)
	if err != nil {
		t.Fatalf("bad MK dump %q: %v", h, err)
	}
	return k
}

// testPass reports whether cryptsetup opens img with pass.
func testPass(t *testing.T, img, pass string) bool {
	t.Helper()
	_, err := csErr(t, "open", "--test-passphrase", "--batch-mode", "--key-file", keyFile(t, pass), img)
	return err == nil
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// memDev is an in-memory writable Storage counting writes.
type memDev struct {
	mu     sync.Mutex
	b      []byte
	writes int
	syncs  int
}

func newMemDev(size int) *memDev { return &memDev{b: make([]byte, size)} }

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return (&memStorage{b: m.b}).ReadAt(p, off)
}

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, os.ErrInvalid
	}
	return copy(m.b[off:], p), nil
}

func (m *memDev) Size() (int64, error) { return int64(len(m.b)), nil }
func (m *memDev) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.syncs++
	return nil
}

func (m *memDev) snapshot() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.b)
}
