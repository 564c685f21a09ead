package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits checked by validation.
const (
	MaxLUN         = 16383 // flat space addressing (SAM-5 §4.7.7)
	MaxVolumeIDLen = 64
	MinSecretLen   = 12 // RFC 7143 §12.1.3: at least 96 bits
	MaxSecretLen   = 255
	MinLUNSize     = MiB
	maxTextLen     = 255 // RFC 7143 §6.1: default limit of a text value
	maxSecretFile  = 4096
)

const defaultNopIn = Duration(30e9)

var defaultPortals = []string{"0.0.0.0:3260"}

// validator collects the problems of one file. It lives for one parse.
type validator struct {
	opt      parseOptions
	data     []byte // the file, for hints in YAML syntax errors
	problems []Problem
	lines    map[string]int  // key path → line of its value
	present  map[string]bool // key paths with a non-null value
	bad      map[string]bool // key paths whose value is already reported
	fatal    bool            // decoded values are unreliable; skip check
	budget   int             // walk's node budget
}

// addf reports a problem at path, unless path or one of its parents already
// has a problem, which would make this one noise.
func (v *validator) addf(path, format string, args ...any) {
	if !v.ok(path) {
		return
	}
	v.problems = append(v.problems, Problem{Field: path, Message: fmt.Sprintf(format, args...), Line: v.line(path)})
}

// badf reports a problem with the value at path and marks it bad.
func (v *validator) badf(path string, line int, format string, args ...any) {
	v.problems = append(v.problems, Problem{Field: path, Message: fmt.Sprintf(format, args...), Line: line})
	v.bad[path] = true
}

func (v *validator) fatalf(path, format string, args ...any) {
	v.fatalAt(path, v.line(path), fmt.Sprintf(format, args...))
}

func (v *validator) fatalAt(path string, line int, msg string) {
	v.problems = append(v.problems, Problem{Field: path, Message: msg, Line: line})
	v.fatal = true
}

// ok reports whether none of paths, nor any of their parents, is bad.
func (v *validator) ok(paths ...string) bool {
	for _, p := range paths {
		for ; p != ""; p = parentPath(p) {
			if v.bad[p] {
				return false
			}
		}
	}
	return true
}

