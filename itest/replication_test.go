package itest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hastor/internal/ackcheck"
	"hastor/internal/control"
	"hastor/internal/hastordtest"
	"hastor/internal/initiator"
	"hastor/internal/netnstest"
	"hastor/replication/meta"
)

const replIQN = "iqn.2026-11.dev.hastor:repl"

// replCluster is two hastord nodes, alpha and beta, in two network
// namespaces joined by two veth pairs (two replication paths). Each node
// serves iSCSI on 127.0.0.1:port inside its own namespace.
type replCluster struct {
	t      *testing.T
	net    *netnstest.Net
	ns     [2]*netnstest.NS
	links  [2]*netnstest.Link
	dir    string
	cfg    string
	port   int
	daemon [2]*hastordtest.Daemon
	names  [2]string
}

// replConfig is the one configuration file both nodes use.
func replConfig(dir string, proto string, size string, extra string) string {
	return fmt.Sprintf(`state_dir: %[1]s/shared
portals: ["127.0.0.1:{{PORT}}"]
nodes:
  - name: alpha
    state_dir: %[1]s/alpha
  - name: beta
    state_dir: %[1]s/beta
targets:
  - iqn: %[2]s
    luns:
      - lun: 0
        volume_id: r0
        path: r0.img
        size: %[4]s
        block_size: 4096
        replication:
          protocol: %[3]s
          secret: "a-long-shared-replication-secret"
          timeout: 2s
          ping_interval: 1s
          nodes:
            alpha: {}
            beta: {}
          paths:
            - {alpha: "10.91.1.1:7789", beta: "10.91.1.2:7789"}
            - {alpha: "10.91.2.1:7789", beta: "10.91.2.2:7789"}
%[5]s`, dir, replIQN, proto, size, extra)
}

func newReplCluster(t *testing.T, proto, size, extra string) *replCluster {
	hastordtest.RequireRoot(t)
	c := &replCluster{t: t, net: netnstest.New(t), dir: hastordtest.DiskDir(t), names: [2]string{"alpha", "beta"}}
	c.ns[0] = c.net.Namespace("a")
	c.ns[1] = c.net.Namespace("b")
	c.links[0] = c.net.Link(c.ns[0], "10.91.1.1/24", c.ns[1], "10.91.1.2/24")
	c.links[1] = c.net.Link(c.ns[0], "10.91.2.1/24", c.ns[1], "10.91.2.2/24")
	c.cfg = replConfig(c.dir, proto, size, extra)
	c.port = hastordtest.FreePort(t)
	for _, n := range c.names {
		os.MkdirAll(filepath.Join(c.dir, n), 0o700)
	}
	return c
}

// start starts node i.
func (c *replCluster) start(i int) {
	c.daemon[i] = hastordtest.Start(c.t, hastordtest.Options{
		Config:   c.cfg,
		Netns:    c.ns[i].Name(),
		Port:     c.port,
		StateDir: filepath.Join(c.dir, "shared"),
		Args:     []string{"--node", c.names[i]},
	})
}

func (c *replCluster) socket(i int) string { return filepath.Join(c.dir, c.names[i], "hastord.sock") }

func (c *replCluster) image(i int) string { return filepath.Join(c.dir, c.names[i], "r0.img") }

// ctl runs hastorctl against node i and fails the test on error.
func (c *replCluster) ctl(i int, args ...string) string {
	c.t.Helper()
	out, err := c.ctlErr(i, args...)
	if err != nil {
		c.t.Fatalf("hastorctl %s on %s: %v\n%s", strings.Join(args, " "), c.names[i], err, out)
	}
	return out
}

