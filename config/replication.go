package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"hastor/replication/genid"
)

// Node is one entry of the file's nodes list: a host that runs hastord
// with this file.
type Node struct {
	// Name identifies the node: 1..63 characters of a-z, 0-9 and '-',
	// unique in the file. hastord finds its own entry by its host name (the
	// full name, then its first label) or by --node NAME.
	Name string `yaml:"name"`
	// StateDir overrides the top-level state_dir on this node (several
	// nodes on one host: labs and tests). Resolved like state_dir.
	StateDir string `yaml:"state_dir"`
	// ControlSocket overrides control_socket on this node. A relative path
	// is under the node's state directory. Default: the top-level
	// control_socket if given, else hastord.sock under the node's state
	// directory.
	ControlSocket string `yaml:"control_socket"`
}

// Replication makes a LUN a replicated resource: its data is mirrored
// synchronously to a second node, as DRBD does.
type Replication struct {
	// Protocol says when a write is acknowledged to the initiator (DRBD's
	// protocols): "A" once on the local disk and handed to the send queue;
	// "B" once the peer also received it; "C" once it is also on the
	// peer's disk. FUA writes and SYNCHRONIZE CACHE always wait for the
	// peer's disk. Default "C": no acknowledged write is lost when one
	// node dies. A and B lower latency and can lose the last writes if
	// the primary dies.
	Protocol string `yaml:"protocol"`
	// Secret authenticates the two nodes to each other (HMAC-SHA256
	// challenge-response on every connection): at least 16 bytes, the
	// same on both. Give exactly one of secret and secret_file (a file
	// other users cannot read; one trailing newline is ignored).
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Nodes maps the resource's two node names (from the top-level nodes
	// list) to their backing storage.
	Nodes map[string]ReplicaNode `yaml:"nodes"`
	// Paths are the replication paths, 1..8: each maps both node names to
	// "ip:port", the address that node uses on that path (the accepting
	// node listens on it, the dialing node connects from its IP).
	Paths []ReplicationPath `yaml:"paths"`
	// ConnectionsPerPath is the number of data TCP connections per path,
	// 1..16, default 2; each path also has one control connection for
	// acks and pings. Messages go to the connection with the fewest bytes
	// queued (DRBD 9.2's load-balance-paths).
	ConnectionsPerPath int `yaml:"connections_per_path"`
	// CRC adds a CRC32C to every replication message, to catch corruption
	// the TCP checksum misses (DRBD's data-integrity-alg). Default false.
	CRC bool `yaml:"crc"`
	// TLS, when present, encrypts the replication connections (mutual
	// TLS 1.3). Each node's certificate must name the node (DNS SAN).
	TLS *TLS `yaml:"tls"`
	// Timeout: a connection whose peer does not answer within timeout
	// after a ping is dropped (DRBD's timeout). 100ms..60s, default 6s.
	Timeout Duration `yaml:"timeout"`
	// PingInterval is how often idle connections are pinged (DRBD's
	// ping-int). 100ms..120s, default 10s.
	PingInterval Duration `yaml:"ping_interval"`
	// KoCount: a peer that leaves a write unanswered for timeout ×
	// ko_count is disconnected, and the primary goes on alone, marking
	// what the peer misses (DRBD's ko-count). 0..1000, default 7; 0 waits
	// as long as the connections answer pings.
	KoCount int `yaml:"ko_count"`
	// ALExtents is the activity-log size in 4 MiB extents, 7..65534,
	// default 1237 (about 4.8 GiB of hot data). After a primary crash
	// only these extents are resynced; more extents mean fewer metadata
	// writes for scattered I/O and a longer resync after a crash.
	ALExtents int `yaml:"al_extents"`
	// SplitBrain is what happens when both nodes changed the data while
	// apart: "disconnect" (default: both refuse to connect until the admin
	// discards one side with hastorctl), "discard-zero-changes" (a node
	// that wrote nothing takes the other's data) or
	// "discard-younger-primary" (the node promoted later discards).
	SplitBrain string `yaml:"split_brain"`
	// Resync configures resynchronisation.
	Resync Resync `yaml:"resync"`

	dialer string // set by validation: see Dials
}