// line returns the line of path, or of its nearest parent that has one.
func (v *validator) line(path string) int {
	for ; path != ""; path = parentPath(path) {
		if l, ok := v.lines[path]; ok {
			return l
		}
	}
	return 0
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// check applies defaults to cfg and validates it (step 4 of parse).
func (v *validator) check(cfg *Config) {
	v.checkStateDir(cfg)
	v.checkPortals(cfg)
	v.checkNegotiation(&cfg.ISCSI, "iscsi")
	v.checkAuth(&cfg.Discovery.Auth, "discovery.auth")
	if len(cfg.Targets) == 0 {
		v.addf("targets", "at least one target is required")
	}
	iqns := map[string]string{}
	volumes := map[string]string{}
	paths := newPathSet()
	v.checkControlSocket(cfg)
	v.checkNodes(cfg)
	addrs := replAddrs{}
	for i := range cfg.Targets {
		v.checkTarget(cfg, &cfg.Targets[i], "targets["+strconv.Itoa(i)+"]", iqns, volumes, paths, addrs)
	}
}

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

func (v *validator) checkControlSocket(cfg *Config) {
	const path = "control_socket"
	if !v.ok("state_dir") || cfg.StateDir == "" {
		return
	}
	switch {
	case cfg.ControlSocket == "":
		cfg.ControlSocket = filepath.Join(cfg.StateDir, "hastord.sock")
	case strings.ContainsRune(cfg.ControlSocket, 0):
		v.addf(path, "must not contain a NUL byte")
		return
	case !filepath.IsAbs(cfg.ControlSocket):
		cfg.ControlSocket = filepath.Join(cfg.StateDir, cfg.ControlSocket)
	default:
		cfg.ControlSocket = filepath.Clean(cfg.ControlSocket)
	}
	if len(cfg.ControlSocket) > maxSocketPath {
		v.addf(path, "%s is %d bytes long; a unix socket path may have at most %d: set control_socket to a shorter path, e.g. /run/hastord.sock",
			cfg.ControlSocket, len(cfg.ControlSocket), maxSocketPath)
	}
}

// checkEncryption validates an encrypted LUN's settings. full is the LUN's
// resolved path and info its stat result (nil if it does not exist).
func (v *validator) checkEncryption(l *LUN, path, full string, info fs.FileInfo) {
	e := l.Encryption
	// A replicated LUN's header travels with its data: only the node
	// forced primary first needs it formatted, the other gets it by sync.
	if info == nil && !strings.HasPrefix(full, "/dev/") && l.Replication == nil {
		v.addf(path+".path", "%s does not exist; an encrypted LUN's image must be formatted first: hastorctl format --size %s %s",
			full, l.Size, full)
	}
	if e.KeyFile == "" {
		return
	}
	kp := path + ".encryption.key_file"
	if strings.ContainsRune(e.KeyFile, 0) {
		v.addf(kp, "must not contain a NUL byte")
		return
	}
	e.KeyFile = v.resolve(e.KeyFile)
	ki, err := v.opt.fs.Stat(e.KeyFile)
	if err != nil {
		v.addf(kp, "cannot read %s: %v", e.KeyFile, unwrapPathError(err))
		return
	}
	if msg := checkKeyFileInfo(e.KeyFile, ki); msg != "" {
		v.addf(kp, "%s", msg)
	}
}

// maxKeyFile bounds an encryption key file, as cryptsetup's default
// --keyfile-size limit (8 MiB) does; crypt.MaxKeyFile, which hastord and
// hastorctl read key files with, is the same.
const maxKeyFile = 8 << 20

func checkKeyFileInfo(p string, info fs.FileInfo) string {
	switch {
	case !info.Mode().IsRegular():
		return fmt.Sprintf("%s is not a regular file", p)
	case info.Mode().Perm()&0o044 != 0:
		return fmt.Sprintf("%s is readable by other users (mode %04o); run: chmod go-r %s", p, info.Mode().Perm(), p)
	case info.Size() == 0:
		return fmt.Sprintf("%s is empty; it must hold the passphrase of a keyslot", p)
	case info.Size() > maxKeyFile:
		return fmt.Sprintf("%s is larger than %d bytes", p, maxKeyFile)
	}
	return ""
}

func (v *validator) checkStateDir(cfg *Config) {
	const path = "state_dir"
	if cfg.StateDir == "" {
		v.addf(path, "required: the directory for hastord's state and for relative LUN paths, e.g. /var/lib/hastor")
		return
	}
	if strings.ContainsRune(cfg.StateDir, 0) {
		v.addf(path, "must not contain a NUL byte")
		return
	}
	cfg.StateDir = v.resolve(cfg.StateDir)
	info, err := v.opt.fs.Stat(cfg.StateDir)
	switch {
	case err == nil && !info.IsDir():
		v.addf(path, "%s exists but is not a directory", cfg.StateDir)
	case err != nil && !isNotExist(err):
		v.addf(path, "cannot check %s: %v", cfg.StateDir, unwrapPathError(err))
	}
}

// resolve makes p absolute against the base directory.
func (v *validator) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(v.opt.baseDir, p)
}

func (v *validator) checkPortals(cfg *Config) {
	if !v.present["portals"] && cfg.Portals == nil {
		cfg.Portals = append([]string(nil), defaultPortals...)
		return
	}
	if len(cfg.Portals) == 0 {
		v.addf("portals", "must list at least one address; leave the key out for the default %q", defaultPortals[0])
		return
	}
	seen := make([]netip.AddrPort, len(cfg.Portals))
	for i, p := range cfg.Portals {
		path := "portals[" + strconv.Itoa(i) + "]"
		ap, msg := parsePortal(p)
		if msg != "" {
			v.addf(path, "%s", msg)
			continue
		}
		cfg.Portals[i] = ap.String()
		seen[i] = ap
		for j := range i {
			if o := seen[j]; o.IsValid() && portalsClash(o, ap) {
				if o == ap {
					v.addf(path, "duplicate of portals[%d]", j)
				} else {
					v.addf(path, "%s and portals[%d] %s use the same port and overlap; listening on both would fail", ap, j, o)
				}
				break
			}
		}
	}
}

