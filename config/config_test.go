package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
)

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, base, nil)
	if got, want := cfg.Portals, []string{"0.0.0.0:3260"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Portals = %q, want %q", got, want)
	}
	if cfg.Log.Level.String() != "info" {
		t.Errorf("Log.Level = %v, want info", cfg.Log.Level)
	}
	want := Negotiation{
		MaxRecvDataSegmentLength: 262144,
		MaxBurstLength:           1048576,
		FirstBurstLength:         65536,
		MaxOutstandingR2T:        8,
		ImmediateData:            true,
		InitialR2T:               false,
		HeaderDigest:             []string{"CRC32C", "None"},
		DataDigest:               []string{"CRC32C", "None"},
		QueueDepth:               128,
		NopInInterval:            Duration(30e9),
		NopInTimeout:             Duration(30e9),
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       20,
	}
	if !reflect.DeepEqual(cfg.ISCSI, want) {
		t.Errorf("ISCSI =\n%+v\nwant\n%+v", cfg.ISCSI, want)
	}
	if !reflect.DeepEqual(DefaultNegotiation(), want) {
		t.Errorf("DefaultNegotiation() =\n%+v\nwant\n%+v", DefaultNegotiation(), want)
	}
	if cfg.Discovery.Auth.CHAP != nil || cfg.Discovery.Auth.MutualCHAP != nil {
		t.Errorf("discovery auth = %+v, want none", cfg.Discovery.Auth)
	}
	tg := cfg.Targets[0]
	if tg.Alias != "" || tg.Auth.CHAP != nil || len(tg.Initiators.Allow) != 0 || len(tg.Initiators.Deny) != 0 {
		t.Errorf("target defaults wrong: %+v", tg)
	}
	l := tg.LUNs[0]
	if l.BlockSize != 512 || l.ReadOnly || l.WriteCache || l.Size != GiB {
		t.Errorf("LUN = %+v, want block_size 512, read-write, write-through, 1GiB", l)
	}
	if got := cfg.LUNPath(&l); got != "/srv/state/a.img" {
		t.Errorf("LUNPath = %q", got)
	}
}

// A key present with its zero value must not get the default.
func TestExplicitValuesBeatDefaults(t *testing.T) {
	cfg := mustParse(t, withTop(`portals: ["[::0]:3260", "192.0.2.1:3261"]
log: {level: WARN}
iscsi:
  immediate_data: false
  initial_r2t: true
  nop_in_interval: 0
  nop_in_timeout: 1m30s
  default_time2wait: 0
  default_time2retain: 0
  header_digest: [none]
  data_digest: [crc32c, NONE]
  max_burst_length: 512
  first_burst_length: 512`), nil)
	n := cfg.ISCSI
	if n.ImmediateData || !n.InitialR2T || n.NopInInterval != 0 || n.NopInTimeout.Std().String() != "1m30s" ||
		n.DefaultTime2Wait != 0 || n.DefaultTime2Retain != 0 || n.MaxBurstLength != 512 || n.FirstBurstLength != 512 {
		t.Errorf("explicit values lost: %+v", n)
	}
	if !reflect.DeepEqual(n.HeaderDigest, []string{"None"}) || !reflect.DeepEqual(n.DataDigest, []string{"CRC32C", "None"}) {
		t.Errorf("digests not canonical: %q %q", n.HeaderDigest, n.DataDigest)
	}
	if want := []string{"[::]:3260", "192.0.2.1:3261"}; !reflect.DeepEqual(cfg.Portals, want) {
		t.Errorf("Portals = %q, want canonical %q", cfg.Portals, want)
	}
	if cfg.Log.Level.String() != "warn" {
		t.Errorf("level = %v", cfg.Log.Level)
	}
	// A null value is the same as an absent key.
	cfg = mustParse(t, withTop("portals:\niscsi:\nlog:\ndiscovery:"), nil)
	if !reflect.DeepEqual(cfg.Portals, defaultPortals) || !reflect.DeepEqual(cfg.ISCSI, DefaultNegotiation()) {
		t.Errorf("null keys did not get defaults: %q %+v", cfg.Portals, cfg.ISCSI)
	}
}

