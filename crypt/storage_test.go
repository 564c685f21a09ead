package crypt

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"hastor/blockdev"
	"hastor/crypt/luks2"
)

// TestOpenVolumeOn: a volume whose header is read through its O_DIRECT
// data-path device (as a replicated volume's is) opens, unlocks, and
// serves a data area that ends where that device ends, not where the file
// does.
func TestOpenVolumeOn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vol.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(32 << 20); err != nil {
		t.Fatal(err)
	}
	pass := []byte("correct horse")
	opts := luks2.FormatOptions{PBKDF: luks2.PBKDF{Type: "pbkdf2", Iterations: 1000}, DigestIterations: 1000}
	if _, key, err := luks2.Format(luks2.File{File: f}, pass, opts); err != nil {
		t.Fatal(err)
	} else {
		clear(key)
	}
	f.Close()
	file, err := blockdev.Open(path, blockdev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The data-path device is shorter than the file, as a replicated
	// device with internal metadata at the end is.
	inner := shorter{file, 24 << 20}
	v, err := OpenVolumeOn("vol", inner)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if want := int64(24<<20) - v.Device().Layout().Offset; v.Device().Size() != want {
		t.Fatalf("data area %d bytes, want %d", v.Device().Size(), want)
	}
	if _, err := v.Unlock([]byte("wrong")); err == nil {
		t.Fatal("a wrong passphrase unlocked the volume")
	}
	if _, err := v.Unlock(pass); err != nil {
		t.Fatal(err)
	}
	pool := blockdev.NewPool()
	b := pool.Get(4096)
	for i := range b.B {
		b.B[i] = byte(i)
	}
	want := bytes.Clone(b.B)
	if _, err := v.Device().WriteAt(b.B, 8192); err != nil {
		t.Fatal(err)
	}
	clear(b.B)
	if _, err := v.Device().ReadAt(b.B, 8192); err != nil || !bytes.Equal(b.B, want) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(b.B, want))
	}
}

// shorter is a device that ends before its inner device does.
type shorter struct {
	blockdev.Device
	size int64
}

func (s shorter) Size() int64 { return s.size }