// parsePortal parses "ip:port". It returns a message when p is invalid.
func parsePortal(p string) (netip.AddrPort, string) {
	host, port, err := net.SplitHostPort(p)
	if err != nil {
		return netip.AddrPort{}, fmt.Sprintf("want ip:port such as 0.0.0.0:3260 or [::]:3260, got %q", p)
	}
	if host == "" {
		return netip.AddrPort{}, fmt.Sprintf("%q has no address; use 0.0.0.0:%s for all IPv4 addresses or [::]:%s for all addresses", p, port, port)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Sprintf("host %q is not an IP address (names are not looked up)", host)
	}
	if addr.Zone() != "" {
		return netip.AddrPort{}, fmt.Sprintf("address %q has a zone; zones name host interfaces and are not allowed in a file shared by all nodes", host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, fmt.Sprintf("port must be 1..65535, got %q", port)
	}
	return netip.AddrPortFrom(addr, uint16(n)), ""
}

// portalsClash reports whether listening on both a and b could fail: the same
// address and port, or the same port where one is a wildcard. A wildcard
// counts as taking the port on every address of both families, because Go
// listens on 0.0.0.0 and [::] with one dual-stack socket.
func portalsClash(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	x, y := a.Addr().Unmap(), b.Addr().Unmap()
	return x == y || x.IsUnspecified() || y.IsUnspecified()
}

// intRule is a default and a range for an int field of Negotiation.
type intRule struct {
	key      string
	ptr      *int
	def      int
	min, max int
}

func negotiationInts(n *Negotiation) []intRule {
	const maxLen = 1<<24 - 1 // RFC 7143 §13.12-13.14
	return []intRule{
		{"max_recv_data_segment_length", &n.MaxRecvDataSegmentLength, 262144, 512, maxLen},
		{"max_burst_length", &n.MaxBurstLength, 1 << 20, 512, maxLen},
		{"first_burst_length", &n.FirstBurstLength, 65536, 512, maxLen},
		{"max_outstanding_r2t", &n.MaxOutstandingR2T, 8, 1, 65535},
		{"queue_depth", &n.QueueDepth, 128, 1, 4096},
		{"default_time2wait", &n.DefaultTime2Wait, 2, 0, 3600},
		{"default_time2retain", &n.DefaultTime2Retain, 20, 0, 3600},
	}
}

func (v *validator) checkNegotiation(n *Negotiation, path string) {
	for _, r := range negotiationInts(n) {
		p := joinPath(path, r.key)
		if !v.present[p] {
			*r.ptr = r.def
			continue
		}
		if *r.ptr < r.min || *r.ptr > r.max {
			v.addf(p, "must be %d..%d, got %d", r.min, r.max, *r.ptr)
			v.bad[p] = true
		}
	}
	if v.ok(path+".first_burst_length", path+".max_burst_length") && n.FirstBurstLength > n.MaxBurstLength {
		v.addf(path+".first_burst_length", "must not exceed max_burst_length (%d), got %d", n.MaxBurstLength, n.FirstBurstLength)
	}
	if !v.present[path+".immediate_data"] {
		n.ImmediateData = true
	}
	n.HeaderDigest = v.checkDigests(n.HeaderDigest, path+".header_digest")
	n.DataDigest = v.checkDigests(n.DataDigest, path+".data_digest")

	if !v.present[path+".nop_in_interval"] {
		n.NopInInterval = defaultNopIn
	} else if d := n.NopInInterval; d != 0 && (d < Duration(1e9) || d > Duration(3600e9)) {
		v.addf(path+".nop_in_interval", "must be 0 (off) or 1s..1h, got %s", d)
	}
	if !v.present[path+".nop_in_timeout"] {
		n.NopInTimeout = defaultNopIn
	} else if d := n.NopInTimeout; d < Duration(1e9) || d > Duration(3600e9) {
		v.addf(path+".nop_in_timeout", "must be 1s..1h, got %s", d)
	}
}

// checkDigests validates a digest list and returns it in canonical spelling,
// or the default when the key is absent.
func (v *validator) checkDigests(list []string, path string) []string {
	if !v.present[path] && list == nil {
		return []string{DigestCRC32C, DigestNone}
	}
	if len(list) == 0 {
		v.addf(path, "must list at least one of %q and %q; leave the key out for both", DigestCRC32C, DigestNone)
		return list
	}
	for i, d := range list {
		p := path + "[" + strconv.Itoa(i) + "]"
		switch {
		case strings.EqualFold(d, DigestCRC32C):
			list[i] = DigestCRC32C
		case strings.EqualFold(d, DigestNone):
			list[i] = DigestNone
		default:
			v.addf(p, "want %q or %q, got %q", DigestCRC32C, DigestNone, d)
			continue
		}
		for j := range i {
			if list[j] == list[i] {
				v.addf(p, "duplicate of %s[%d]", path, j)
				break
			}
		}
	}
	return list
}

func (v *validator) checkAuth(a *Auth, path string) {
	var one string
	if a.CHAP != nil {
		one = v.checkCredential(a.CHAP, path+".chap")
	}
	if a.MutualCHAP == nil {
		return
	}
	mp := path + ".mutual_chap"
	two := v.checkCredential(a.MutualCHAP, mp)
	if a.CHAP == nil {
		v.addf(mp, "needs chap as well: the initiator must authenticate before the target does")
		return
	}
	if one != "" && one == two {
		v.addf(mp, "secret must differ from the chap secret (RFC 7143 §12.1.3 forbids one secret for both directions)")
	}
}

// checkCredential validates c, reads its secret file if any, and returns
// the secret, or "" if it is invalid.
func (v *validator) checkCredential(c *Credential, path string) string {
	up := path + ".username"
	switch {
	case c.Username == "":
		v.addf(up, "required")
	default:
		if msg := checkText(c.Username); msg != "" {
			v.addf(up, "%s", msg)
		}
	}
	sp, fp := path+".secret", path+".secret_file"
	switch {
	case v.present[sp] && v.present[fp]:
		v.addf(path, "give secret or secret_file, not both")
		return ""
	case c.SecretFile != "":
		s, msg := v.readSecret(c.SecretFile)
		if msg != "" {
			v.addf(fp, "%s", msg)
			return ""
		}
		c.Secret = s
		sp = fp
	case c.Secret == "":
		v.addf(path, "needs secret or secret_file")
		return ""
	}
	if n := len(c.Secret); n < MinSecretLen || n > MaxSecretLen {
		v.addf(sp, "secret must be %d..%d bytes long (RFC 7143 §12.1.3 asks for at least 96 bits), got %d bytes",
			MinSecretLen, MaxSecretLen, n)
		return ""
	}
	return c.Secret
}

// readSecret reads a secret file. It returns the secret, or a message that
// says what is wrong. The message never contains the secret.
func (v *validator) readSecret(name string) (string, string) {
	if strings.ContainsRune(name, 0) {
		return "", "must not contain a NUL byte"
	}
	p := v.resolve(name)
	info, err := v.opt.fs.Stat(p)
	if err != nil {
		return "", fmt.Sprintf("cannot read %s: %v", p, unwrapPathError(err))
	}
	if msg := checkSecretInfo(p, info); msg != "" {
		return "", msg
	}
	f, err := v.opt.fs.Open(p)
	if err != nil {
		return "", fmt.Sprintf("cannot read %s: %v", p, unwrapPathError(err))
	}
	defer f.Close()
	// Check again through the open file, in case the path changed.
	if info, err = f.Stat(); err != nil {
		return "", fmt.Sprintf("cannot read %s: %v", p, unwrapPathError(err))
	}
	if msg := checkSecretInfo(p, info); msg != "" {
		return "", msg
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Sprintf("cannot read %s: %v", p, unwrapPathError(err))
	}
	if len(data) > maxSecretFile {
		return "", fmt.Sprintf("%s is larger than %d bytes; it should hold only the secret", p, maxSecretFile)
	}
	s := string(data)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	return s, ""
}

func checkSecretInfo(p string, info fs.FileInfo) string {
	switch {
	case !info.Mode().IsRegular():
		return fmt.Sprintf("%s is not a regular file", p)
	case info.Mode().Perm()&0o004 != 0:
		return fmt.Sprintf("%s is readable by all users (mode %04o); run: chmod o-r %s", p, info.Mode().Perm(), p)
	case info.Size() > maxSecretFile:
		return fmt.Sprintf("%s is larger than %d bytes; it should hold only the secret", p, maxSecretFile)
	}
	return ""
}

// checkText returns a message if s is not short printable UTF-8.
func checkText(s string) string {
	if len(s) > maxTextLen {
		return fmt.Sprintf("must be at most %d bytes, got %d", maxTextLen, len(s))
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Sprintf("must not contain control character %q", r)
		}
	}
	return ""
}