// ReplicaNode is one node's storage for a replicated LUN.
type ReplicaNode struct {
	// Path is the backing image file or block device on this node.
	// Default: the LUN's path. A relative path is under the node's state
	// directory.
	Path string `yaml:"path"`
	// Meta is where the replication metadata lives: "internal" (default:
	// at the end of the backing device, which loses that much space) or
	// the path of an external metadata file or device (relative: under
	// the node's state directory).
	Meta string `yaml:"meta"`
}

// ReplicationPath maps each node's name to its "ip:port" on one path.
type ReplicationPath map[string]string

// TLS names the PEM files for replication TLS.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// Resync configures resynchronisation.
type Resync struct {
	// MaxRate caps resync in bytes per second; 0 (default) is no cap:
	// when the volume is idle, resync runs as fast as link and disks allow.
	MaxRate ByteSize `yaml:"max_rate"`
	// MinRate is what resync keeps while the application writes (it yields
	// the rest). Default 16MiB; at most max_rate when that is set.
	MinRate ByteSize `yaml:"min_rate"`
	// Checksum sends only the blocks whose SHA-256 differs between the
	// nodes (DRBD's csums-alg): less traffic, more reading. Default false.
	Checksum bool `yaml:"checksum"`
}

// Defaults and limits of replication settings.
const (
	MinReplicationSecretLen = 16
	MaxReplicationPaths     = 8
	defaultReplTimeout      = Duration(6 * time.Second)
	defaultPingInterval     = Duration(10 * time.Second)
	defaultKoCount          = 7
	defaultALExtents        = 1237
	defaultMinRate          = 16 * MiB
)

// Replicated reports whether l is a replicated LUN.
func (l *LUN) Replicated() bool { return l.Replication != nil }

// Peer returns the name of the resource's other node.
func (r *Replication) Peer(local string) string {
	for n := range r.Nodes {
		if n != local {
			return n
		}
	}
	return ""
}

// Dials reports whether node local dials the replication connections:
// the one of the two listed first in the top-level nodes list (it also
// breaks generation-identifier ties). Set by validation.
func (r *Replication) Dials(local string) bool { return r.dialer == local }

// MetaPathFor returns where node's metadata lives: internal, or the
// external path resolved under stateDir.
func (r *Replication) MetaPathFor(node, stateDir string) (internal bool, path string) {
	m := r.Nodes[node].Meta
	if m == "" || m == "internal" {
		return true, ""
	}
	if filepath.IsAbs(m) {
		return false, filepath.Clean(m)
	}
	return false, filepath.Join(stateDir, m)
}

// LocalNode returns this host's entry in the nodes list: the one named
// name (hastord --node), or else the one matching the host name. It
// returns nil, nil when the file lists no nodes and name is empty.
func (c *Config) LocalNode(name string) (*Node, error) {
	host, _ := os.Hostname()
	return c.localNode(name, host)
}

func (c *Config) localNode(name, host string) (*Node, error) {
	if len(c.Nodes) == 0 {
		if name != "" {
			return nil, fmt.Errorf("--node %s given, but the file lists no nodes", name)
		}
		return nil, nil
	}
	var names []string
	for i := range c.Nodes {
		names = append(names, c.Nodes[i].Name)
	}
	find := func(n string) *Node {
		for i := range c.Nodes {
			if strings.EqualFold(c.Nodes[i].Name, n) {
				return &c.Nodes[i]
			}
		}
		return nil
	}
	if name != "" {
		if n := find(name); n != nil {
			return n, nil
		}
		return nil, fmt.Errorf("--node %s: the file lists nodes %s", name, strings.Join(names, ", "))
	}
	if n := find(host); n != nil {
		return n, nil
	}
	if label, _, ok := strings.Cut(host, "."); ok {
		if n := find(label); n != nil {
			return n, nil
		}
	}
	return nil, fmt.Errorf("this host is %q, which is not in the nodes list (%s): run hastord with --node NAME", host, strings.Join(names, ", "))
}

// StateDirFor returns node n's state directory (n nil: state_dir).
func (c *Config) StateDirFor(n *Node) string {
	if n != nil && n.StateDir != "" {
		return n.StateDir
	}
	return c.StateDir
}

// ControlSocketFor returns node n's control socket (n nil: control_socket).
func (c *Config) ControlSocketFor(n *Node) string {
	if n != nil && n.ControlSocket != "" {
		return n.ControlSocket
	}
	return c.ControlSocket
}

