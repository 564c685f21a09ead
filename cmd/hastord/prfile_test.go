package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// prFile stores a state durably, reads it back when opened again, and
// removes the file when handed nil.
func TestPRFile(t *testing.T) {
	path := prFileName(t.TempDir(), "vol:1")
	f, err := openPRFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, epoch := f.LoadPR(); b != nil || epoch != 1 || !f.PersistsThroughPowerLoss() {
		t.Fatalf("new store: % x, epoch %d", b, epoch)
	}
	if err := f.SavePR([]byte("state-1")); err != nil {
		t.Fatal(err)
	}
	g, err := openPRFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := g.LoadPR(); !bytes.Equal(b, []byte("state-1")) {
		t.Fatalf("reopened: %q", b)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	if err := g.SavePR(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("nil did not remove the file: %v", err)
	}
	if err := g.SavePR(nil); err != nil { // nothing to remove
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openPRFile(filepath.Join(path, "x")); err == nil {
		t.Fatal("opening a store under a file succeeded")
	}
}