func (v *validator) checkTarget(cfg *Config, t *Target, path string, iqns, volumes map[string]string, paths *pathSet, addrs replAddrs) {
	ip := path + ".iqn"
	if err := checkISCSIName(t.IQN); err != nil {
		v.addf(ip, "%v", err)
	} else if first, dup := iqns[t.IQN]; dup {
		v.addf(ip, "%s is already used by %s", t.IQN, first)
	} else {
		iqns[t.IQN] = ip
	}
	if msg := checkText(t.Alias); msg != "" {
		v.addf(path+".alias", "%s", msg)
	}
	v.checkAuth(&t.Auth, path+".auth")
	t.Initiators.compile(path+".initiators", func(field, msg string) { v.addf(field, "%s", msg) })

	if len(t.LUNs) == 0 {
		v.addf(path+".luns", "at least one LUN is required")
	}
	numbers := map[int]string{}
	for i := range t.LUNs {
		lp := path + ".luns[" + strconv.Itoa(i) + "]"
		l := &t.LUNs[i]
		np := lp + ".lun"
		switch {
		case !v.present[np]:
			v.addf(np, "required: the LUN number, 0..%d", MaxLUN)
		case l.LUN < 0 || l.LUN > MaxLUN:
			v.addf(np, "must be 0..%d, got %d", MaxLUN, l.LUN)
		default:
			if first, dup := numbers[l.LUN]; dup {
				v.addf(np, "LUN %d is already used by %s", l.LUN, first)
			} else if v.ok(np) {
				numbers[l.LUN] = np
			}
		}
		if l.Replication != nil {
			v.checkReplication(cfg, l, lp+".replication", addrs)
		}
		v.checkLUN(cfg, l, lp, volumes, paths)
	}
}