func (c *replCluster) ctlErr(i int, args ...string) (string, error) {
	cmd := exec.Command(hastordtest.Hastorctl(c.t), append([]string{args[0], "--socket", c.socket(i)}, args[1:]...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// status returns node i's replication status.
func (c *replCluster) status(i int) *control.ReplicationStatus {
	c.t.Helper()
	out := c.ctl(i, "status", "--json")
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("status --json: %v\n%s", err, out)
	}
	for _, v := range st.Volumes {
		if v.Replication != nil {
			return v.Replication
		}
	}
	c.t.Fatalf("no replicated volume in status:\n%s", out)
	return nil
}

// waitFor polls node i's status until ok holds.
func (c *replCluster) waitFor(i int, what string, ok func(*control.ReplicationStatus) bool) *control.ReplicationStatus {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := c.status(i)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: waited 2 minutes for %s; status: %+v", c.names[i], what, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func inSync(st *control.ReplicationStatus) bool {
	return st.Connection == "Connected" && st.Disk == "UpToDate" && st.PeerDisk == "UpToDate" && st.OutOfSync == 0
}

// login logs in to node i's target from inside its namespace as ini1.
func (c *replCluster) login(ctx context.Context, i int) *initiator.Session {
	c.t.Helper()
	return c.loginAs(ctx, i, ini1)
}

// loginAs logs in to node i's target from inside its namespace as
// initiator name.
func (c *replCluster) loginAs(ctx context.Context, i int, name string) *initiator.Session {
	c.t.Helper()
	nc, err := c.ns[i].DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(c.port))
	if err != nil {
		c.t.Fatal(err)
	}
	s := initiator.New(nc)
	c.t.Cleanup(func() { s.Close() })
	if err := s.Login(ctx, initiator.Options{InitiatorName: name, TargetName: replIQN}); err != nil {
		c.t.Fatalf("login to %s as %s: %v", c.names[i], name, err)
	}
	if err := s.WaitReady(ctx, 0); err != nil {
		c.t.Fatalf("TEST UNIT READY on %s: %v", c.names[i], err)
	}
	return s
}

// dataHash hashes the first size bytes (the replicated data area) of
// node i's image.
func (c *replCluster) dataHash(i int, size int64) string {
	c.t.Helper()
	f, err := os.Open(c.image(i))
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, size); err != nil {
		c.t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// lunSize returns the replicated LUN's size as node i serves it.
func (c *replCluster) lunSize(i int) int64 {
	out := c.ctl(i, "status", "--json")
	var st control.Status
	json.Unmarshal([]byte(out), &st)
	return st.Volumes[0].Size
}

// writePattern writes n blocks of 4 KiB from block first with data
// derived from seed through session s.
func writePattern(ctx context.Context, t *testing.T, s *initiator.Session, first, n uint64, seed byte) {
	t.Helper()
	const chunk = 64 // blocks per WRITE
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	sem := make(chan struct{}, 16)
	for b := first; b < first+n; b += chunk {
		k := min(chunk, first+n-b)
		p := make([]byte, k*4096)
		for i := range p {
			p[i] = byte(uint64(i)*7+b) ^ seed
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.Write16(ctx, 0, initiator.LBA(b), p, 4096, false); err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

// TestReplicationFirstFullSync: a new resource is made primary with
// --force on alpha, written to while beta is down, and then beta's first
// full sync makes both data areas identical (compared by hash), also after
// replicated writes and an UNMAP that both nodes carry out.
func TestReplicationFirstFullSync(t *testing.T) {
	c := newReplCluster(t, "C", "64MiB", "")
	c.start(0)
	c.ctl(0, "primary", "--force", "r0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := c.login(ctx, 0)
	writePattern(ctx, t, s, 0, 4096, 0x5A) // 16 MiB before the peer exists
	c.start(1)
	st := c.waitFor(0, "the full sync to finish", inSync)
	c.waitFor(1, "beta UpToDate", inSync)
	writePattern(ctx, t, s, 2048, 1024, 0xA5) // replicated writes
	// A replicated UNMAP: both nodes punch the range out of their images.
	used := [2]int64{allocated(t, c.image(0)), allocated(t, c.image(1))}
	if err := unmap(ctx, s, 0, 2560, 256); err != nil {
		t.Fatalf("UNMAP on the replicated LUN: %v", err)
	}
	if got := getLBAStatus(ctx, t, s, 0, 2560); len(got) == 0 || got[0] != (lbaRun{2560, 256, true}) {
		t.Fatalf("GET LBA STATUS after the UNMAP: %+v", got)
	}
	c.waitFor(0, "no pending requests", func(st *control.ReplicationStatus) bool { return st.Counters.Pending == 0 })
	for i := range 2 {
		if freed := used[i] - allocated(t, c.image(i)); freed < 1<<20 {
			t.Errorf("%s: the UNMAP of 1 MiB freed %d bytes", c.names[i], freed)
		}
	}
	size := c.lunSize(0)
	c.daemon[0].Stop(t)
	c.daemon[1].Stop(t)
	if a, b := c.dataHash(0, size), c.dataHash(1, size); a != b {
		t.Fatalf("data areas differ after the full sync: %s vs %s", a, b)
	}
	t.Logf("full sync: %d bytes resynced; status %+v", st.Counters.ResyncBytes, st)
}

// syncedCluster starts both nodes, makes alpha primary and waits for the
// first full sync.
func syncedCluster(t *testing.T, proto, size string) *replCluster {
	c := newReplCluster(t, proto, size, "")
	c.start(0)
	c.start(1)
	c.ctl(0, "primary", "--force", "r0")
	c.waitFor(0, "the first full sync", inSync)
	c.waitFor(1, "beta UpToDate", inSync)
	return c
}

// TestReplicationKillPrimaryProtocolC: with protocol C, every write
// acknowledged to the initiator is on both disks. Stamped writes run 32 at
// a time on alpha; alpha is killed with SIGKILL while they are in flight;
// beta is promoted and every block is checked through beta.
func TestReplicationKillPrimaryProtocolC(t *testing.T) {
	c := syncedCluster(t, "C", "64MiB")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := c.login(ctx, 0)
	m, err := ackcheck.NewModel(ackcheck.Layout{BlockSize: 4096, First: 0, Count: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	killed := make(chan struct{})
	stats, err := ackcheck.Run(ctx, ackcheck.SessionDevice(s, 0, 4096), m, ackcheck.RunOptions{
		QueueDepth: 32,
		Duration:   20 * time.Second,
		OnAck: func(acked int64) {
			if acked == 3000 {
				once.Do(func() {
					go func() {
						c.daemon[0].Kill()
						close(killed)
					}()
				})
			}
		},
	})
	<-killed
	t.Logf("writer: %+v (ended with %v)", stats, err)
	c.waitFor(1, "beta to notice", func(st *control.ReplicationStatus) bool { return st.Connection != "Connected" })
	c.ctl(1, "primary", "r0")
	s2 := c.login(ctx, 1)
	rep, err := ackcheck.Verify(ctx, ackcheck.SessionDevice(s2, 0, 4096), m, ackcheck.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verify on beta: %s", rep)
	if !rep.OK() {
		t.Fatalf("acknowledged writes lost on the promoted secondary:\n%s", rep)
	}
	if rep.Acked == 0 {
		t.Fatal("no acknowledged write was checked")
	}
	// alpha comes back as a crashed primary: the extents its activity log
	// held are resynced from beta, the new primary, together with what
	// beta wrote since (nothing here), and not the whole device.
	before := c.status(1).Counters.ResyncBytes
	c.start(0)
	st := c.waitFor(1, "alpha to resync from beta", inSync)
	c.waitFor(0, "alpha in sync", inSync)
	resynced := st.Counters.ResyncBytes - before
	t.Logf("after alpha's restart: resynced %d bytes (of %d in the LUN; the writer used the first 16 MiB, 4 extents)", resynced, c.lunSize(1))
	if resynced == 0 || resynced >= c.lunSize(1) {
		t.Fatalf("resynced %d bytes after a primary crash; want its activity-log extents, not the whole device", resynced)
	}
	size := c.lunSize(1)
	s2.Close()
	c.daemon[0].Stop(t)
	c.daemon[1].Stop(t)
	if a, b := c.dataHash(0, size), c.dataHash(1, size); a != b {
		t.Fatal("data areas differ after the crashed primary's resync")
	}
}

// TestReplicationResyncOnlyChanged: kill the secondary, keep writing on
// the primary, restart the secondary: only the blocks written while it was
// down are resynced.
func TestReplicationResyncOnlyChanged(t *testing.T) {
	c := syncedCluster(t, "C", "64MiB")
	before := c.status(0).Counters.ResyncBytes
	c.daemon[1].Kill()
	c.waitFor(0, "alpha to notice", func(st *control.ReplicationStatus) bool { return st.Connection == "Connecting" })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := c.login(ctx, 0)
	const blocks = 1536 // 6 MiB, in 64-block writes spread over the LUN
	for k := uint64(0); k < blocks/64; k++ {
		writePattern(ctx, t, s, k*256, 64, byte(k))
	}
	written := int64(blocks * 4096)
	if st := c.status(0); st.OutOfSync != written {
		t.Fatalf("out of sync on alpha: %d, want %d", st.OutOfSync, written)
	}
	c.start(1)
	st := c.waitFor(0, "the resync", inSync)
	resynced := st.Counters.ResyncBytes - before
	t.Logf("written while beta was down: %d bytes; resynced: %d bytes", written, resynced)
	if resynced != written {
		t.Fatalf("resynced %d bytes, want %d (only the blocks written while disconnected)", resynced, written)
	}
	size := c.lunSize(0)
	c.daemon[0].Stop(t)
	c.daemon[1].Stop(t)
	if a, b := c.dataHash(0, size), c.dataHash(1, size); a != b {
		t.Fatal("data areas differ after the resync")
	}
}

// TestReplicationPathDown: one path goes down during writes; replication
// goes on over the other; when it comes back it carries data again.
func TestReplicationPathDown(t *testing.T) {
	c := syncedCluster(t, "C", "64MiB")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := c.login(ctx, 0)
	writePattern(ctx, t, s, 0, 1024, 1)
	c.links[0].Down()
	writePattern(ctx, t, s, 1024, 2048, 2) // must not stall
	st := c.waitFor(0, "path 1 to be seen down", func(st *control.ReplicationStatus) bool {
		return len(st.Paths) == 2 && st.Paths[0].DataUp == 0
	})
	if st.Connection != "Connected" {
		t.Fatalf("connection with one path down: %+v", st)
	}
	c.links[0].Up()
	c.waitFor(0, "path 1 to come back", func(st *control.ReplicationStatus) bool {
		return st.Paths[0].DataUp > 0
	})
	sent := c.status(0).Paths[0].Sent
	writePattern(ctx, t, s, 0, 4096, 3)
	if st := c.status(0); st.Paths[0].Sent <= sent {
		t.Fatalf("path 1 carries no data after it came back: %+v", st.Paths)
	}
	c.waitFor(0, "in sync", inSync)
	size := c.lunSize(0)
	c.daemon[0].Stop(t)
	c.daemon[1].Stop(t)
	if a, b := c.dataHash(0, size), c.dataHash(1, size); a != b {
		t.Fatal("data areas differ")
	}
}

// TestReplicationSplitBrain: both nodes are promoted while disconnected
// and written; on reconnect the split brain is reported on both, nothing
// is overwritten, and the admin resolves it by discarding beta's changes.
func TestReplicationSplitBrain(t *testing.T) {
	c := syncedCluster(t, "C", "64MiB")
	c.ctl(0, "disconnect", "r0")
	c.ctl(1, "disconnect", "r0")
	c.ctl(1, "primary", "r0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sa, sb := c.login(ctx, 0), c.login(ctx, 1)
	writePattern(ctx, t, sa, 0, 64, 0x11)
	writePattern(ctx, t, sb, 512, 64, 0x22)
	c.ctl(0, "connect", "r0")
	c.ctl(1, "connect", "r0")
	for i := range 2 {
		st := c.waitFor(i, "split brain", func(st *control.ReplicationStatus) bool { return st.Connection == "SplitBrain" })
		if !strings.Contains(st.Message, "discard-my-data") {
			t.Fatalf("%s: the status does not say what to do: %q", c.names[i], st.Message)
		}
		out := c.ctl(i, "status")
		if !strings.Contains(out, "split brain") {
			t.Fatalf("hastorctl status does not show the split brain:\n%s", out)
		}
	}
	// Resolve: beta's changes go.
	sb.Close()
	c.ctl(1, "secondary", "r0")
	c.ctl(1, "connect", "--discard-my-data", "--yes", "r0")
	c.ctl(0, "connect", "r0")
	c.waitFor(0, "the resync after the split brain", inSync)
	c.waitFor(1, "beta in sync", inSync)
	size := c.lunSize(0)
	c.daemon[0].Stop(t)
	c.daemon[1].Stop(t)
	if a, b := c.dataHash(0, size), c.dataHash(1, size); a != b {
		t.Fatal("data areas differ after resolving the split brain")
	}
}

// TestReplicationVerifyRepairs: a block corrupted directly on the
// secondary's disk is found by hastorctl verify and repaired from the
// primary.
func TestReplicationVerifyRepairs(t *testing.T) {
	c := syncedCluster(t, "C", "64MiB")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := c.login(ctx, 0)
	writePattern(ctx, t, s, 0, 2048, 0x3C)
	c.waitFor(0, "nothing pending", func(st *control.ReplicationStatus) bool { return st.Counters.Pending == 0 })
	// Corrupt one 4 KiB block of beta's copy behind hastord's back.
	f, err := os.OpenFile(c.image(1), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("corrupted by the test"), 1000*4096+123); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
	c.ctl(0, "verify", "r0")
	st := c.waitFor(0, "the verify and its repair", func(st *control.ReplicationStatus) bool {
		return strings.Contains(st.Message, "verify done") && inSync(st)
	})
	t.Logf("after verify: %s", st.Message)
	if !strings.Contains(st.Message, "4.0 KiB out of sync") {
		t.Fatalf("verify found the wrong amount: %q", st.Message)
	}
	size := c.lunSize(0)
	c.daemon[0].Stop(t)
	c.daemon[1].Stop(t)
	if a, b := c.dataHash(0, size), c.dataHash(1, size); a != b {
		t.Fatal("the corrupted block was not repaired")
	}
}

// TestReplicationEncrypted: an encrypted LUN is replicated below its
// encryption layer. The LUKS2 header formatted on alpha reaches beta with
// the first full sync; only ciphertext crosses the wire and lands on
// beta's disk (beta's data area equals alpha's, and holds no plaintext);
// the volume opens, from its key file, on whichever node is primary, and
// after a switch-over beta serves the data alpha's initiator wrote. A key
// added through hastord on the primary reaches the peer's header.
func TestReplicationEncrypted(t *testing.T) {
	c := newReplCluster(t, "C", "64MiB", "")
	kf := filepath.Join(c.dir, "r0.key")
	if err := os.WriteFile(kf, []byte("replicated volume passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cfg = strings.Replace(c.cfg, "        block_size: 4096\n",
		"        block_size: 4096\n        encryption: {key_file: "+kf+"}\n", 1)
	mustRun(t, time.Minute, nil, hastordtest.Hastorctl(t), "format", "--key-file", kf, "--size", "64MiB",
		"--pbkdf", "pbkdf2", "--iterations", "1000", c.image(0))
	c.start(0)
	c.start(1)
	c.ctl(0, "primary", "--force", "r0")
	c.waitFor(0, "the first full sync", inSync)
	c.waitFor(1, "beta UpToDate", inSync)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.waitUnlocked(0) // from the key file, on promotion
	s := c.login(ctx, 0)
	writePattern(ctx, t, s, 0, 1024, 0x3C) // write cache off: on both disks
	size := c.lunSize(0)
	if size <= 0 || size >= 64<<20 {
		t.Fatalf("the LUN has %d bytes: want the LUKS2 data area, less than the replicated area", size)
	}
	plain := make([]byte, 4096)
	for i := range plain {
		plain[i] = byte(uint64(i)*7) ^ 0x3C
	}
	if img, err := os.ReadFile(c.image(1)); err != nil {
		t.Fatal(err)
	} else if bytes.Contains(img, plain[:512]) {
		t.Fatal("beta's disk holds plaintext")
	}
	s.Close()

	// Switch over: alpha's volume closes, beta's opens from its key file.
	c.ctl(0, "secondary", "r0")
	c.ctl(1, "primary", "r0")
	c.waitUnlocked(1)
	s = c.login(ctx, 1)
	got, err := s.Read16(ctx, 0, 0, 1, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatal("beta does not read back what alpha's initiator wrote")
	}
	if out, err := c.ctlErr(0, "unlock", "--key-file", kf, "r0"); err == nil || !strings.Contains(out, "not primary") {
		t.Fatalf("unlock on the secondary: %v\n%s", err, out)
	}
	s.Close()

	// A key change through hastord on the primary is replicated; the
	// secondary's header is not open for changes.
	kf2 := filepath.Join(c.dir, "r0.key2")
	if err := os.WriteFile(kf2, []byte("second passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := c.ctl(1, "add-key", "--volume", "r0", "--key-file", kf, "--new-key-file", kf2, "--pbkdf", "pbkdf2", "--iterations", "1000")
	t.Logf("add-key: %s", out)
	if out, err := c.ctlErr(0, "add-key", "--volume", "r0", "--key-file", kf, "--new-key-file", kf2); err == nil {
		t.Fatalf("add-key on the secondary: %s", out)
	}
	if out := c.ctl(0, "dump", c.image(0)); !strings.Contains(out, "  1: luks2") {
		t.Fatalf("alpha's own header has no keyslot 1:\n%s", out)
	}
	c.waitFor(1, "nothing pending", func(st *control.ReplicationStatus) bool { return st.Counters.Pending == 0 && inSync(st) })
	c.daemon[0].Stop(t)
	c.daemon[1].Stop(t)
	l, err := meta.PlanInternal(64<<20, meta.DefaultALExtents)
	if err != nil {
		t.Fatal(err)
	}
	repl := l.DataSize
	if a, b := c.dataHash(0, repl), c.dataHash(1, repl); a != b {
		t.Fatalf("the data areas (ciphertext and header) differ: %s vs %s", a, b)
	}
}

// waitUnlocked waits until node i's encrypted volume is unlocked.
func (c *replCluster) waitUnlocked(i int) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var st control.Status
		out := c.ctl(i, "status", "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			c.t.Fatalf("status --json: %v\n%s", err, out)
		}
		if v := st.Volumes[0]; v.Encrypted && !v.Locked && v.Replication.Role == "Primary" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: the encrypted volume stayed locked:\n%s", c.names[i], out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReplicationTLS: with replication.tls configured (one CA, and a
// certificate naming both nodes, as one shared configuration file can
// give), the nodes connect over mutual TLS, sync, and replicate writes.
// (The transport's tests cover a foreign CA being refused.)
func TestReplicationTLS(t *testing.T) {
	c := newReplCluster(t, "C", "32MiB", "")
	ca, cert, key := writeTestPKI(t, c.dir, "alpha", "beta")
	c.cfg = strings.Replace(c.cfg, "          timeout: 2s\n",
		fmt.Sprintf("          timeout: 2s\n          tls: {cert_file: %s, key_file: %s, ca_file: %s}\n", cert, key, ca), 1)
	c.start(0)
	c.start(1)
	c.ctl(0, "primary", "--force", "r0")
	c.waitFor(0, "the first full sync over TLS", inSync)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := c.login(ctx, 0)
	writePattern(ctx, t, s, 0, 512, 0x77)
	s.Close()
	c.waitFor(0, "nothing pending", func(st *control.ReplicationStatus) bool { return st.Counters.Pending == 0 && inSync(st) })
	size := c.lunSize(0)
	c.daemon[0].Stop(t)
	c.daemon[1].Stop(t)
	if a, b := c.dataHash(0, size), c.dataHash(1, size); a != b {
		t.Fatalf("data areas differ: %s vs %s", a, b)
	}
}

// writeTestPKI writes a CA certificate, and a certificate and key for
// names signed by it, as PEM files in dir.
func writeTestPKI(t *testing.T, dir string, names ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hastor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &nodeKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "node.key")
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{caFile, "CERTIFICATE", caDER}, {certFile, "CERTIFICATE", der}, {keyFile, "PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// persistentReserveOut sends PERSISTENT RESERVE OUT (SPC-4) and returns
// its SCSI status.
func persistentReserveOut(ctx context.Context, t *testing.T, s *initiator.Session, sa, typ byte, key, saKey uint64) byte {
	t.Helper()
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], key)
	binary.BigEndian.PutUint64(p[8:16], saKey)
	r, err := s.Do(ctx, 0, []byte{0x5F, sa, typ, 0, 0, 0, 0, 0, 24, 0}, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r.Status
}

// TestReplicationPersistentReservationsFailover: registrations and a
// reservation made on alpha are enforced on beta after alpha is killed
// and beta promoted, for the same I_T nexuses, before any of them acts on
// beta: a WRITE EXCLUSIVE, REGISTRANTS ONLY reservation still keeps an
// unregistered initiator from writing, and the holder keeps it.
func TestReplicationPersistentReservationsFailover(t *testing.T) {
	c := syncedCluster(t, "C", "16MiB")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := c.login(ctx, 0)
	for _, step := range []struct {
		sa, typ  byte
		key, sak uint64
	}{{0x00, 0, 0, 0xABC}, {0x01, 5, 0xABC, 0}} { // REGISTER, RESERVE (WRITE EXCLUSIVE, REGISTRANTS ONLY)
		if st := persistentReserveOut(ctx, t, s, step.sa, step.typ, step.key, step.sak); st != 0 {
			t.Fatalf("PERSISTENT RESERVE OUT %#x on alpha: status %#x", step.sa, st)
		}
	}
	holderKey := func(i int) string {
		var st control.Status
		if err := json.Unmarshal([]byte(c.ctl(i, "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		if r := st.Volumes[0].Reservations; r != nil && r.Holder != nil && r.Type == "Write Exclusive, Registrants Only" {
			return r.Holder.Key
		}
		return ""
	}
	if k := holderKey(0); k != "0x0000000000000abc" {
		t.Fatalf("hastorctl status on alpha: holder key %q", k)
	}
	c.daemon[0].Kill()
	c.waitFor(1, "beta to see alpha gone", func(st *control.ReplicationStatus) bool { return st.Connection != "Connected" })
	c.ctl(1, "primary", "r0")
	if k := holderKey(1); k != "0x0000000000000abc" {
		t.Fatalf("hastorctl status on beta after the failover: holder key %q", k)
	}

	other := c.loginAs(ctx, 1, ini2)
	r, err := other.Do(ctx, 0, []byte{0x5E, 0x01, 0, 0, 0, 0, 0, 0, 24, 0}, nil, 24) // READ RESERVATION
	if err != nil || r.Err() != nil || len(r.Data) != 24 || binary.BigEndian.Uint64(r.Data[8:16]) != 0xABC || r.Data[21] != 5 {
		t.Fatalf("READ RESERVATION on beta: %v % x", err, r.Data)
	}
	block := make([]byte, 4096)
	err = other.Write16(ctx, 0, 0, block, 4096, false)
	var se *initiator.SCSIError
	if !errors.As(err, &se) || se.Status != initiator.StatusReservation {
		t.Fatalf("write from an unregistered initiator on beta: %v, want RESERVATION CONFLICT", err)
	}
	holder := c.loginAs(ctx, 1, ini1)
	if err := holder.Write16(ctx, 0, 0, block, 4096, false); err != nil {
		t.Fatalf("write from the reservation holder on beta: %v", err)
	}
	// Changes on beta are its own: the holder releases, the other writes.
	if st := persistentReserveOut(ctx, t, holder, 0x02, 5, 0xABC, 0); st != 0 {
		t.Fatalf("RELEASE on beta: status %#x", st)
	}
	if err := other.Write16(ctx, 0, 0, block, 4096, false); err != nil {
		t.Fatalf("write after the release: %v", err)
	}
	if st := persistentReserveOut(ctx, t, holder, 0x01, 5, 0xABC, 0); st != 0 { // RESERVE again
		t.Fatalf("RESERVE on beta: status %#x", st)
	}

	// alpha comes back and takes beta's state; then hastord restarts on
	// beta, the primary: promoted again, beta takes alpha's copy when they
	// connect instead of forgetting the reservation.
	c.start(0)
	c.waitFor(1, "alpha back in sync", inSync)
	c.daemon[1].Stop(t)
	c.start(1)
	c.ctl(1, "primary", "r0")
	c.waitFor(1, "beta connected to alpha", inSync)
	if k := holderKey(1); k != "0x0000000000000abc" {
		t.Fatalf("hastorctl status on beta after its restart: holder key %q", k)
	}
	other = c.loginAs(ctx, 1, ini2)
	err = other.Write16(ctx, 0, 0, block, 4096, false)
	if !errors.As(err, &se) || se.Status != initiator.StatusReservation {
		t.Fatalf("write from an unregistered initiator after beta's restart: %v, want RESERVATION CONFLICT", err)
	}
}
