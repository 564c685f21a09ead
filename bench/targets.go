package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// errSkip marks a target that cannot run on this machine (for example
// hastord before ./cmd/hastord exists). The run goes on without it and the
// report says why.
var errSkip = errors.New("skipped")

// benchIQN is the name every target exports its LUN under.
const benchIQN = "iqn.2024-01.org.hastor.bench:lun"

// stopGrace is how long a target gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// readyTimeout bounds how long a target may take to start listening.
const readyTimeout = 20 * time.Second

// target is one thing the harness measures.
type target interface {
	// Name is the name -targets selects and the report shows.
	Name() string
	// Describe is one line for the report: what runs and how.
	Describe() string
	// Prepare finds or builds what Start needs. An error wrapping errSkip
	// means the target cannot run here; the others still run.
	Prepare(ctx context.Context, h *harness) error
	// Start starts the target on a free port, serving the backing file as
	// one LUN, and returns how fio reaches it.
	Start(ctx context.Context, h *harness) (*instance, error)
}

// instance is a started target.
type instance struct {
	// engine holds fio's engine arguments (ioengine, filename, ...).
	engine []string
	// proc is the target process whose CPU time is sampled; nil for the
	// raw file.
	proc *process
	// peer is a replicated target's secondary, sampled too; or nil.
	peer *process
	// shutdown stops everything Start started. It is called exactly once.
	shutdown func()
}

// allTargets lists every target in report order.
func allTargets() []target {
	return []target{
		rawTarget{},
		&hastordTarget{},
		&hastordTarget{crypt: true},
		&replTarget{},
		&replTarget{ramPeer: true},
		&tgtTarget{direct: true},
		&tgtTarget{direct: false},
		&istgtTarget{},
		&gotgtTarget{},
	}
}

// selectTargets returns the targets named by a comma-separated list, in
// allTargets order; "" or "all" selects all of them.
func selectTargets(list string) ([]target, error) {
	all := allTargets()
	list = strings.TrimSpace(list)
	if list == "" || list == "all" {
		return all, nil
	}
	want := map[string]bool{}
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		ok := false
		for _, t := range all {
			if t.Name() == e {
				ok = true
			}
		}
		if !ok {
			names := make([]string, len(all))
			for i, t := range all {
				names[i] = t.Name()
			}
			return nil, fmt.Errorf("%w: target %q (have %s)", errUnknownName, e, strings.Join(names, ","))
		}
		want[e] = true
	}
	var out []target
	for _, t := range all {
		if want[t.Name()] {
			out = append(out, t)
		}
	}
	return out, nil
}

// ---- raw: fio on the backing file ----

type rawTarget struct{}

func (rawTarget) Name() string { return "raw" }
func (rawTarget) Describe() string {
	return "fio directly on the backing file: libaio, O_DIRECT (the ceiling)"
}
func (rawTarget) Prepare(context.Context, *harness) error { return nil }
func (rawTarget) Start(_ context.Context, h *harness) (*instance, error) {
	return &instance{
		engine: []string{
			"--ioengine=libaio",
			"--direct=1",
			"--filename=" + strings.ReplaceAll(h.backing, ":", `\:`),
			"--size=" + strconv.FormatInt(int64(h.cfg.size), 10),
		},
		shutdown: func() {},
	}, nil
}

// ---- hastord ----

type hastordTarget struct {
	// crypt serves the backing file as an encrypted LUN: a LUKS2 volume
	// (aes-xts-plain64, 512-byte sectors like the plain LUN's blocks)
	// formatted by hastorctl at Start.
	crypt bool
	bin   string
	ctl   string // hastorctl, when crypt
}

func (t *hastordTarget) Name() string {
	if t.crypt {
		return "hastord-crypt"
	}
	return "hastord"
}

func (t *hastordTarget) Describe() string {
	if t.crypt {
		return "hastord with the LUN encrypted (LUKS2, AES-256-XTS, 512-byte sectors, formatted by hastorctl over the backing file), otherwise as hastord"
	}
	return "hastord (this project), built from ./cmd/hastord; backing file opened O_DIRECT (blockdev), write_cache on, block_size 512"
}

