package itest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hastor/internal/hastordtest"
)

// Discovery and inquiry with libiscsi's own tools (the README's example).
func TestDiscoveryAndInquiry(t *testing.T) {
	hastordtest.RequireTool(t, "iscsi-ls")
	d := hastordtest.Start(t, hastordtest.Options{Config: lunConfig("lun0.img", "64MiB", "")})
	out := mustRun(t, time.Minute, nil, "iscsi-ls", "-s", "iscsi://"+d.Addr)
	if !strings.Contains(out, "Target:"+targetIQN+" Portal:"+d.Addr+",1") || !strings.Contains(out, "Lun:0") {
		t.Fatalf("iscsi-ls output:\n%s", out)
	}
	out = mustRun(t, time.Minute, nil, "iscsi-inq", "-e", "1", "-c", "128", url(d, ""))
	if !strings.Contains(out, "Unit Serial Number:") {
		t.Fatalf("iscsi-inq serial:\n%s", out)
	}
	out = mustRun(t, time.Minute, nil, "iscsi-readcapacity16", url(d, ""))
	if !strings.Contains(out, "Total size:67108864") {
		t.Fatalf("readcapacity16:\n%s", out)
	}
	d.CheckLog(t)
}

// CHAP one-way and mutual through libiscsi; wrong credentials and denied
// initiators are refused.
func TestCHAPAndACLWithLibiscsi(t *testing.T) {
	hastordtest.RequireTool(t, "iscsi-inq")
	auth := `    auth:
      chap: {username: alice, secret: alice-secret-123}
      mutual_chap: {username: hastor, secret: target-secret-456}
    initiators:
      allow: [` + ini1 + `, ` + ini2 + `]
      deny: [` + ini2 + `]
`
	d := hastordtest.Start(t, hastordtest.Options{Config: lunConfig("lun0.img", "64MiB", auth)})
	mutual := []string{"LIBISCSI_CHAP_TARGET_USERNAME=hastor", "LIBISCSI_CHAP_TARGET_PASSWORD=target-secret-456"}
	if out, err := run(t, time.Minute, mutual, "iscsi-inq", "-i", ini1, url(d, "alice%alice-secret-123")); err != nil {
		t.Fatalf("mutual CHAP login failed: %v\n%s\n%s", err, out, d.Log())
	}
	cases := []struct {
		name  string
		env   []string
		ini   string
		creds string
	}{
		{"wrong secret", mutual, ini1, "alice%wrong-secret-000"},
		{"wrong user", mutual, ini1, "mallory%alice-secret-123"},
		{"no credentials", nil, ini1, ""},
		{"target fails mutual check", []string{"LIBISCSI_CHAP_TARGET_USERNAME=hastor", "LIBISCSI_CHAP_TARGET_PASSWORD=not-the-secret"}, ini1, "alice%alice-secret-123"},
		{"denied initiator", mutual, ini2, "alice%alice-secret-123"},
		{"initiator not on allow list", mutual, "iqn.2026-11.dev.hastor:stranger", "alice%alice-secret-123"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := run(t, time.Minute, c.env, "iscsi-inq", "-i", c.ini, url(d, c.creds))
			if err == nil {
				t.Fatalf("login succeeded:\n%s", out)
			}
		})
	}
	// One-way CHAP on a target without mutual CHAP.
	oneway := `    auth:
      chap: {username: alice, secret: alice-secret-123}
`
	d2 := hastordtest.Start(t, hastordtest.Options{Config: lunConfig("lun1.img", "64MiB", oneway)})
	mustRun(t, time.Minute, nil, "iscsi-inq", url(d2, "alice%alice-secret-123"))
	if out, err := run(t, time.Minute, nil, "iscsi-inq", url(d2, "alice%bad-secret-0000")); err == nil {
		t.Fatalf("one-way CHAP with a bad secret succeeded:\n%s", out)
	}
	d.CheckLog(t)
	d2.CheckLog(t)
}