// LUNPathFor returns the absolute path of l's backing storage on node n:
// the node's own path for a replicated LUN, else the LUN's path; relative
// paths are under the node's state directory.
func (c *Config) LUNPathFor(l *LUN, n *Node) string {
	p := l.Path
	if l.Replication != nil && n != nil {
		if rn, ok := l.Replication.Nodes[n.Name]; ok && rn.Path != "" {
			p = rn.Path
		}
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.StateDirFor(n), p)
}

// checkNodes validates the nodes list and fills in node defaults.
func (v *validator) checkNodes(cfg *Config) {
	seen := map[string]string{}
	for i := range cfg.Nodes {
		n := &cfg.Nodes[i]
		path := "nodes[" + strconv.Itoa(i) + "]"
		np := path + ".name"
		switch {
		case n.Name == "":
			v.addf(np, "required: the node's name, e.g. its host name")
		case len(n.Name) > 63 || strings.Trim(n.Name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "":
			v.addf(np, "must be 1..63 characters of a-z, 0-9 and '-', got %q", n.Name)
		default:
			if first, dup := seen[n.Name]; dup {
				v.addf(np, "node %q is already listed as %s", n.Name, first)
			}
			seen[n.Name] = np
		}
		if n.StateDir != "" {
			n.StateDir = v.resolve(n.StateDir)
		}
		sd := cfg.StateDirFor(n)
		switch {
		case n.ControlSocket != "":
			if !filepath.IsAbs(n.ControlSocket) {
				n.ControlSocket = filepath.Join(sd, n.ControlSocket)
			}
		case v.present["control_socket"]:
			n.ControlSocket = cfg.ControlSocket
		case sd != "":
			n.ControlSocket = filepath.Join(sd, "hastord.sock")
		}
		if len(n.ControlSocket) > maxSocketPath {
			v.addf(path+".control_socket", "%s is %d bytes; unix sockets allow at most %d", n.ControlSocket, len(n.ControlSocket), maxSocketPath)
		}
	}
}

// replAddrs finds replication addresses used twice by one node.
type replAddrs map[string]string // node + " " + ip:port → key path

// checkReplication validates l's replication section at path.
func (v *validator) checkReplication(cfg *Config, l *LUN, path string, addrs replAddrs) {
	r := l.Replication
	if len(cfg.Nodes) == 0 {
		v.addf(path, "a replicated LUN needs the top-level nodes list, naming the hosts that run hastord")
		return
	}
	if l.ReadOnly {
		v.addf(path, "a read_only LUN cannot be replicated")
	}
	pp := path + ".protocol"
	switch strings.ToUpper(r.Protocol) {
	case "":
		r.Protocol = "C"
	case "A", "B", "C":
		r.Protocol = strings.ToUpper(r.Protocol)
	default:
		v.addf(pp, "must be A, B or C, got %q", r.Protocol)
	}
	sp, fp := path+".secret", path+".secret_file"
	switch {
	case v.present[sp] && v.present[fp]:
		v.addf(path, "give secret or secret_file, not both")
	case r.SecretFile != "":
		s, msg := v.readSecret(r.SecretFile)
		if msg != "" {
			v.addf(fp, "%s", msg)
		} else {
			r.Secret = s
			sp = fp
		}
	case r.Secret == "":
		v.addf(path, "needs secret or secret_file: the shared secret that authenticates the two nodes")
	}
	if r.Secret != "" && (len(r.Secret) < MinReplicationSecretLen || len(r.Secret) > MaxSecretLen) {
		v.addf(sp, "must be %d..%d bytes long, got %d", MinReplicationSecretLen, MaxSecretLen, len(r.Secret))
	}
	known := map[string]int{}
	for i, n := range cfg.Nodes {
		known[n.Name] = i
	}
	np := path + ".nodes"
	var names []string
	for name := range r.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := known[name]; !ok {
			v.addf(np+"."+name, "%q is not in the top-level nodes list", name)
		}
	}
	if len(r.Nodes) != 2 {
		v.addf(np, "must name exactly two nodes, got %d (three-node replication is not supported yet)", len(r.Nodes))
	} else if known[names[0]] <= known[names[1]] {
		r.dialer = names[0]
	} else {
		r.dialer = names[1]
	}
	for _, name := range names {
		rn := r.Nodes[name]
		if rn.Path == "" && l.Path == "" {
			v.addf(np+"."+name+".path", "required (or give the LUN a path that both nodes use)")
		}
		if rn.Meta != "" && rn.Meta != "internal" && strings.ContainsRune(rn.Meta, 0) {
			v.addf(np+"."+name+".meta", "must not contain a NUL byte")
		}
	}
	ps := path + ".paths"
	switch {
	case len(r.Paths) == 0:
		v.addf(ps, "at least one replication path is required, e.g. {%s: \"10.0.1.1:7789\", ...}", strings.Join(names, ": ..., "))
	case len(r.Paths) > MaxReplicationPaths:
		v.addf(ps, "at most %d paths, got %d", MaxReplicationPaths, len(r.Paths))
	}
	for i, p := range r.Paths {
		pi := ps + "[" + strconv.Itoa(i) + "]"
		for name, addr := range p {
			ap := pi + "." + name
			if _, ok := r.Nodes[name]; !ok {
				v.addf(ap, "%q is not one of the resource's nodes (%s)", name, strings.Join(names, ", "))
				continue
			}
			a, err := netip.ParseAddrPort(addr)
			if err != nil || a.Port() == 0 || a.Addr().IsUnspecified() {
				v.addf(ap, "want ip:port of this node on the path, e.g. 10.0.1.1:7789 or [2001:db8::1]:7789, got %q", addr)
				continue
			}
			p[name] = a.String()
			key := name + " " + a.String()
			if first, dup := addrs[key]; dup {
				v.addf(ap, "node %s already uses %s in %s", name, a, first)
			} else {
				addrs[key] = ap
			}
		}
		for _, name := range names {
			if _, ok := p[name]; !ok {
				v.addf(pi, "needs an address for node %s", name)
			}
		}
	}
	intRange := func(key string, p *int, def, lo, hi int) {
		kp := path + "." + key
		if !v.present[kp] {
			*p = def
		} else if *p < lo || *p > hi {
			v.addf(kp, "must be %d..%d, got %d", lo, hi, *p)
		}
	}
	intRange("connections_per_path", &r.ConnectionsPerPath, 2, 1, 16)
	intRange("ko_count", &r.KoCount, defaultKoCount, 0, 1000)
	intRange("al_extents", &r.ALExtents, defaultALExtents, 7, 65534)
	durRange := func(key string, p *Duration, def, lo, hi Duration) {
		kp := path + "." + key
		if !v.present[kp] {
			*p = def
		} else if *p < lo || *p > hi {
			v.addf(kp, "must be %v..%v, got %v", time.Duration(lo), time.Duration(hi), time.Duration(*p))
		}
	}
	durRange("timeout", &r.Timeout, defaultReplTimeout, Duration(100*time.Millisecond), Duration(time.Minute))
	durRange("ping_interval", &r.PingInterval, defaultPingInterval, Duration(100*time.Millisecond), Duration(2*time.Minute))
	sb := path + ".split_brain"
	if r.SplitBrain == "" {
		r.SplitBrain = "disconnect"
	} else if _, err := genid.ParsePolicy(r.SplitBrain); err != nil {
		v.addf(sb, "must be disconnect, discard-zero-changes or discard-younger-primary, got %q", r.SplitBrain)
	}
	if !v.present[path+".resync.min_rate"] {
		r.Resync.MinRate = defaultMinRate
		if r.Resync.MaxRate != 0 && r.Resync.MaxRate < r.Resync.MinRate {
			r.Resync.MinRate = r.Resync.MaxRate
		}
	} else if r.Resync.MaxRate != 0 && r.Resync.MinRate > r.Resync.MaxRate {
		v.addf(path+".resync.min_rate", "must be at most max_rate (%s), got %s", r.Resync.MaxRate, r.Resync.MinRate)
	}
	if r.TLS != nil {
		tp := path + ".tls"
		for key, f := range map[string]*string{"cert_file": &r.TLS.CertFile, "key_file": &r.TLS.KeyFile, "ca_file": &r.TLS.CAFile} {
			if *f == "" {
				v.addf(tp+"."+key, "required when tls is given")
			} else {
				*f = v.resolve(*f)
			}
		}
	}
	if lp := parentPath(path); !v.present[lp+".size"] {
		dev := true
		for _, name := range names {
			p := r.Nodes[name].Path
			if p == "" {
				p = l.Path
			}
			dev = dev && strings.HasPrefix(p, "/dev/")
		}
		if !dev {
			v.addf(lp+".size", "required for image files, e.g. 10GiB (the size of the whole file, metadata included when it is internal)")
		}
	}
}
