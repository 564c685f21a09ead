package itest

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Verdict is the outcome of one iscsi-test-cu test.
type Verdict string

// Verdicts. CUnit reports a skipped test as passed; a test that logged
// "[SKIPPED]" and passed is counted as Skip here.
const (
	Pass Verdict = "PASS"
	Skip Verdict = "SKIP"
	Fail Verdict = "FAIL"
)

// Result is one test's verdict.
type Result struct {
	Name    string // Suite.Test
	Verdict Verdict
}

// Report is a parsed iscsi-test-cu run.
type Report struct {
	Results []Result
	// From CUnit's run summary; Summary is false when it is missing (a
	// crash or an aborted start-up).
	Summary                    bool
	Total, Ran, Passed, Failed int
	SuitesTotal, SuitesFailed  int
}

// Count returns how many tests have verdict v.
func (r *Report) Count(v Verdict) int {
	n := 0
	for _, x := range r.Results {
		if x.Verdict == v {
			n++
		}
	}
	return n
}

// Failed returns the names of the failed tests.
func (r *Report) FailedTests() []string {
	var out []string
	for _, x := range r.Results {
		if x.Verdict == Fail {
			out = append(out, x.Name)
		}
	}
	return out
}

// Consistent reports whether the per-test verdicts agree with CUnit's own
// summary, so a crash or an aborted run cannot pass as a clean one.
func (r *Report) Consistent() error {
	if !r.Summary {
		return fmt.Errorf("no CUnit run summary: the suite crashed or aborted at start-up")
	}
	if r.Total != r.Ran || r.Ran != len(r.Results) || r.Failed != r.Count(Fail) {
		return fmt.Errorf("CUnit summary (total %d, ran %d, failed %d) disagrees with %d parsed tests (%d failed)",
			r.Total, r.Ran, r.Failed, len(r.Results), r.Count(Fail))
	}
	if r.SuitesFailed != 0 {
		return fmt.Errorf("%d suites failed to initialise (login failure?)", r.SuitesFailed)
	}
	return nil
}

var (
	suiteRe  = regexp.MustCompile(`^Suite: (.*)$`)
	testRe   = regexp.MustCompile(`^  Test: (.*?) \.\.\.(.*)$`)
	testsRe  = regexp.MustCompile(`^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)
	suitesRe = regexp.MustCompile(`^\s+suites\s+(\d+)\s+(\d+)\s+\S+\s+(\d+)`)
)

// ParseCUnit reads iscsi-test-cu's default (verbose) output. The verdict
// word "passed" or "FAILED" follows a test's log lines, glued either to the
// end of a line (after the test's own output) or to the start of one (then
// what follows is suite clean-up output). "[FAILED]" log lines are not
// verdicts.
func ParseCUnit(r io.Reader) (*Report, error) {
	rep := &Report{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var suite, test string
	inTest, skipped := false, false
	for sc.Scan() {
		line := sc.Text()
		if m := suiteRe.FindStringSubmatch(line); m != nil {
			suite = strings.TrimSpace(m[1])
			continue
		}
		rest := line
		if m := testRe.FindStringSubmatch(line); m != nil {
			test, rest, inTest, skipped = m[1], m[2], true, false
		}
		if !inTest {
			if m := testsRe.FindStringSubmatch(line); m != nil {
				rep.Summary = true
				rep.Total, rep.Ran, rep.Passed, rep.Failed = atoi(m[1]), atoi(m[2]), atoi(m[3]), atoi(m[4])
			}
			if m := suitesRe.FindStringSubmatch(line); m != nil {
				rep.SuitesTotal, rep.SuitesFailed = atoi(m[1]), atoi(m[3])
			}
			continue
		}
		s := strings.TrimSpace(rest)
		var v Verdict
		switch {
		case strings.HasPrefix(s, "passed"):
			v = Pass
		case strings.HasPrefix(s, "FAILED"):
			v = Fail
		default:
			if strings.Contains(s, "[SKIPPED]") {
				skipped = true
			}
			if strings.HasSuffix(s, "passed") {
				v = Pass
			} else if strings.HasSuffix(s, "FAILED") && !strings.HasSuffix(s, "[FAILED]") {
				v = Fail
			}
		}
		if v == "" {
			continue
		}
		if v == Pass && skipped {
			v = Skip
		}
		rep.Results = append(rep.Results, Result{Name: suite + "." + test, Verdict: v})
		inTest = false
	}
	return rep, sc.Err()
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