func (t *hastordTarget) Prepare(ctx context.Context, h *harness) error {
	if t.crypt {
		t.ctl = filepath.Join(h.cacheDir, "bench", "bin", "hastorctl")
		if _, err := runTool(ctx, nil, h.moduleRoot, "go", "build", "-o", t.ctl, "./cmd/hastorctl"); err != nil {
			return fmt.Errorf("%w: build hastorctl: %w", errSkip, err)
		}
	}
	if h.cfg.hastordBin != "" {
		t.bin = h.cfg.hastordBin
		return nil
	}
	dir := filepath.Join(h.moduleRoot, "cmd", "hastord")
	gofiles, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	if len(gofiles) == 0 {
		return fmt.Errorf("%w: %s has no Go files yet", errSkip, dir)
	}
	t.bin = filepath.Join(h.cacheDir, "bench", "bin", "hastord")
	if _, err := runTool(ctx, nil, h.moduleRoot, "go", "build", "-o", t.bin, "./cmd/hastord"); err != nil {
		return fmt.Errorf("%w: build hastord: %w", errSkip, err)
	}
	return nil
}

// hastordConfig returns the YAML config of a one-LUN hastord (the schema
// of package hastor/config). write_cache is on because tgt runs with a
// write-back cache: like for like. Everything else keeps hastord's defaults.
// A non-empty keyFile makes the LUN encrypted, unlocked with that file.
func hastordConfig(stateDir string, port int, iqn, backing string, size ByteSize, keyFile string) string {
	enc := ""
	if keyFile != "" {
		enc = fmt.Sprintf("        encryption:\n          key_file: %q\n", keyFile)
	}
	return fmt.Sprintf(`# Generated by hastor's bench harness.
state_dir: %q
portals: ["127.0.0.1:%d"]
log:
  level: warn
targets:
  - iqn: %q
    luns:
      - lun: 0
        volume_id: bench-lun0
        path: %q
        size: %d
        block_size: 512
        write_cache: true
%s`, stateDir, port, iqn, backing, int64(size), enc)
}

func (t *hastordTarget) Start(ctx context.Context, h *harness) (*instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(h.runDir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name(), err)
	}
	keyFile := ""
	if t.crypt {
		// Format over the filled backing file: the data area keeps the
		// fill (random-looking ciphertext), only the first 16 MiB become
		// the header. pbkdf2 with few iterations keeps the unlock fast;
		// it does not touch the data path.
		keyFile = filepath.Join(dir, "bench.key")
		if err := os.WriteFile(keyFile, []byte("bench passphrase"), 0o600); err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name(), err)
		}
		if _, err := runTool(ctx, nil, dir, t.ctl, "format", "--yes", "--key-file", keyFile,
			"--sector-size", "512", "--key-size", "512", "--pbkdf", "pbkdf2", "--iterations", "1000", h.backing); err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name(), err)
		}
	}
	conf := filepath.Join(dir, "hastord.yaml")
	yml := hastordConfig(filepath.Join(dir, "state"), port, benchIQN, h.backing, h.cfg.size, keyFile)
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name(), err)
	}
	p, err := startProcess(t.Name(), h.logPath(t.Name()), nil, t.bin, "--config", conf)
	if err != nil {
		return nil, err
	}
	portal := "127.0.0.1:" + strconv.Itoa(port)
	if err := waitListening(ctx, p, portal, readyTimeout); err != nil {
		p.stop(stopGrace)
		return nil, err
	}
	return &instance{
		engine:   libiscsiEngine(portal, benchIQN, 0),
		proc:     p,
		shutdown: func() { p.stop(stopGrace) },
	}, nil
}

func libiscsiEngine(portal, iqn string, lun int) []string {
	return []string{"--ioengine=libiscsi", "--filename=" + iscsiFilename(portal, iqn, lun)}
}

// ---- tgt ----

type tgtTarget struct {
	direct bool
	tgtd   string
	tgtadm string
}

