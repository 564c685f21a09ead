package config

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

// mapFS serves absolute paths from a fstest.MapFS, so tests do not depend on
// the machine's disk. Parent directories of listed files exist implicitly.
type mapFS struct{ fstest.MapFS }

func (m mapFS) Stat(name string) (fs.FileInfo, error) {
	return fs.Stat(m.MapFS, strings.TrimPrefix(name, "/"))
}

func (m mapFS) Open(name string) (fs.File, error) {
	return m.MapFS.Open(strings.TrimPrefix(name, "/"))
}

// secretFile is a file that passes the secret_file checks.
func secretFile(s string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte(s), Mode: 0o600}
}

// parseFake parses doc as if it were /etc/hastor/hastor.yaml, on a disk that
// holds only files.
func parseFake(doc string, files fstest.MapFS) (*Config, error) {
	if files == nil {
		files = fstest.MapFS{}
	}
	return parse([]byte(doc), parseOptions{file: "hastor.yaml", baseDir: "/etc/hastor", fs: mapFS{files}})
}

// mustParse parses doc with parseFake and fails the test if it is invalid.
func mustParse(t *testing.T, doc string, files fstest.MapFS) *Config {
	t.Helper()
	cfg, err := parseFake(doc, files)
	if err != nil {
		t.Fatalf("unexpected error:\n%v\ndocument:\n%s", err, doc)
	}
	return cfg
}

// problemsOf returns the problems of a *ValidationError, failing the test for
// any other error.
func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	if err == nil {
		t.Fatalf("want a *ValidationError, got nil")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %T: %v", err, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false")
	}
	return ve.Problems
}

// wantProblems checks that err reports exactly the problems in want, each
// written "field: part of the message".
func wantProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	got := problemsOf(t, err)
	used := make([]bool, len(got))
	for _, w := range want {
		field, msg, _ := strings.Cut(w, ": ")
		found := false
		for i, p := range got {
			if !used[i] && p.Field == field && strings.Contains(p.Message, msg) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing problem %q", w)
		}
	}
	for i, p := range got {
		if !used[i] {
			t.Errorf("unexpected problem %q", p.String())
		}
	}
}

// base is a small valid file. The helpers below change one part of it.
const base = `state_dir: /srv/state
targets:
  - iqn: iqn.2026-11.dev.hastor:t
    luns:
      - {lun: 0, volume_id: v0, path: a.img, size: 1GiB}
`

// withTop returns base with top-level lines added before targets.
func withTop(lines string) string {
	return "state_dir: /srv/state\n" + lines + "\n" + base[strings.Index(base, "targets:"):]
}

// withLUN returns base with one LUN given by the fields of a flow mapping.
func withLUN(fields string) string {
	return `state_dir: /srv/state
targets:
  - iqn: iqn.2026-11.dev.hastor:t
    luns:
      - {` + fields + "}\n"
}

// withTarget returns a file whose only target is the flow mapping target.
func withTarget(target string) string {
	return "state_dir: /srv/state\ntargets:\n  - " + target + "\n"
}

// lun0 is the fields of base's LUN, to build targets with withTarget.
const lun0 = `{lun: 0, volume_id: v0, path: a.img, size: 1GiB}`
