package itest

import (
	"strings"
	"testing"
	"time"

	"hastor/internal/hastordtest"
)

// The same configuration gives byte-identical LUN identity (VPD pages 80h
// and 83h: serial number, NAA and port designators) on any node, so an
// initiator sees one LUN through either node. Two daemons with their own
// state directories and ports stand in for two nodes.
func TestLUNIdentityIsTheSameOnEveryNode(t *testing.T) {
	hastordtest.RequireTool(t, "iscsi-inq")
	cfg := lunConfig("lun0.img", "64MiB", "")
	a := hastordtest.Start(t, hastordtest.Options{Config: cfg})
	b := hastordtest.Start(t, hastordtest.Options{Config: cfg})
	for _, page := range []string{"128", "131"} {
		pa := mustRun(t, time.Minute, nil, "iscsi-inq", "-e", "1", "-c", page, url(a, ""))
		pb := mustRun(t, time.Minute, nil, "iscsi-inq", "-e", "1", "-c", page, url(b, ""))
		if pa != pb || len(pa) == 0 {
			t.Errorf("VPD page %s differs between nodes:\n%s\n---\n%s", page, pa, pb)
		}
	}
	// A different volume_id gives a different identity.
	c := hastordtest.Start(t, hastordtest.Options{Config: strings.Replace(cfg, "itest-lun0", "other-volume", 1)})
	if mustRun(t, time.Minute, nil, "iscsi-inq", "-e", "1", "-c", "131", url(c, "")) == mustRun(t, time.Minute, nil, "iscsi-inq", "-e", "1", "-c", "131", url(a, "")) {
		t.Error("two volumes share an identity")
	}
}