// Header digests on (libiscsi does not implement data digests; the kernel
// initiator test in internal/uml covers both).
func TestHeaderDigestWithLibiscsi(t *testing.T) {
	hastordtest.RequireTool(t, "iscsi-test-cu")
	// libiscsi offers "None,CRC32C"; a target that requires digests
	// accepts only CRC32C, so CRC32C is chosen.
	d := hastordtest.Start(t, hastordtest.Options{Config: lunConfigISCSI("lun0.img", "64MiB", "", "  header_digest: [CRC32C]\n")})
	u := url(d, "")
	out, err := run(t, 5*time.Minute, nil, "iscsi-test-cu", "-d", "--test=SCSI.Read10,SCSI.Write10,SCSI.Verify10,SCSI.WriteVerify10", "-i", ini1, u)
	rep, _ := ParseCUnit(strings.NewReader(out))
	if rep.Consistent() != nil || rep.Count(Fail) > 0 || rep.Count(Pass) < 10 {
		t.Fatalf("digest run: %v\n%s", err, tail(out, 4000))
	}
	if !strings.Contains(d.Log(), "header_digest=true") {
		t.Fatalf("header digest was not negotiated:\n%s", d.Log())
	}
	d.CheckLog(t)
}

// Many commands in flight: iscsi-perf keeps 64 reads and then writes
// queued per session for a few seconds, on two sessions at once.
func TestManyCommandsInFlight(t *testing.T) {
	hastordtest.RequireTool(t, "iscsi-perf")
	d := hastordtest.Start(t, hastordtest.Options{Config: lunConfig("lun0.img", "64MiB", "")})
	type res struct {
		out string
		err error
	}
	ch := make(chan res, 2)
	for k := range 2 {
		go func() {
			out, err := run(t, 2*time.Minute, nil, "iscsi-perf", "-i", fmt.Sprintf("%s-%d", ini1, k), "-m", "64", "-b", "8", "-t", "3", "-r", url(d, ""))
			ch <- res{out, err}
		}()
	}
	for range 2 {
		r := <-ch
		// iscsi-perf exits non-zero when its timer ends the run; judge by
		// its output instead.
		if !strings.Contains(r.out, "iops average") || strings.Contains(strings.ToLower(r.out), "error") {
			t.Fatalf("iscsi-perf: %v\n%s", r.err, r.out)
		}
		t.Logf("iscsi-perf: %s", lastLine(r.out))
	}
	d.CheckLog(t)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// A LUN on a real block device: a loop device over a file, opened with
// O_DIRECT, through the read/write/verify conformance suites.
func TestLoopDeviceLUN(t *testing.T) {
	hastordtest.RequireRoot(t)
	hastordtest.RequireTool(t, "losetup")
	hastordtest.RequireTool(t, "iscsi-test-cu")
	dir := hastordtest.DiskDir(t)
	img := filepath.Join(dir, "loop.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(mustRun(t, time.Minute, nil, "losetup", "--find", "--show", img))
	t.Cleanup(func() { run(t, time.Minute, nil, "losetup", "-d", dev) })
	d := hastordtest.Start(t, hastordtest.Options{Config: lunConfig(dev, "", "")})
	if !strings.Contains(d.Log(), "path="+dev) {
		t.Fatalf("LUN not on %s:\n%s", dev, d.Log())
	}
	u := url(d, "")
	out, err := run(t, 5*time.Minute, nil, "iscsi-test-cu", "-d", "--test=SCSI.Read10,SCSI.Write10,SCSI.Write16,SCSI.Verify16,SCSI.WriteVerify16,SCSI.ReadCapacity16", "-i", ini1, u)
	rep, _ := ParseCUnit(strings.NewReader(out))
	if rep.Consistent() != nil || rep.Count(Fail) > 0 || rep.Count(Pass) < 20 {
		t.Fatalf("loop device run: %v\n%s", err, tail(out, 4000))
	}
	out = mustRun(t, time.Minute, nil, "iscsi-readcapacity16", u)
	if !strings.Contains(out, "Total size:67108864") {
		t.Fatalf("capacity of the loop LUN:\n%s", out)
	}
	d.CheckLog(t)
}