func (v *validator) checkLUN(cfg *Config, l *LUN, path string, volumes map[string]string, paths *pathSet) {
	vp := path + ".volume_id"
	switch {
	case l.VolumeID == "":
		v.addf(vp, "required: the volume's lasting identity, e.g. %q", "db-vol1")
	case len(l.VolumeID) > MaxVolumeIDLen:
		v.addf(vp, "must be at most %d characters, got %d", MaxVolumeIDLen, len(l.VolumeID))
	case strings.Trim(l.VolumeID, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") != "":
		v.addf(vp, "may hold only A-Z, a-z, 0-9, '.', '_', ':' and '-', got %q", l.VolumeID)
	default:
		key := strings.ToLower(l.VolumeID)
		if first, dup := volumes[key]; dup {
			v.addf(vp, "volume %q is already used by %s (volume IDs are compared without regard to case)", l.VolumeID, first)
		} else if v.ok(vp) {
			volumes[key] = vp
		}
	}

	bp := path + ".block_size"
	if !v.present[bp] {
		l.BlockSize = 512
	} else if l.BlockSize != 512 && l.BlockSize != 4096 {
		v.addf(bp, "must be 512 or 4096, got %d", l.BlockSize)
		v.bad[bp] = true
	}

	sp := path + ".size"
	if v.present[sp] {
		switch {
		case l.Size < MinLUNSize:
			v.addf(sp, "must be at least %s, got %s", MinLUNSize, l.Size)
		case v.ok(bp) && l.Size%ByteSize(l.BlockSize) != 0:
			v.addf(sp, "must be a multiple of block_size (%d), got %s (%d bytes)", l.BlockSize, l.Size, int64(l.Size))
		}
	}

	if l.ThinProvisioning != nil && *l.ThinProvisioning && l.Encryption != nil {
		v.addf(path+".thin_provisioning", "an encrypted LUN is always fully provisioned (deallocated blocks would show where data is); remove thin_provisioning or set it to false")
	}

	pp := path + ".path"
	if l.Replication != nil {
		// Each node has its own copy; their paths are checked on the node
		// that opens them (the local node is not known here).
		if strings.ContainsRune(l.Path, 0) {
			v.addf(pp, "must not contain a NUL byte")
		}
		return
	}
	switch {
	case l.Path == "":
		v.addf(pp, "required: an image file (relative paths are under state_dir) or a block device")
		return
	case strings.ContainsRune(l.Path, 0):
		v.addf(pp, "must not contain a NUL byte")
		return
	case !v.ok("state_dir") || cfg.StateDir == "":
		return // cannot resolve
	}
	full := cfg.LUNPath(l)
	if full == cfg.StateDir {
		v.addf(pp, "must name a file or device, not state_dir itself")
		return
	}
	info, err := v.opt.fs.Stat(full)
	switch {
	case err != nil && !isNotExist(err):
		v.addf(pp, "cannot check %s: %v", full, unwrapPathError(err))
		return
	case err != nil: // missing
		info = nil
	case info.IsDir():
		v.addf(pp, "%s is a directory; name an image file or a block device", full)
		return
	case info.Mode()&fs.ModeDevice != 0 && info.Mode()&fs.ModeCharDevice != 0:
		v.addf(pp, "%s is a character device; name an image file or a block device", full)
		return
	case !info.Mode().IsRegular() && info.Mode()&fs.ModeDevice == 0:
		v.addf(pp, "%s is not a regular file or a block device (mode %s)", full, info.Mode())
		return
	}
	blockDev := info != nil && info.Mode()&fs.ModeDevice != 0 ||
		info == nil && strings.HasPrefix(full, "/dev/")
	if !blockDev && !v.present[sp] {
		v.addf(sp, "required for an image file, e.g. 10GiB (only a block device may leave it out)")
	}
	if l.Encryption != nil {
		v.checkEncryption(l, path, full, info)
	}
	if first := paths.add(full, info, pp); first != "" {
		v.addf(pp, "%s is already used by %s", full, first)
	}
}

// pathSet finds LUNs that share a file: by resolved path, and for existing
// files also by identity (hard links, symlinks).
type pathSet struct {
	byName map[string]string // resolved path → key path of first use
	infos  []struct {
		info fs.FileInfo
		path string
	}
}

func newPathSet() *pathSet { return &pathSet{byName: map[string]string{}} }

// add records full for the LUN at path. It returns the earlier LUN's key path
// if the file is already in use, else "".
func (s *pathSet) add(full string, info fs.FileInfo, path string) string {
	if first, dup := s.byName[full]; dup {
		return first
	}
	s.byName[full] = path
	if info != nil {
		for _, e := range s.infos {
			if os.SameFile(e.info, info) {
				return e.path
			}
		}
		s.infos = append(s.infos, struct {
			info fs.FileInfo
			path string
		}{info, path})
	}
	return ""
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// unwrapPathError drops the path from an os error, because the messages
// above already name the path.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
