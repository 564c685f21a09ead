package itest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hastor/internal/hastordtest"
)

// encryptedConfig is lunConfig for an encrypted LUN with 4096-byte blocks;
// keyFile may be empty (unlock by hand).
func encryptedConfig(img, size, keyFile string) string {
	enc := "        block_size: 4096\n        encryption: {}\n"
	if keyFile != "" {
		enc = "        block_size: 4096\n        encryption:\n          key_file: " + keyFile + "\n"
	}
	return lunConfig(img, size, "") + enc + "control_socket: {{STATE}}/ctl.sock\n"
}

// writeKey writes a passphrase file with mode 0600.
func writeKey(t *testing.T, dir, name, pass string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// luksFormat formats img with cryptsetup, with a fast KDF.
func luksFormat(t *testing.T, img, keyFile string, sector int) {
	t.Helper()
	mustRun(t, time.Minute, nil, "cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode",
		"--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", strconv.Itoa(sector),
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", keyFile, img)
}

// volumeKey returns the volume key cryptsetup reads from img's header.
func volumeKey(t *testing.T, img, keyFile string) []byte {
	t.Helper()
	out := mustRun(t, time.Minute, nil, "cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile, img)
	i := strings.Index(out, "MK dump:")
	if i < 0 {
		t.Fatalf("no MK dump in:\n%s", out)
	}
	hexKey := regexp.MustCompile(`[^0-9a-f]`).ReplaceAllString(out[i+len("MK dump:"):], "")
	k, err := hex.DecodeString(hexKey)
	if err != nil || len(k) != 64 {
		t.Fatalf("volume key %q: %v", hexKey, err)
	}
	return k
}

// dataOffset returns the data segment offset that cryptsetup reports.
func dataOffset(t *testing.T, img string) int64 {
	t.Helper()
	out := mustRun(t, time.Minute, nil, "cryptsetup", "luksDump", img)
	m := regexp.MustCompile(`offset:\s+(\d+) \[bytes\]`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no data offset in:\n%s", out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// xtsPy applies aes-xts-plain64 as dm-crypt does for LUKS2 (IV = offset in
// the data area / 512, whatever the sector size), with python3-cryptography
// as the independent implementation. mode is "encrypt" or "decrypt".
const xtsPy = `
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
mode, key, off, sector = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = sys.stdin.buffer.read()
out = bytearray()
for i in range(0, len(data), sector):
    iv = ((off + i) // 512).to_bytes(16, "little")
    c = Cipher(algorithms.AES(key), modes.XTS(iv))
    op = c.encryptor() if mode == "encrypt" else c.decryptor()
    out += op.update(data[i:i+sector]) + op.finalize()
sys.stdout.buffer.write(bytes(out))
`

func pythonXTS(t *testing.T, mode string, key []byte, off int64, sector int, in []byte) []byte {
	t.Helper()
	py := hastordtest.RequireTool(t, "/usr/bin/python3")
	cmd := exec.Command(py, "-c", xtsPy, mode, hex.EncodeToString(key), strconv.FormatInt(off, 10), strconv.Itoa(sector))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3-cryptography XTS: %v\n%s", err, stderr.String())
	}
	return out
}

// iscsiio runs the libiscsi helper; stdin may be nil.
func iscsiio(t *testing.T, stdin []byte, args ...string) ([]byte, string, error) {
	t.Helper()
	cmd := exec.Command(hastordtest.ISCSIIO(t), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	return stdout.Bytes(), stderr.String(), err
}

// A volume formatted by cryptsetup is served by hastord: NOT READY until
// hastorctl unlocks it, then data written through iSCSI is what
// python3-cryptography decrypts with the volume key cryptsetup prints, and
// data encrypted outside hastor reads back in plaintext through iSCSI.
func TestEncryptedLUNFromCryptsetup(t *testing.T) {
	hastordtest.RequireTool(t, "cryptsetup")
	hastordtest.RequireTool(t, "iscsi-ls")
	ctl := hastordtest.Hastorctl(t)
	dir := hastordtest.DiskDir(t)
	img := filepath.Join(dir, "vault.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	kf := writeKey(t, dir, "pass", "open sesame")
	luksFormat(t, img, kf, 4096)
	// cryptsetup waits for hastord's lock on the image: read the header
	// before hastord starts.
	key := volumeKey(t, img, kf)
	off := dataOffset(t, img)

	d := hastordtest.Start(t, hastordtest.Options{Config: encryptedConfig(img, "64MiB", "")})
	sock := filepath.Join(filepath.Dir(d.Config), "state", "ctl.sock")
	u := url(d, "")
	_, errOut, err := iscsiio(t, nil, "tur", u)
	if err == nil || !strings.Contains(errOut, "key=2 asc=04 ascq=03") {
		t.Fatalf("locked LUN: TEST UNIT READY gave %v %q, want NOT READY 04h/03h", err, errOut)
	}
	status := mustRun(t, time.Minute, nil, ctl, "status", "--socket", sock)
	if !strings.Contains(status, "locked") {
		t.Fatalf("status of a locked LUN:\n%s", status)
	}

	wrong := writeKey(t, dir, "wrong", "open barley")
	if out, err := run(t, time.Minute, nil, ctl, "unlock", "--socket", sock, "--key-file", wrong, "itest-lun0"); err == nil || !strings.Contains(out, "passphrase") {
		t.Fatalf("unlock with a wrong passphrase: %v\n%s", err, out)
	}
	if out := mustRun(t, time.Minute, nil, ctl, "unlock", "--socket", sock, "--key-file", kf, "itest-lun0"); !strings.Contains(out, "unlocked with keyslot 0") {
		t.Fatalf("unlock: %s", out)
	}
	if _, errOut, err := iscsiio(t, nil, "tur", u); err != nil {
		t.Fatalf("TEST UNIT READY after unlock: %v %s", err, errOut)
	}
	if out := mustRun(t, time.Minute, nil, "iscsi-readcapacity16", u); !strings.Contains(out, "Total size:"+strconv.Itoa(64<<20-16<<20)) {
		t.Fatalf("capacity: the data area after cryptsetup's 16 MiB header, got\n%s", out)
	}

	// hastor encrypts: what lands on disk is what dm-crypt would write.
	plain := make([]byte, 1<<20)
	rand.Read(plain)
	const lba = 10
	if _, errOut, err := iscsiio(t, plain, "write", u, strconv.Itoa(lba), "4096"); err != nil {
		t.Fatalf("write: %v %s", err, errOut)
	}
	got, errOut, err := iscsiio(t, nil, "read", u, strconv.Itoa(lba), strconv.Itoa(len(plain)), "4096")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("read back through iSCSI: %v %s (equal %v)", err, errOut, bytes.Equal(got, plain))
	}
	raw := readAt(t, img, off+lba*4096, len(plain))
	if bytes.Equal(raw, plain) {
		t.Fatal("plaintext on disk")
	}
	if dec := pythonXTS(t, "decrypt", key, lba*4096, 4096, raw); !bytes.Equal(dec, plain) {
		t.Fatal("python3-cryptography does not decrypt what hastor wrote to the plaintext written through iSCSI")
	}

	// Others encrypt: hastor decrypts.
	plain2 := make([]byte, 64<<10)
	rand.Read(plain2)
	const lba2 = 1000
	writeAt(t, img, off+lba2*4096, pythonXTS(t, "encrypt", key, lba2*4096, 4096, plain2))
	got, errOut, err = iscsiio(t, nil, "read", u, strconv.Itoa(lba2), strconv.Itoa(len(plain2)), "4096")
	if err != nil || !bytes.Equal(got, plain2) {
		t.Fatalf("hastor does not decrypt what python3-cryptography encrypted: %v %s", err, errOut)
	}
	d.CheckLog(t)
	if strings.Contains(d.Log(), "open sesame") {
		t.Fatal("the passphrase appears in hastord's log")
	}
}

// A volume formatted by hastorctl passes cryptsetup's checks; keyslots that
// hastorctl adds and removes show up in cryptsetup's dump; a key file in
// the configuration unlocks the LUN at start, and the data survives a
// restart.
func TestHastorctlVolumeWithCryptsetup(t *testing.T) {
	hastordtest.RequireTool(t, "cryptsetup")
	ctl := hastordtest.Hastorctl(t)
	dir := hastordtest.DiskDir(t)
	img := filepath.Join(dir, "vol.img")
	kf := writeKey(t, dir, "k0", "first passphrase")
	kf2 := writeKey(t, dir, "k1", "second passphrase")
	out := mustRun(t, 2*time.Minute, nil, ctl, "format", "--size", "48MiB", "--key-file", kf,
		"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-time", "4", img)
	if !strings.Contains(out, "aes-xts-plain64") {
		t.Fatalf("format: %s", out)
	}
	dump := mustRun(t, time.Minute, nil, "cryptsetup", "luksDump", img)
	for _, want := range []string{"Version:       \t2", "cipher: aes-xts-plain64", "sector: 4096 [bytes]", "PBKDF:      argon2id", "0: luks2"} {
		if !strings.Contains(dump, want) {
			t.Errorf("cryptsetup luksDump lacks %q:\n%s", want, dump)
		}
	}
	mustRun(t, time.Minute, nil, "cryptsetup", "open", "--test-passphrase", "--key-file", kf, img)

	mustRun(t, 2*time.Minute, nil, ctl, "add-key", "--key-file", kf, "--new-key-file", kf2,
		"--pbkdf", "pbkdf2", "--iterations", "1000", img)
	dump = mustRun(t, time.Minute, nil, "cryptsetup", "luksDump", img)
	if !strings.Contains(dump, "1: luks2") || !strings.Contains(dump, "PBKDF:      pbkdf2") {
		t.Fatalf("keyslot 1 added by hastorctl is not in cryptsetup's dump:\n%s", dump)
	}
	mustRun(t, time.Minute, nil, "cryptsetup", "open", "--test-passphrase", "--key-slot", "1", "--key-file", kf2, img)
	mustRun(t, time.Minute, nil, ctl, "remove-key", "--slot", "0", img)
	if _, err := run(t, time.Minute, nil, "cryptsetup", "open", "--test-passphrase", "--key-file", kf, img); err == nil {
		t.Fatal("cryptsetup still opens the removed keyslot 0")
	}
	if dump = mustRun(t, time.Minute, nil, "cryptsetup", "luksDump", img); strings.Contains(dump, "0: luks2") {
		t.Fatalf("keyslot 0 still in cryptsetup's dump:\n%s", dump)
	}

	cfg := encryptedConfig(img, "48MiB", kf2)
	d := hastordtest.Start(t, hastordtest.Options{Config: cfg})
	u := url(d, "")
	if _, errOut, err := iscsiio(t, nil, "tur", u); err != nil {
		t.Fatalf("LUN with a key file is not ready: %v %s\n%s", err, errOut, d.Log())
	}
	plain := make([]byte, 256<<10)
	rand.Read(plain)
	if _, errOut, err := iscsiio(t, plain, "write", u, "7", "4096"); err != nil {
		t.Fatalf("write: %v %s", err, errOut)
	}
	d.Stop(t)
	state := filepath.Join(filepath.Dir(d.Config), "state")
	d = hastordtest.Start(t, hastordtest.Options{Config: cfg, StateDir: state})
	got, errOut, err := iscsiio(t, nil, "read", url(d, ""), "7", strconv.Itoa(len(plain)), "4096")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("data after restart: %v %s", err, errOut)
	}
	d.CheckLog(t)
}

// A key file that opens no keyslot leaves the LUN locked, says so in the
// log, and the daemon still serves.
func TestEncryptedLUNWrongKeyFile(t *testing.T) {
	hastordtest.RequireTool(t, "cryptsetup")
	dir := hastordtest.DiskDir(t)
	img := filepath.Join(dir, "vault.img")
	os.WriteFile(img, nil, 0o600)
	os.Truncate(img, 32<<20)
	kf := writeKey(t, dir, "pass", "right")
	luksFormat(t, img, kf, 4096)
	before := readAt(t, img, 0, 16<<20)
	wrong := writeKey(t, dir, "wrong", "wrong")
	d := hastordtest.Start(t, hastordtest.Options{Config: encryptedConfig(img, "32MiB", wrong)})
	if _, errOut, err := iscsiio(t, nil, "tur", url(d, "")); err == nil || !strings.Contains(errOut, "key=2 asc=04 ascq=03") {
		t.Fatalf("want NOT READY, got %v %s", err, errOut)
	}
	if !strings.Contains(d.Log(), "stays locked") {
		t.Fatalf("log does not say the LUN stays locked:\n%s", d.Log())
	}
	d.Stop(t)
	if !bytes.Equal(readAt(t, img, 0, 16<<20), before) {
		t.Fatal("the header changed")
	}
}

func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}
