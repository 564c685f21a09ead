package control

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeHandler struct {
	mu       sync.Mutex
	unlocked map[string]bool
}

func (h *fakeHandler) Unlock(_ context.Context, vol string, pass []byte) (int, error) {
	if !bytes.Equal(pass, []byte("right")) {
		return 0, errors.New("no keyslot matches the passphrase")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unlocked[vol] = true
	return 3, nil
}

func (h *fakeHandler) Status(context.Context) (Status, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Status{Volumes: []VolumeStatus{{VolumeID: "v1", Encrypted: true, Locked: !h.unlocked["v1"]}}}, nil
}

func startServer(t *testing.T) (string, *fakeHandler) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	h := &fakeHandler{unlocked: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("socket file left behind: %v", err)
		}
	})
	return path, h
}

func TestUnlockAndStatus(t *testing.T) {
	path, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := cl.Call(ctx, Request{Op: OpStatus})
	if err != nil || resp.Status == nil || !resp.Status.Volumes[0].Locked {
		t.Fatalf("status before unlock: %+v %v", resp, err)
	}
	if _, err := cl.Call(ctx, Request{Op: OpUnlock, Volume: "v1", Passphrase: []byte("wrong")}); err == nil || !strings.Contains(err.Error(), "no keyslot") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	resp, err = cl.Call(ctx, Request{Op: OpUnlock, Volume: "v1", Passphrase: []byte("right")})
	if err != nil || resp.Slot == nil || *resp.Slot != 3 {
		t.Fatalf("unlock: %+v %v", resp, err)
	}
	resp, err = cl.Call(ctx, Request{Op: OpStatus})
	if err != nil || resp.Status.Volumes[0].Locked {
		t.Fatalf("status after unlock: %+v %v", resp, err)
	}
	if _, err := cl.Call(ctx, Request{Op: "format"}); err == nil || !strings.Contains(err.Error(), "unknown operation") {
		t.Fatalf("unknown op: %v", err)
	}
}

func TestMalformedRequestClosesNothingElse(t *testing.T) {
	path, _ := startServer(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("{not json\n"))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "malformed request") {
		t.Fatalf("answer %q, %v", buf[:n], err)
	}
	// The connection still works.
	c.Write([]byte(`{"op":"status"}` + "\n"))
	n, err = c.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), `"volumes"`) {
		t.Fatalf("answer %q, %v", buf[:n], err)
	}
}

func TestListenReplacesOnlyStaleSockets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ctl.sock")
	// A stale socket: bound, then its listener gone without unlinking.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("socket in use: %v", err)
	}
	ln2.Close()

	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o600)
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("regular file was touched")
	}
}

func TestDialMissingSocket(t *testing.T) {
	_, err := Dial(context.Background(), filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "is it running") {
		t.Fatalf("Dial: %v", err)
	}
}