func TestValidationRules(t *testing.T) {
	files := fstest.MapFS{
		"srv/state/dir/x":        {Data: []byte("x")},
		"srv/state/existing.img": {Data: []byte("x")},
		"srv/state/chr":          {Mode: fs.ModeDevice | fs.ModeCharDevice},
		"srv/state/fifo":         {Mode: fs.ModeNamedPipe},
		"srv/blk":                {Mode: fs.ModeDevice},
		"srv/afile":              {Data: []byte("x")},
		"etc/hastor/ok.secret":   secretFile("0123456789abcdef\n"),
		"etc/hastor/crlf.secret": secretFile("0123456789abcdef\r\n"),
		"etc/hastor/short":       secretFile("short\n"),
		"etc/hastor/open":        {Data: []byte("0123456789abcdef"), Mode: 0o644},
		"etc/hastor/big":         secretFile(strings.Repeat("x", 5000)),
		"etc/hastor/dir/x":       secretFile("x"),
	}
	long := strings.Repeat("a", 256)
	cases := []struct {
		name string
		doc  string
		want []string // "field: part of message"; none = valid
	}{
		// state_dir
		{"state_dir missing", "targets:\n  - {iqn: iqn.2026-11.dev.hastor:t, luns: [" + lun0 + "]}\n", []string{"state_dir: required"}},
		{"state_dir is a file", strings.Replace(base, "/srv/state", "/srv/afile", 1), []string{"state_dir: /srv/afile exists but is not a directory"}},
		{"state_dir NUL", strings.Replace(base, "/srv/state", `"/srv\0x"`, 1), []string{"state_dir: NUL"}},
		{"state_dir relative", strings.Replace(base, "/srv/state", "state", 1), nil},

		// targets
		{"no targets", "state_dir: /srv/state\n", []string{"targets: at least one target"}},
		{"empty targets", "state_dir: /srv/state\ntargets: []\n", []string{"targets: at least one target"}},

		// portals
		{"portals empty", withTop("portals: []"), []string{"portals: at least one"}},
		{"portal host name", withTop("portals: [localhost:3260]"), []string{"portals[0]: not an IP address"}},
		{"portal no port", withTop("portals: [192.0.2.1]"), []string{"portals[0]: want ip:port"}},
		{"portal v6 no brackets", withTop(`portals: ["2001:db8::1:3260"]`), []string{"portals[0]: want ip:port"}},
		{"portal port 0", withTop(`portals: ["192.0.2.1:0"]`), []string{"portals[0]: port must be 1..65535"}},
		{"portal port 65536", withTop(`portals: ["192.0.2.1:65536"]`), []string{"portals[0]: port must be 1..65535"}},
		{"portal port negative", withTop(`portals: ["192.0.2.1:-1"]`), []string{"portals[0]: port must be 1..65535"}},
		{"portal no host", withTop(`portals: [":3260"]`), []string{"portals[0]: has no address"}},
		{"portal zone", withTop(`portals: ["[fe80::1%eth0]:3260"]`), []string{"portals[0]: zone"}},
		{"portal duplicate", withTop(`portals: ["192.0.2.1:3260", "192.0.2.1:3260"]`), []string{"portals[1]: duplicate of portals[0]"}},
		{"portal duplicate v6 spelling", withTop(`portals: ["[::0]:3260", "[::]:3260"]`), []string{"portals[1]: duplicate of portals[0]"}},
		{"portal v4 wildcard clash", withTop(`portals: ["0.0.0.0:3260", "192.0.2.1:3260"]`), []string{"portals[1]: overlap"}},
		{"portal v6 wildcard clash", withTop(`portals: ["192.0.2.1:3260", "[::]:3260"]`), []string{"portals[1]: overlap"}},
		{"portal v6 wildcard clashes v4 wildcard", withTop(`portals: ["0.0.0.0:3260", "[::]:3260"]`), []string{"portals[1]: overlap"}},
		{"portal v4 wildcard and v6 address", withTop(`portals: ["0.0.0.0:3260", "[::1]:3260"]`), []string{"portals[1]: overlap"}},
		{"portal v4-mapped address", withTop(`portals: ["[::ffff:192.0.2.1]:3260", "192.0.2.1:3260"]`), []string{"portals[1]: overlap"}},
		{"portals on different addresses", withTop(`portals: ["192.0.2.1:3260", "192.0.2.2:3260", "[2001:db8::1]:3260"]`), nil},
		{"portal other port", withTop(`portals: ["0.0.0.0:3260", "192.0.2.1:3261", "[2001:db8::1]:3262"]`), nil},
		{"portals scalar", withTop(`portals: 192.0.2.1:3260`), []string{"portals: want a list"}},

		// log
		{"log level", withTop("log: {level: loud}"), []string{"log.level: debug, info, warn or error"}},
		{"log level case", withTop("log: {level: Debug}"), nil},

		// iscsi (the integer ranges are in TestNegotiationRanges)
		{"first burst above max burst", withTop("iscsi: {max_burst_length: 4096, first_burst_length: 8192}"),
			[]string{"iscsi.first_burst_length: must not exceed max_burst_length (4096), got 8192"}},
		{"first burst above default max burst", withTop("iscsi: {first_burst_length: 2097152}"),
			[]string{"iscsi.first_burst_length: must not exceed max_burst_length (1048576)"}},
		{"no cross check on bad max burst", withTop("iscsi: {max_burst_length: 100, first_burst_length: 8192}"),
			[]string{"iscsi.max_burst_length: must be 512..16777215, got 100"}},
		{"header digest empty", withTop("iscsi: {header_digest: []}"), []string{"iscsi.header_digest: at least one"}},
		{"header digest unknown", withTop("iscsi: {header_digest: [CRC32C, md5]}"), []string{`iscsi.header_digest[1]: want "CRC32C" or "None", got "md5"`}},
		{"data digest duplicate", withTop("iscsi: {data_digest: [None, none]}"), []string{"iscsi.data_digest[1]: duplicate of iscsi.data_digest[0]"}},
		{"nop interval too short", withTop("iscsi: {nop_in_interval: 500ms}"), []string{"iscsi.nop_in_interval: must be 0 (off) or 1s..1h, got 500ms"}},
		{"nop interval too long", withTop("iscsi: {nop_in_interval: 2h}"), []string{"iscsi.nop_in_interval: 1s..1h"}},
		{"nop interval off", withTop("iscsi: {nop_in_interval: 0}"), nil},
		{"nop interval negative", withTop("iscsi: {nop_in_interval: -5s}"), []string{"iscsi.nop_in_interval: must not be negative"}},
		{"nop interval no unit", withTop("iscsi: {nop_in_interval: 30}"), []string{`iscsi.nop_in_interval: no unit; write e.g. "30s"`}},
		{"nop timeout zero", withTop("iscsi: {nop_in_timeout: 0}"), []string{"iscsi.nop_in_timeout: must be 1s..1h, got 0s"}},
		{"nop timeout garbage", withTop("iscsi: {nop_in_timeout: soon}"), []string{"iscsi.nop_in_timeout: want a duration"}},
		{"int not a number", withTop("iscsi: {queue_depth: deep}"), []string{`iscsi.queue_depth: want a whole number, got "deep"`}},
		{"int fraction", withTop("iscsi: {queue_depth: 1.5}"), []string{`iscsi.queue_depth: want a whole number, got "1.5"`}},
		{"bool not a bool", withTop("iscsi: {immediate_data: maybe}"), []string{`iscsi.immediate_data: want true or false, got "maybe"`}},
		{"iscsi scalar", withTop("iscsi: 5"), []string{`iscsi: want a mapping of keys to values, got "5"`}},

		// auth and secrets
		{"chap ok inline", withTop("discovery: {auth: {chap: {username: u, secret: 0123456789ab}}}"), nil},
		{"chap ok file", withTop("discovery: {auth: {chap: {username: u, secret_file: ok.secret}}}"), nil},
		{"chap ok file crlf", withTop("discovery: {auth: {chap: {username: u, secret_file: /etc/hastor/crlf.secret}}}"), nil},
		{"chap no username", withTop("discovery: {auth: {chap: {secret: 0123456789ab}}}"), []string{"discovery.auth.chap.username: required"}},
		{"chap username control", withTop(`discovery: {auth: {chap: {username: "a\tb", secret: 0123456789ab}}}`), []string{"discovery.auth.chap.username: control character"}},
		{"chap username long", withTop("discovery: {auth: {chap: {username: " + long + ", secret: 0123456789ab}}}"), []string{"discovery.auth.chap.username: at most 255 bytes"}},
		{"chap no secret", withTop("discovery: {auth: {chap: {username: u}}}"), []string{"discovery.auth.chap: needs secret or secret_file"}},
		{"chap both secrets", withTop("discovery: {auth: {chap: {username: u, secret: 0123456789ab, secret_file: ok.secret}}}"), []string{"discovery.auth.chap: not both"}},
		{"chap empty", withTop("discovery: {auth: {chap: {}}}"), []string{"discovery.auth.chap.username: required", "discovery.auth.chap: needs secret"}},
		{"secret 11 bytes", withTop("discovery: {auth: {chap: {username: u, secret: 0123456789a}}}"), []string{"discovery.auth.chap.secret: must be 12..255 bytes long (RFC 7143 §12.1.3 asks for at least 96 bits), got 11 bytes"}},
		{"secret 256 bytes", withTop("discovery: {auth: {chap: {username: u, secret: " + long + "}}}"), []string{"discovery.auth.chap.secret: got 256 bytes"}},
		{"secret file short", withTop("discovery: {auth: {chap: {username: u, secret_file: short}}}"), []string{"discovery.auth.chap.secret_file: got 5 bytes"}},
		{"secret file world readable", withTop("discovery: {auth: {chap: {username: u, secret_file: open}}}"),
			[]string{"discovery.auth.chap.secret_file: /etc/hastor/open is readable by all users (mode 0644); run: chmod o-r /etc/hastor/open"}},
		{"secret file missing", withTop("discovery: {auth: {chap: {username: u, secret_file: nope}}}"), []string{"discovery.auth.chap.secret_file: cannot read /etc/hastor/nope"}},
		{"secret file is dir", withTop("discovery: {auth: {chap: {username: u, secret_file: dir}}}"), []string{"discovery.auth.chap.secret_file: not a regular file"}},
		{"secret file big", withTop("discovery: {auth: {chap: {username: u, secret_file: big}}}"), []string{"discovery.auth.chap.secret_file: larger than 4096 bytes"}},
		{"mutual without chap", withTarget("{iqn: iqn.2026-11.dev.hastor:t, auth: {mutual_chap: {username: t, secret: 0123456789ab}}, luns: [" + lun0 + "]}"),
			[]string{"targets[0].auth.mutual_chap: needs chap as well"}},
		{"mutual same secret", withTarget("{iqn: iqn.2026-11.dev.hastor:t, auth: {chap: {username: i, secret_file: ok.secret}, mutual_chap: {username: t, secret: 0123456789abcdef}}, luns: [" + lun0 + "]}"),
			[]string{"targets[0].auth.mutual_chap: must differ"}},
		{"mutual ok", withTarget("{iqn: iqn.2026-11.dev.hastor:t, auth: {chap: {username: i, secret_file: ok.secret}, mutual_chap: {username: t, secret: 0123456789abcdeX}}, luns: [" + lun0 + "]}"), nil},

		// targets
		{"iqn missing", withTarget("{luns: [" + lun0 + "]}"), []string{"targets[0].iqn: required"}},
		{"iqn upper case", withTarget("{iqn: iqn.2026-11.dev.hastor:T, luns: [" + lun0 + "]}"), []string{`targets[0].iqn: write "iqn.2026-11.dev.hastor:t"`}},
		{"iqn bad", withTarget("{iqn: target1, luns: [" + lun0 + "]}"), []string{"targets[0].iqn: starts with iqn., eui. or naa."}},
		{"eui ok", withTarget("{iqn: eui.02004567a425678d, luns: [" + lun0 + "]}"), nil},
		{"naa ok", withTarget("{iqn: naa.52004567ba64678d, luns: [" + lun0 + "]}"), nil},
		{"iqn duplicate", "state_dir: /srv/state\ntargets:\n  - {iqn: iqn.2026-11.dev.hastor:t, luns: [" + lun0 + "]}\n  - {iqn: iqn.2026-11.dev.hastor:t, luns: [{lun: 0, volume_id: v1, path: b.img, size: 1GiB}]}\n",
			[]string{"targets[1].iqn: iqn.2026-11.dev.hastor:t is already used by targets[0].iqn"}},
		{"alias long", withTarget("{iqn: iqn.2026-11.dev.hastor:t, alias: " + long + ", luns: [" + lun0 + "]}"), []string{"targets[0].alias: at most 255 bytes"}},
		{"alias control", withTarget(`{iqn: iqn.2026-11.dev.hastor:t, alias: "a\nb", luns: [` + lun0 + "]}"), []string{"targets[0].alias: control character"}},
		{"luns missing", withTarget("{iqn: iqn.2026-11.dev.hastor:t}"), []string{"targets[0].luns: at least one LUN"}},
		{"luns empty", withTarget("{iqn: iqn.2026-11.dev.hastor:t, luns: []}"), []string{"targets[0].luns: at least one LUN"}},
		{"acl garbage", withTarget("{iqn: iqn.2026-11.dev.hastor:t, initiators: {allow: [host1]}, luns: [" + lun0 + "]}"),
			[]string{`targets[0].initiators.allow[0]: want an iSCSI name (iqn., eui. or naa.), an IP address or a CIDR prefix, got "host1"`}},
		{"acl host bits", withTarget("{iqn: iqn.2026-11.dev.hastor:t, initiators: {allow: [192.0.2.1/24]}, luns: [" + lun0 + "]}"),
			[]string{`targets[0].initiators.allow[0]: did you mean "192.0.2.0/24"?`}},
		{"acl bad prefix", withTarget("{iqn: iqn.2026-11.dev.hastor:t, initiators: {allow: [192.0.2.0/33]}, luns: [" + lun0 + "]}"),
			[]string{"targets[0].initiators.allow[0]: not a valid CIDR prefix"}},
		{"acl duplicate", withTarget("{iqn: iqn.2026-11.dev.hastor:t, initiators: {deny: [192.0.2.1, 192.0.2.1/32]}, luns: [" + lun0 + "]}"),
			[]string{"targets[0].initiators.deny[1]: duplicate of targets[0].initiators.deny[0]"}},
		{"acl zone", withTarget(`{iqn: iqn.2026-11.dev.hastor:t, initiators: {deny: ["fe80::1%eth0"]}, luns: [` + lun0 + "]}"),
			[]string{"targets[0].initiators.deny[0]: zone"}},
		{"acl name upper case", withTarget("{iqn: iqn.2026-11.dev.hastor:t, initiators: {allow: [IQN.1998-01.com.vmware:esx1]}, luns: [" + lun0 + "]}"),
			[]string{"targets[0].initiators.allow[0]: lower case"}},
		{"acl name bad date", withTarget("{iqn: iqn.2026-11.dev.hastor:t, initiators: {allow: [iqn.98-01.com.vmware:esx1]}, luns: [" + lun0 + "]}"),
			[]string{"targets[0].initiators.allow[0]: date YYYY-MM"}},
		{"acl ok", withTarget(`{iqn: iqn.2026-11.dev.hastor:t, initiators: {allow: [iqn.1998-01.com.vmware:esx1, 192.0.2.1, "2001:db8::/32"], deny: [192.0.2.0/24]}, luns: [` + lun0 + "]}"), nil},

		// LUNs
		{"lun missing", withLUN("volume_id: v0, path: a.img, size: 1GiB"), []string{"targets[0].luns[0].lun: required"}},
		{"lun negative", withLUN("lun: -1, volume_id: v0, path: a.img, size: 1GiB"), []string{"targets[0].luns[0].lun: must be 0..16383, got -1"}},
		{"lun too big", withLUN("lun: 16384, volume_id: v0, path: a.img, size: 1GiB"), []string{"targets[0].luns[0].lun: must be 0..16383, got 16384"}},
		{"lun max", withLUN("lun: 16383, volume_id: v0, path: a.img, size: 1GiB"), nil},
		{"lun duplicate", withTarget("{iqn: iqn.2026-11.dev.hastor:t, luns: [" + lun0 + ", {lun: 0, volume_id: v1, path: b.img, size: 1GiB}]}"),
			[]string{"targets[0].luns[1].lun: LUN 0 is already used by targets[0].luns[0].lun"}},
		{"same lun in two targets", "state_dir: /srv/state\ntargets:\n  - {iqn: iqn.2026-11.dev.hastor:t, luns: [" + lun0 + "]}\n  - {iqn: iqn.2026-11.dev.hastor:u, luns: [{lun: 0, volume_id: v1, path: b.img, size: 1GiB}]}\n", nil},
		{"volume missing", withLUN("lun: 0, path: a.img, size: 1GiB"), []string{"targets[0].luns[0].volume_id: required"}},
		{"volume long", withLUN("lun: 0, volume_id: " + strings.Repeat("v", 65) + ", path: a.img, size: 1GiB"), []string{"targets[0].luns[0].volume_id: at most 64 characters, got 65"}},
		{"volume 64", withLUN("lun: 0, volume_id: " + strings.Repeat("v", 64) + ", path: a.img, size: 1GiB"), nil},
		{"volume chars", withLUN(`lun: 0, volume_id: "a b", path: a.img, size: 1GiB`), []string{"targets[0].luns[0].volume_id: may hold only"}},
		{"volume all chars", withLUN(`lun: 0, volume_id: "AZaz09._:-", path: a.img, size: 1GiB`), nil},
		{"volume duplicate across targets", "state_dir: /srv/state\ntargets:\n  - {iqn: iqn.2026-11.dev.hastor:t, luns: [" + lun0 + "]}\n  - {iqn: iqn.2026-11.dev.hastor:u, luns: [{lun: 0, volume_id: V0, path: b.img, size: 1GiB}]}\n",
			[]string{`targets[1].luns[0].volume_id: volume "V0" is already used by targets[0].luns[0].volume_id`}},
		{"path missing", withLUN("lun: 0, volume_id: v0, size: 1GiB"), []string{"targets[0].luns[0].path: required"}},
		{"path is state_dir", withLUN("lun: 0, volume_id: v0, path: ., size: 1GiB"), []string{"targets[0].luns[0].path: not state_dir itself"}},
		{"path is a directory", withLUN("lun: 0, volume_id: v0, path: dir, size: 1GiB"), []string{"targets[0].luns[0].path: /srv/state/dir is a directory"}},
		{"path is a char device", withLUN("lun: 0, volume_id: v0, path: chr, size: 1GiB"), []string{"targets[0].luns[0].path: character device"}},
		{"path is a fifo", withLUN("lun: 0, volume_id: v0, path: fifo, size: 1GiB"), []string{"targets[0].luns[0].path: not a regular file or a block device"}},
		{"path NUL", withLUN(`lun: 0, volume_id: v0, path: "a\0b", size: 1GiB`), []string{"targets[0].luns[0].path: NUL"}},
		{"path duplicate", withTarget("{iqn: iqn.2026-11.dev.hastor:t, luns: [" + lun0 + ", {lun: 1, volume_id: v1, path: /srv/state/./a.img, size: 1GiB}]}"),
			[]string{"targets[0].luns[1].path: /srv/state/a.img is already used by targets[0].luns[0].path"}},
		{"block device without size", withLUN("lun: 0, volume_id: v0, path: /srv/blk"), nil},
		{"block device with size", withLUN("lun: 0, volume_id: v0, path: /srv/blk, size: 1GiB, block_size: 4096"), nil},
		{"missing /dev path without size", withLUN("lun: 0, volume_id: v0, path: /dev/vg0/missing"), nil},
		{"existing file without size", withLUN("lun: 0, volume_id: v0, path: existing.img"), []string{"targets[0].luns[0].size: required for an image file"}},
		{"new file without size", withLUN("lun: 0, volume_id: v0, path: new.img"), []string{"targets[0].luns[0].size: required for an image file"}},
		{"size too small", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1000"), []string{"targets[0].luns[0].size: must be at least 1MiB, got 1000B"}},
		{"size zero", withLUN("lun: 0, volume_id: v0, path: a.img, size: 0"), []string{"targets[0].luns[0].size: at least 1MiB"}},
		{"size not a block multiple", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1049088, block_size: 4096"),
			[]string{"targets[0].luns[0].size: must be a multiple of block_size (4096), got 1049088B"}},
		{"size 512 multiple ok", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1049088"), nil},
		{"size ambiguous", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1G"), []string{`targets[0].luns[0].size: write "1GiB"`}},
		{"size negative", withLUN("lun: 0, volume_id: v0, path: a.img, size: -1"), []string{"targets[0].luns[0].size: must not be negative"}},
		{"size fraction", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1.5GiB"), []string{"targets[0].luns[0].size: whole number"}},
		{"size list", withLUN("lun: 0, volume_id: v0, path: a.img, size: [1]"), []string{"targets[0].luns[0].size: want a single value, got a list"}},
		{"block size 1000", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, block_size: 1000"), []string{"targets[0].luns[0].block_size: must be 512 or 4096, got 1000"}},
		{"block size 0", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, block_size: 0"), []string{"targets[0].luns[0].block_size: must be 512 or 4096, got 0"}},
		{"block size not a number", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, block_size: 4k"), []string{"targets[0].luns[0].block_size: want a whole number"}},
		{"read_only not a bool", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, read_only: 2"), []string{"targets[0].luns[0].read_only: want true or false"}},
		{"flags", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, read_only: true, write_cache: true"), nil},
		{"thin off", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, thin_provisioning: false"), nil},
		{"thin not a bool", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, thin_provisioning: yes please"), []string{"targets[0].luns[0].thin_provisioning: want true or false"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.doc, files)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got:\n%v\ndocument:\n%s", err, tc.doc)
				}
				return
			}
			wantProblems(t, err, tc.want...)
			if t.Failed() {
				t.Logf("document:\n%s\nerror:\n%v", tc.doc, err)
			}
		})
	}
}

// TestNegotiationRanges checks both ends of every integer range in iscsi.
func TestNegotiationRanges(t *testing.T) {
	for _, r := range negotiationInts(&Negotiation{}) {
		for _, tc := range []struct {
			v  int
			ok bool
		}{{r.min - 1, false}, {r.min, true}, {r.max, true}, {r.max + 1, false}} {
			// Keep first_burst_length <= max_burst_length out of the way.
			extra := ""
			switch r.key {
			case "max_burst_length":
				extra = ", first_burst_length: 512"
			case "first_burst_length":
				extra = ", max_burst_length: 16777215"
			}
			doc := withTop(fmt.Sprintf("iscsi: {%s: %d%s}", r.key, tc.v, extra))
			_, err := parseFake(doc, nil)
			if tc.ok {
				if err != nil {
					t.Errorf("%s: %d: %v", r.key, tc.v, err)
				}
				continue
			}
			wantProblems(t, err, fmt.Sprintf("iscsi.%s: must be %d..%d, got %d", r.key, r.min, r.max, tc.v))
		}
	}
}

// TestAllProblemsInOneReport checks that problems from every stage and every
// section arrive together, sorted by line, in the documented format.
func TestAllProblemsInOneReport(t *testing.T) {
	doc := `state_dir: /srv/state
portals: [localhost:3260]
iscsi:
  queue_depth: 0
  nop_in_timeout: 1
  bogus: 1
discovery:
  auth:
    mutual_chap: {username: m, secret: 0123456789ab}
targets:
  - iqn: iqn.2026-11.dev.hastor:T
    luns:
      - lun: 0
        volume_id: v0
        path: a.img
        size: 1G
      - lun: 1
        volume_id: v1
        path: b.img
        size: 1GiB
        block_size: 1000
  - iqn: iqn.2026-11.dev.hastor:u
    luns: []
`
	_, err := parseFake(doc, nil)
	want := []Problem{
		{Field: "portals[0]", Line: 2, Message: `host "localhost" is not an IP address (names are not looked up)`},
		{Field: "iscsi.queue_depth", Line: 4, Message: "must be 1..4096, got 0"},
		{Field: "iscsi.nop_in_timeout", Line: 5, Message: `duration "1" has no unit; write e.g. "1s"`},
		{Field: "iscsi.bogus", Line: 6, Message: "unknown key; valid keys here: data_digest, default_time2retain, default_time2wait, first_burst_length, header_digest, immediate_data, initial_r2t, max_burst_length, max_outstanding_r2t, max_recv_data_segment_length, nop_in_interval, nop_in_timeout, queue_depth"},
		{Field: "discovery.auth.mutual_chap", Line: 9, Message: "needs chap as well: the initiator must authenticate before the target does"},
		{Field: "targets[0].iqn", Line: 11, Message: `iSCSI names must be lower case (RFC 3722 normalisation): write "iqn.2026-11.dev.hastor:t"`},
		{Field: "targets[0].luns[0].size", Line: 16, Message: `ambiguous unit "G" in "1G": write "1GiB" (binary, 1GiB = 1073741824 bytes) or the exact number of bytes`},
		{Field: "targets[0].luns[1].block_size", Line: 21, Message: "must be 512 or 4096, got 1000"},
		{Field: "targets[1].luns", Line: 23, Message: "at least one LUN is required"},
	}
	got := problemsOf(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", dump(got), dump(want))
	}
	msg := err.Error()
	lines := strings.Split(msg, "\n")
	if lines[0] != "invalid configuration (9 problems):" {
		t.Errorf("first line = %q", lines[0])
	}
	for _, w := range []string{
		"hastor.yaml:21: targets[0].luns[1].block_size: must be 512 or 4096, got 1000",
		"hastor.yaml:4: iscsi.queue_depth: must be 1..4096, got 0",
	} {
		if !strings.Contains(msg, "\n"+w+"\n") {
			t.Errorf("Error() lacks line %q:\n%s", w, msg)
		}
	}

	// One problem: one line, no count.
	_, err = parseFake(withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, block_size: 1000"), nil)
	if got, want := err.Error(), "hastor.yaml:5: targets[0].luns[0].block_size: must be 512 or 4096, got 1000"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func dump(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %#v\n", p)
	}
	return b.String()
}

func TestStructureProblems(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []Problem
	}{
		{"empty", "", []Problem{{Message: "file is empty"}}},
		{"only comments", "# nothing\n\n", []Problem{{Message: "file is empty"}}},
		{"null document", "---\n", []Problem{{Field: "state_dir", Message: "required"}, {Field: "targets", Message: "at least one target"}}},
		{"syntax error", "state_dir: /x\ntargets: [\n", []Problem{{Line: 2, Message: "did not find expected node content"}}},
		{"bad indentation", "state_dir: /x\n  portals: []\n", []Problem{{Line: 2, Message: "mapping values are not allowed"}}},
		{"tab", "state_dir: /x\ntargets:\n\t- iqn: x\n", []Problem{{Line: 3, Message: "indent with spaces, not tabs"}}},
		{"two documents", base + "---\nstate_dir: /y\n", []Problem{{Line: 6, Message: "a second YAML document starts here"}}},
		{"bad second document", base + "---\n[\n", []Problem{{Line: 7, Message: "did not find expected node content"}}},
		{"root is a list", "- a\n- b\n", []Problem{{Line: 1, Message: "want a mapping of keys to values, got a list"}}},
		{"root is a scalar", "hello\n", []Problem{{Line: 1, Message: `want a mapping of keys to values, got "hello"`}}},
		{"unknown top-level key", base + "witness: [a, b]\n", []Problem{{Field: "witness", Line: 6, Message: "unknown key; valid keys here: control_socket, discovery, iscsi, log, nodes, portals, state_dir, targets"}}},
		{"misspelt key", withTop("portal: [127.0.0.1:3260]"), []Problem{{Field: "portal", Line: 2, Message: `unknown key; did you mean "portals"?`}}},
		{"camel case key", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, blockSize: 512"),
			[]Problem{{Field: "targets[0].luns[0].blockSize", Line: 5, Message: `unknown key; did you mean "block_size"?`}}},
		{"misspelt nested key", strings.Replace(base, "volume_id", "volume_ud", 1),
			[]Problem{{Field: "targets[0].luns[0].volume_ud", Line: 5, Message: `did you mean "volume_id"?`}, {Field: "targets[0].luns[0].volume_id", Line: 5, Message: "required"}}},
		{"duplicate key", base + "state_dir: /y\n", []Problem{{Field: "state_dir", Line: 6, Message: "key given twice (first on line 1)"}}},
		{"duplicate nested key", withLUN("lun: 0, volume_id: v0, path: a.img, size: 1GiB, lun: 1"),
			[]Problem{{Field: "targets[0].luns[0].lun", Line: 5, Message: "key given twice (first on line 5)"}}},
		{"null list entry", "state_dir: /x\ntargets:\n  -\n", []Problem{{Field: "targets[0]", Line: 3, Message: "empty list entry"}}},
		{"wrong kind", "state_dir: /x\ntargets: {iqn: x}\n", []Problem{{Field: "targets", Line: 2, Message: "want a list, got a mapping of keys to values"}}},
		{"wrong kind in list", "state_dir: /x\ntargets: [x]\n", []Problem{{Field: "targets[0]", Line: 2, Message: `want a mapping of keys to values, got "x"`}}},
		{"non-scalar key", "state_dir: /x\n[a]: 1\n", []Problem{{Line: 2, Message: "keys must be plain names"}}},
		{"bad merge", "state_dir: /x\ntargets:\n  - <<: 5\n", []Problem{{Field: "targets[0]", Line: 3, Message: "the value of << must be a mapping"}}},
		{"too large", strings.Repeat("#", MaxFileSize+1), []Problem{{Message: "file is larger than"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFake(tc.doc, nil)
			got := problemsOf(t, err)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Field != w.Field || (w.Line != 0 && g.Line != w.Line) || !strings.Contains(g.Message, w.Message) {
					t.Errorf("problem %d = %#v, want %#v", i, g, w)
				}
			}
		})
	}
}

// Anchors, aliases and merge keys are YAML features admins use to share
// settings, for example one CHAP account for several targets.
func TestAliasesAndMerge(t *testing.T) {
	doc := `state_dir: /srv/state
targets:
  - iqn: iqn.2026-11.dev.hastor:a
    auth: &auth
      chap: {username: u, secret: 0123456789ab}
    luns:
      - &big {lun: 0, volume_id: a0, path: a0.img, size: 1GiB, block_size: 4096}
  - iqn: iqn.2026-11.dev.hastor:b
    auth: *auth
    luns:
      - <<: *big
        volume_id: b0
        path: b0.img
      - <<: [{lun: 9, size: 2GiB}, *big]
        volume_id: b1
        path: b1.img
`
	cfg := mustParse(t, doc, nil)
	b := cfg.Targets[1]
	if b.Auth.CHAP == nil || b.Auth.CHAP.Username != "u" {
		t.Errorf("aliased auth not applied: %+v", b.Auth)
	}
	if l := b.LUNs[0]; l.LUN != 0 || l.BlockSize != 4096 || l.Size != GiB || l.VolumeID != "b0" {
		t.Errorf("merged LUN = %+v", l)
	}
	if l := b.LUNs[1]; l.LUN != 9 || l.BlockSize != 4096 || l.Size != 2*GiB || l.VolumeID != "b1" {
		t.Errorf("LUN merged from a list = %+v", l)
	}

	// An alias expands wherever it is used, so problems are reported at
	// every place.
	_, err := parseFake(strings.Replace(doc, "block_size: 4096", "block_size: 4000", 1), nil)
	wantProblems(t, err,
		"targets[0].luns[0].block_size: must be 512 or 4096",
		"targets[1].luns[0].block_size: must be 512 or 4096",
		"targets[1].luns[1].block_size: must be 512 or 4096")
}

// TestAliasBomb checks that a small file whose aliases stand for a huge
// tree is rejected without expanding it.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("state_dir: /x\nx: &l {lun: 0, volume_id: v, path: p, size: 1GiB}\n")
	b.WriteString("t: &t {iqn: iqn.2026-11.a.b:c, luns: [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("*l")
	}
	b.WriteString("]}\ntargets: [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("*t")
	}
	b.WriteString("]\n")
	_, err := parseFake(b.String(), nil)
	found := false
	for _, p := range problemsOf(t, err) {
		found = found || strings.Contains(p.Message, "too many aliases")
	}
	if !found {
		t.Errorf("want a too-many-aliases problem, got:\n%.2000v", err)
	}
}

func TestLoadResolvesAgainstFileDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hastor.yaml")
	doc := strings.Replace(base, "/srv/state", "./state", 1)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // the working directory must not matter
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "state"); cfg.StateDir != want {
		t.Errorf("StateDir = %q, want %q", cfg.StateDir, want)
	}
	if got, want := cfg.LUNPath(&cfg.Targets[0].LUNs[0]), filepath.Join(dir, "state", "a.img"); got != want {
		t.Errorf("LUNPath = %q, want %q", got, want)
	}
	abs := &LUN{Path: "/dev/vg0/../vg0/lv"}
	if got := cfg.LUNPath(abs); got != "/dev/vg0/lv" {
		t.Errorf("LUNPath(absolute) = %q", got)
	}

	// Load through a relative path to the file.
	t.Chdir(dir)
	cfg, err = Load("hastor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "state"); cfg.StateDir != want {
		t.Errorf("StateDir via relative Load = %q, want %q", cfg.StateDir, want)
	}
}

func TestParseResolvesAgainstWorkingDirectory(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	cfg, err := Parse([]byte(strings.Replace(base, "/srv/state", "state", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "state"); cfg.StateDir != want {
		t.Errorf("StateDir = %q, want %q", cfg.StateDir, want)
	}
	cfg, err = Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/srv/state" {
		t.Errorf("absolute StateDir changed to %q", cfg.StateDir)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("state_dir: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != path {
		t.Fatalf("want *ValidationError for %s, got %v", path, err)
	}
	if want := path + ": targets: at least one target is required"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

// TestRealDisk checks the disk checks against the real file system: secret
// file modes, FIFOs (which must not block loading), directories and one file
// reached by two names.
func TestRealDisk(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // beat the umask
			t.Fatal(err)
		}
	}
	write("good.secret", "0123456789abcdef\n", 0o600)
	write("group.secret", "0123456789abcdeg\r\n", 0o640)
	write("open.secret", "0123456789abcdef\n", 0o604)
	write("a.img", "", 0o644)
	if err := os.Symlink("a.img", filepath.Join(dir, "b.img")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "hastor.yaml")
	load := func(doc string) (*Config, error) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return Load(cfgPath)
	}

	cfg, err := load(`state_dir: .
discovery:
  auth:
    chap: {username: d, secret_file: good.secret}
    mutual_chap: {username: t, secret_file: group.secret}
targets:
  - iqn: iqn.2026-11.dev.hastor:t
    luns: [{lun: 0, volume_id: v0, path: a.img, size: 1GiB}]
`)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Discovery.Auth
	if a.CHAP.Secret != "0123456789abcdef" || a.MutualCHAP.Secret != "0123456789abcdeg" {
		t.Errorf("secrets read wrong (lengths %d, %d)", len(a.CHAP.Secret), len(a.MutualCHAP.Secret))
	}
	if a.CHAP.SecretFile != "good.secret" {
		t.Errorf("SecretFile = %q, want it as written", a.CHAP.SecretFile)
	}

	_, err = load(`state_dir: .
discovery:
  auth:
    chap: {username: d, secret_file: open.secret}
    mutual_chap: {username: t, secret_file: fifo.secret}
targets:
  - iqn: iqn.2026-11.dev.hastor:t
    luns:
      - {lun: 0, volume_id: v0, path: a.img, size: 1GiB}
      - {lun: 1, volume_id: v1, path: b.img, size: 1GiB}
      - {lun: 2, volume_id: v2, path: sub, size: 1GiB}
      - {lun: 3, volume_id: v3, path: a.img/x, size: 1GiB}
`)
	wantProblems(t, err,
		"discovery.auth.chap.secret_file: is readable by all users (mode 0604); run: chmod o-r",
		"discovery.auth.mutual_chap.secret_file: is not a regular file",
		"targets[0].luns[1].path: is already used by targets[0].luns[0].path",
		"targets[0].luns[2].path: is a directory",
		"targets[0].luns[3].path: not a directory",
	)
	if err != nil && strings.Contains(err.Error(), "0123456789") {
		t.Errorf("error message leaks a secret:\n%v", err)
	}
}
