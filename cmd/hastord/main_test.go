package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckValidConfig(t *testing.T) {
	var out bytes.Buffer
	if rc := run([]string{"--check", "--config", "../../examples/quickstart.yaml"}, &out); rc != 0 {
		t.Fatalf("rc %d: %s", rc, out.String())
	}
	if !strings.Contains(out.String(), "configuration is valid") {
		t.Fatalf("output: %s", out.String())
	}
}

// A bad file gets one report that names every wrong field, and nothing is
// served or created.
func TestCheckInvalidConfigNamesFields(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte(`state_dir: ./state
portals: ["127.0.0.1:99999"]
targets:
  - iqn: not-an-iqn
    luns:
      - {lun: 0, volume_id: a, path: a.img, size: 1GiB, block_size: 1000}
      - {lun: 0, volume_id: a, path: b.img, size: 1G}
`), 0o600)
	var out bytes.Buffer
	if rc := run([]string{"--config", p}, &out); rc != 1 {
		t.Fatalf("rc %d, want 1: %s", rc, out.String())
	}
	for _, want := range []string{"portals[0]", "targets[0].iqn", "block_size", "targets[0].luns[1].lun", "volume_id", "size"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report does not mention %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Error("state_dir was created for an invalid configuration")
	}
}

func TestUsageErrors(t *testing.T) {
	var out bytes.Buffer
	if rc := run(nil, &out); rc != 2 || !strings.Contains(out.String(), "--config") {
		t.Fatalf("no --config: rc %d %s", rc, out.String())
	}
	out.Reset()
	if rc := run([]string{"--config", "/nonexistent/hastor.yaml"}, &out); rc != 1 || !strings.Contains(out.String(), "/nonexistent/hastor.yaml") {
		t.Fatalf("missing file: rc %d %s", rc, out.String())
	}
}