func (t *tgtTarget) Name() string {
	if t.direct {
		return "tgt-direct"
	}
	return "tgt-buffered"
}

func (t *tgtTarget) Describe() string {
	if t.direct {
		return "Debian tgt (tgtd), rdwr backing store opened O_DIRECT (--bsoflags direct)"
	}
	return "Debian tgt (tgtd), rdwr backing store, default buffered I/O"
}

func (t *tgtTarget) Prepare(ctx context.Context, h *harness) error {
	if err := h.needTools(ctx, "tgtd", "tgtadm"); err != nil {
		return err
	}
	t.tgtd, _ = lookTool("tgtd")
	t.tgtadm, _ = lookTool("tgtadm")
	return nil
}

func (t *tgtTarget) Start(ctx context.Context, h *harness) (*instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ctl := strconv.Itoa(tgtControlPort(port))
	portal := "127.0.0.1:" + strconv.Itoa(port)
	p, err := startProcess(t.Name(), h.logPath(t.Name()), nil, t.tgtd,
		"-f", "-C", ctl, "--iscsi", "portal="+portal)
	if err != nil {
		return nil, err
	}
	adm := func(ctx context.Context, args ...string) error {
		_, err := runTool(ctx, nil, "", t.tgtadm, append([]string{"-C", ctl}, args...)...)
		return err
	}
	shutdown := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Debian's tgt.service stops tgtd this way: tgtd ignores SIGTERM
		// while it has targets.
		_ = adm(sctx, "--op", "update", "--mode", "sys", "--name", "State", "-v", "offline")
		_ = adm(sctx, "--lld", "iscsi", "--op", "delete", "--force", "--mode", "target", "--tid", "1")
		_ = adm(sctx, "--op", "delete", "--mode", "system")
		p.stop(stopGrace)
		_ = os.Remove("/var/run/tgtd/socket." + ctl)
		_ = os.Remove("/var/run/tgtd/socket." + ctl + ".lock")
	}
	fail := func(err error) (*instance, error) {
		shutdown()
		return nil, fmt.Errorf("%s: %w", t.Name(), err)
	}
	// Wait for the management socket.
	deadline := time.Now().Add(readyTimeout)
	for {
		err := adm(ctx, "--op", "show", "--mode", "target")
		if err == nil {
			break
		}
		if aerr := p.alive(); aerr != nil {
			return fail(aerr)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fail(fmt.Errorf("%w: tgtadm: %w", errNotReady, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
	lun := []string{"--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
		"--backing-store", h.backing, "--blocksize", "512"}
	if t.direct {
		lun = append(lun, "--bsoflags", "direct")
	}
	for _, args := range [][]string{
		{"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "--targetname", benchIQN},
		lun,
		{"--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "--initiator-address", "ALL"},
	} {
		if err := adm(ctx, args...); err != nil {
			return fail(err)
		}
	}
	if err := waitListening(ctx, p, portal, readyTimeout); err != nil {
		return fail(err)
	}
	// LUN 0 of a tgt target is its controller; the disk is LUN 1.
	return &instance{engine: libiscsiEngine(portal, benchIQN, 1), proc: p, shutdown: shutdown}, nil
}

// tgtControlPort picks tgtd's control port. It only names tgtd's management
// socket (/var/run/tgtd/socket.N), and tgtd accepts at most 32767. It is
// derived from the free iSCSI port, stepping past sockets that exist, so
// that it stays apart from other tgtd instances on the machine.
func tgtControlPort(port int) int {
	const lo, n = 20000, 12000
	c := lo + port%n
	for range n {
		if _, err := os.Stat(fmt.Sprintf("/var/run/tgtd/socket.%d", c)); errors.Is(err, os.ErrNotExist) {
			return c
		}
		c = lo + (c-lo+1)%n
	}
	return c
}

// ---- istgt ----

type istgtTarget struct {
	bin string
}

func (*istgtTarget) Name() string { return "istgt" }
func (*istgtTarget) Describe() string {
	return "Debian istgt, file extent (buffered), QueueDepth 32"
}

func (t *istgtTarget) Prepare(ctx context.Context, h *harness) error {
	if err := h.needTools(ctx, "istgt"); err != nil {
		return err
	}
	t.bin, _ = lookTool("istgt")
	return nil
}

// istgtConfig returns istgt.conf for one LUN. istgt refuses to start
// without a [UnitControl] section, so it gets one on its own free port.
func istgtConfig(dir string, port, ucPort int, iqn, backing string, size ByteSize) string {
	base, name, _ := strings.Cut(iqn, ":")
	return fmt.Sprintf(`# Generated by hastor's bench harness.
[Global]
  NodeBase "%s"
  PidFile "%s"
  AuthFile "%s"
  MediaDirectory "%s"
  Timeout 30
  NopInInterval 20
  DiscoveryAuthMethod None
  MaxSessions 16
  MaxConnections 4
  MaxR2T 32
  MaxOutstandingR2T 16
  DefaultTime2Wait 2
  DefaultTime2Retain 60
  FirstBurstLength 262144
  MaxBurstLength 1048576
  MaxRecvDataSegmentLength 262144
  InitialR2T Yes
  ImmediateData Yes
  DataPDUInOrder Yes
  DataSequenceInOrder Yes
  ErrorRecoveryLevel 0

[UnitControl]
  AuthMethod None
  Portal UC1 127.0.0.1:%d
  Netmask 127.0.0.1

[PortalGroup1]
  Portal DA1 127.0.0.1:%d

[InitiatorGroup1]
  InitiatorName "ALL"
  Netmask 127.0.0.1

[LogicalUnit1]
  TargetName %s
  Mapping PortalGroup1 InitiatorGroup1
  AuthMethod None
  UseDigest Auto
  UnitType Disk
  QueueDepth 32
  LUN0 Storage %s %dMB
`, base, filepath.Join(dir, "istgt.pid"), filepath.Join(dir, "auth.conf"), dir,
		ucPort, port, name, backing, int64(size>>20))
}

func (t *istgtTarget) Start(ctx context.Context, h *harness) (*instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ucPort, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(h.runDir, "istgt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("istgt: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), nil, 0o600); err != nil {
		return nil, fmt.Errorf("istgt: %w", err)
	}
	conf := filepath.Join(dir, "istgt.conf")
	if err := os.WriteFile(conf, []byte(istgtConfig(dir, port, ucPort, benchIQN, h.backing, h.cfg.size)), 0o644); err != nil {
		return nil, fmt.Errorf("istgt: %w", err)
	}
	p, err := startProcess("istgt", h.logPath("istgt"), nil, t.bin,
		"-c", conf, "-p", filepath.Join(dir, "istgt.pid"), "-D")
	if err != nil {
		return nil, err
	}
	portal := "127.0.0.1:" + strconv.Itoa(port)
	if err := waitListening(ctx, p, portal, readyTimeout); err != nil {
		p.stop(stopGrace)
		return nil, err
	}
	return &instance{
		engine:   libiscsiEngine(portal, benchIQN, 0),
		proc:     p,
		shutdown: func() { p.stop(stopGrace) },
	}, nil
}

// ---- gotgt ----

// gotgtVersion is the gotgt release measured. The module proxy serves it
// only when asked for this exact version.
const gotgtVersion = "v0.2.2"

type gotgtTarget struct {
	bin string
}

func (*gotgtTarget) Name() string { return "gotgt" }
func (*gotgtTarget) Describe() string {
	return "github.com/gostor/gotgt " + gotgtVersion + ", file backing store (buffered)"
}

// Prepare builds gotgt into the cache directory, in a throwaway module
// there: gotgt is GPL, so it is only built and run, never vendored into
// this repository.
func (t *gotgtTarget) Prepare(ctx context.Context, h *harness) error {
	if h.cfg.gotgtBin != "" {
		t.bin = h.cfg.gotgtBin
		return nil
	}
	dir := filepath.Join(h.cacheDir, "gotgt")
	t.bin = filepath.Join(dir, "gotgt-"+gotgtVersion)
	if fi, err := os.Stat(t.bin); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	build := filepath.Join(dir, "build")
	if err := os.MkdirAll(build, 0o755); err != nil {
		return fmt.Errorf("gotgt: %w", err)
	}
	env := []string{"GOWORK=off", "GOFLAGS=-mod=mod"}
	gomod := "module hastorbenchgotgt\n\ngo 1.21\n"
	if err := os.WriteFile(filepath.Join(build, "go.mod"), []byte(gomod), 0o644); err != nil {
		return fmt.Errorf("gotgt: %w", err)
	}
	h.logf("building gotgt %s into %s", gotgtVersion, t.bin)
	if _, err := runTool(ctx, env, build, "go", "get", "github.com/gostor/gotgt@"+gotgtVersion); err != nil {
		return fmt.Errorf("%w: gotgt: %w", errSkip, err)
	}
	if _, err := runTool(ctx, env, build, "go", "build", "-o", t.bin+".tmp", "github.com/gostor/gotgt"); err != nil {
		return fmt.Errorf("%w: gotgt: %w", errSkip, err)
	}
	if err := os.Rename(t.bin+".tmp", t.bin); err != nil {
		return fmt.Errorf("gotgt: %w", err)
	}
	return nil
}

// gotgtConfig is gotgt's config.json: one file-backed LUN 0 behind one
// portal.
type gotgtConfig struct {
	Storages []gotgtStorage          `json:"storages"`
	Portals  []gotgtPortal           `json:"iscsiportals"`
	Targets  map[string]gotgtTargetC `json:"iscsitargets"`
}

type gotgtStorage struct {
	DeviceID   int    `json:"deviceID"`
	Path       string `json:"path"`
	Online     bool   `json:"online"`
	Thin       bool   `json:"thinProvisioning"`
	BlockShift int    `json:"blockShift"`
}

type gotgtPortal struct {
	ID     int    `json:"id"`
	Portal string `json:"portal"`
}

type gotgtTargetC struct {
	TPGTs map[string][]int `json:"tpgts"`
	LUNs  map[string]int   `json:"luns"`
}

func (t *gotgtTarget) Start(ctx context.Context, h *harness) (*instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	portal := "127.0.0.1:" + strconv.Itoa(port)
	// gotgt reads $HOME/.gotgt/config.json; give it a HOME of its own.
	home := filepath.Join(h.runDir, "gotgt")
	if err := os.MkdirAll(filepath.Join(home, ".gotgt"), 0o755); err != nil {
		return nil, fmt.Errorf("gotgt: %w", err)
	}
	cfg := gotgtConfig{
		Storages: []gotgtStorage{{DeviceID: 1000, Path: "file:" + h.backing, Online: true, BlockShift: 9}},
		Portals:  []gotgtPortal{{ID: 0, Portal: portal}},
		Targets: map[string]gotgtTargetC{benchIQN: {
			TPGTs: map[string][]int{"1": {0}},
			LUNs:  map[string]int{"0": 1000},
		}},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("gotgt: %w", err)
	}
	if err := os.WriteFile(filepath.Join(home, ".gotgt", "config.json"), data, 0o644); err != nil {
		return nil, fmt.Errorf("gotgt: %w", err)
	}
	// gotgt listens on every address at --port (it ignores the portal's
	// address); the harness connects only over loopback. --host moves its
	// management API off its fixed default port.
	p, err := startProcess("gotgt", h.logPath("gotgt"), []string{"HOME=" + home}, t.bin,
		"daemon", "--port", strconv.Itoa(port), "--host", "tcp://127.0.0.1:"+strconv.Itoa(apiPort), "--log", "error")
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, p, portal, readyTimeout); err != nil {
		p.stop(stopGrace)
		return nil, err
	}
	return &instance{
		engine:   libiscsiEngine(portal, benchIQN, 0),
		proc:     p,
		shutdown: func() { p.stop(stopGrace) },
	}, nil
}

// lookTool is exec.LookPath that also looks in the sbin directories, which
// a non-login root shell may lack in PATH.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}
