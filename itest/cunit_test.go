package itest

import (
	"strings"
	"testing"
)

const sampleRun = `
Suite: GetLBAStatus
  Test: Simple ...passed
  Test: BeyondEol ...    [FAILED] GET_LBA_STATUS successful but should have failed
FAILED
    1. test_get_lba_status_beyond_eol.c:38  - CU_ASSERT_EQUAL(_r,0)
  Test: UnmapSingle ...    [SKIPPED] Logical unit is fully provisioned. Skipping test
passed
Suite: WriteSame10
  Test: UnmapVPD ...    [FAILED] WRITESAME10 command failed
passed
  Test: Async ...passed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.

Run Summary:    Type  Total    Ran Passed Failed Inactive
              suites     2      2    n/a      0        0
               tests      5      5      4      1        0
`

func TestParseCUnit(t *testing.T) {
	r, err := ParseCUnit(strings.NewReader(sampleRun))
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{"GetLBAStatus.Simple", Pass}, {"GetLBAStatus.BeyondEol", Fail}, {"GetLBAStatus.UnmapSingle", Skip},
		{"WriteSame10.UnmapVPD", Pass}, {"WriteSame10.Async", Pass},
	}
	if len(r.Results) != len(want) {
		t.Fatalf("got %v", r.Results)
	}
	for i := range want {
		if r.Results[i] != want[i] {
			t.Errorf("result %d = %v, want %v", i, r.Results[i], want[i])
		}
	}
	if err := r.Consistent(); err != nil {
		t.Error(err)
	}
	if r.Count(Fail) != 1 || r.FailedTests()[0] != "GetLBAStatus.BeyondEol" {
		t.Errorf("failed = %v", r.FailedTests())
	}
	r2, _ := ParseCUnit(strings.NewReader("Suite: X\n  Test: A ...passed\n"))
	if r2.Consistent() == nil {
		t.Error("a run without summary was accepted")
	}
}
