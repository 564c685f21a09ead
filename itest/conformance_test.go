package itest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hastor/internal/hastordtest"
)

// minConformancePass is the number of iscsi-test-cu tests hastor passes
// (not counting skips); a drop is a regression.
const minConformancePass = 196

// TestConformance runs libiscsi's whole conformance suite with two
// initiator names and two URLs (so the multipath and multi-initiator tests
// run) and requires zero failures, a clean daemon log and a daemon that is
// still serving afterwards.
func TestConformance(t *testing.T) {
	hastordtest.RequireTool(t, "iscsi-test-cu")
	d := hastordtest.Start(t, hastordtest.Options{Config: lunConfig("lun0.img", "128MiB", "")})
	u := url(d, "")
	out, err := run(t, 15*time.Minute, nil, "iscsi-test-cu", "-d", "--test=ALL", "-i", ini1, "-I", ini2, u, u)
	logPath := filepath.Join(t.TempDir(), "iscsi-test-cu.txt")
	os.WriteFile(logPath, []byte(out), 0o644)
	rep, perr := ParseCUnit(strings.NewReader(out))
	if perr != nil {
		t.Fatal(perr)
	}
	if cerr := rep.Consistent(); cerr != nil {
		t.Fatalf("%v (iscsi-test-cu: %v)\n%s", cerr, err, tail(out, 4000))
	}
	t.Logf("iscsi-test-cu: %d tests, %d passed, %d skipped, %d failed", len(rep.Results), rep.Count(Pass), rep.Count(Skip), rep.Count(Fail))
	if f := rep.FailedTests(); len(f) > 0 {
		t.Errorf("failed tests: %v\n%s", f, tail(out, 8000))
	}
	if rep.Count(Pass) < minConformancePass {
		t.Errorf("%d tests passed, want at least %d", rep.Count(Pass), minConformancePass)
	}
	// The target must still serve after the whole suite.
	mustRun(t, time.Minute, nil, "iscsi-inq", u)
	d.CheckLog(t)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}
