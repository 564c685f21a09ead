package config

import (
	"strings"
	"testing"
	"time"
)

const replicatedDoc = `
state_dir: /var/lib/hastor
nodes:
  - name: alpha
  - name: beta
    state_dir: /srv/beta
targets:
  - iqn: iqn.2026-11.dev.hastor:t
    luns:
      - lun: 0
        volume_id: vm0
        path: vm0.img
        size: 1GiB
        replication:
          secret: "a-long-shared-secret"
          nodes:
            alpha: {}
            beta: {path: /dev/vg/vm0, meta: vm0.meta}
          paths:
            - {alpha: "10.0.1.1:7789", beta: "10.0.1.2:7789"}
            - {alpha: "[2001:db8::1]:7789", beta: "[2001:db8::2]:7789"}
`

func TestReplicatedLUN(t *testing.T) {
	cfg := mustParse(t, replicatedDoc, nil)
	l := &cfg.Targets[0].LUNs[0]
	r := l.Replication
	if !l.Replicated() || r.Protocol != "C" || r.ConnectionsPerPath != 2 || r.KoCount != 7 || r.ALExtents != 1237 ||
		time.Duration(r.Timeout) != 6*time.Second || r.SplitBrain != "disconnect" || r.Resync.MinRate != 16*MiB {
		t.Errorf("defaults: %+v", r)
	}
	if !r.Dials("alpha") || r.Dials("beta") || r.Peer("alpha") != "beta" || r.Peer("beta") != "alpha" {
		t.Error("alpha, listed first, must dial")
	}
	a, err := cfg.LocalNode("alpha")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := cfg.LocalNode("BETA")
	if got := cfg.LUNPathFor(l, a); got != "/var/lib/hastor/vm0.img" {
		t.Errorf("alpha's path %q", got)
	}
	if got := cfg.LUNPathFor(l, b); got != "/dev/vg/vm0" {
		t.Errorf("beta's path %q", got)
	}
	if in, p := r.MetaPathFor("beta", cfg.StateDirFor(b)); in || p != "/srv/beta/vm0.meta" {
		t.Errorf("beta's metadata: %v %q", in, p)
	}
	if in, _ := r.MetaPathFor("alpha", cfg.StateDirFor(a)); !in {
		t.Error("alpha's metadata is internal")
	}
	if cfg.ControlSocketFor(a) != "/var/lib/hastor/hastord.sock" || cfg.ControlSocketFor(b) != "/srv/beta/hastord.sock" {
		t.Errorf("control sockets %q %q", cfg.ControlSocketFor(a), cfg.ControlSocketFor(b))
	}
	if r.Paths[1]["alpha"] != "[2001:db8::1]:7789" {
		t.Errorf("path address %q", r.Paths[1]["alpha"])
	}
}

func TestLocalNode(t *testing.T) {
	cfg := mustParse(t, replicatedDoc, nil)
	for _, tc := range []struct{ name, host, want, err string }{
		{"", "alpha", "alpha", ""},
		{"", "beta.example.net", "beta", ""},
		{"", "gamma", "", "run hastord with --node NAME"},
		{"beta", "alpha", "beta", ""},
		{"delta", "alpha", "", "the file lists nodes alpha, beta"},
	} {
		n, err := cfg.localNode(tc.name, tc.host)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q/%q: %v, want %q", tc.name, tc.host, err, tc.err)
			}
		case err != nil || n.Name != tc.want:
			t.Errorf("%q/%q: %v %v, want %s", tc.name, tc.host, n, err, tc.want)
		}
	}
	plain := mustParse(t, "state_dir: /x\ntargets: [{iqn: iqn.2026-11.dev.hastor:t, luns: [{lun: 0, volume_id: v, path: v.img, size: 1GiB}]}]\n", nil)
	if n, err := plain.localNode("", "h"); n != nil || err != nil {
		t.Errorf("no nodes: %v %v", n, err)
	}
	if _, err := plain.localNode("a", "h"); err == nil {
		t.Error("--node without a nodes list accepted")
	}
}

func TestReplicationProblems(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"no nodes list", "nodes:\n  - name: alpha\n  - name: beta\n    state_dir: /srv/beta\n", "", "needs the top-level nodes list"},
		{"unknown node", "beta: {path: /dev/vg/vm0, meta: vm0.meta}", "gamma: {}", `"gamma" is not in the top-level nodes list`},
		{"one node", "            beta: {path: /dev/vg/vm0, meta: vm0.meta}\n", "", "exactly two nodes"},
		{"bad protocol", `secret: "a-long-shared-secret"`, "secret: \"a-long-shared-secret\"\n          protocol: D", "must be A, B or C"},
		{"short secret", `"a-long-shared-secret"`, `"short"`, "must be 16..255 bytes"},
		{"no paths", "          paths:\n            - {alpha: \"10.0.1.1:7789\", beta: \"10.0.1.2:7789\"}\n            - {alpha: \"[2001:db8::1]:7789\", beta: \"[2001:db8::2]:7789\"}\n", "", "at least one replication path"},
		{"bad address", `"10.0.1.2:7789"`, `"storage-b:7789"`, "want ip:port"},
		{"path misses a node", `{alpha: "10.0.1.1:7789", beta: "10.0.1.2:7789"}`, `{alpha: "10.0.1.1:7789"}`, "needs an address for node beta"},
		{"address reused", `"[2001:db8::1]:7789"`, `"10.0.1.1:7789"`, "node alpha already uses 10.0.1.1:7789"},
		{"bad policy", `secret: "a-long-shared-secret"`, "secret: \"a-long-shared-secret\"\n          split_brain: coin-toss", "must be disconnect"},
		{"timeout range", `secret: "a-long-shared-secret"`, "secret: \"a-long-shared-secret\"\n          timeout: 2m", "must be 100ms..1m0s"},
		{"read only", "size: 1GiB\n", "size: 1GiB\n        read_only: true\n", "cannot be replicated"},
		{"bad node name", "  - name: alpha\n", "  - name: Alpha_1\n", "must be 1..63 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(replicatedDoc, tc.from, tc.to, 1)
			if doc == replicatedDoc {
				t.Fatalf("test case does not change the document")
			}
			_, err := parseFake(doc, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a problem containing %q", err, tc.want)
			}
		})
	}
}

// TestEncryptedReplicatedLUN: an encrypted LUN may be replicated, and its
// image need not exist yet (the header comes with the first sync on the
// node that does not format it).
func TestEncryptedReplicatedLUN(t *testing.T) {
	doc := strings.Replace(replicatedDoc, "        size: 1GiB\n", "        size: 1GiB\n        encryption: {}\n", 1)
	cfg := mustParse(t, doc, nil)
	if l := &cfg.Targets[0].LUNs[0]; !l.Encrypted() || !l.Replicated() {
		t.Fatalf("encrypted %v, replicated %v", l.Encrypted(), l.Replicated())
	}
}
