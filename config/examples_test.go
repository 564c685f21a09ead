package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"testing"
	"testing/fstest"
)

func TestQuickstartExample(t *testing.T) {
	path := filepath.Join("..", "examples", "quickstart.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "state"); cfg.StateDir != want {
		t.Errorf("StateDir = %q, want %q", cfg.StateDir, want)
	}
	if !reflect.DeepEqual(cfg.Portals, []string{"127.0.0.1:3260"}) {
		t.Errorf("Portals = %q", cfg.Portals)
	}
	if len(cfg.Targets) != 1 || len(cfg.Targets[0].LUNs) != 1 {
		t.Fatalf("want one target with one LUN, got %+v", cfg.Targets)
	}
	tg := cfg.Targets[0]
	if tg.IQN != "iqn.2026-11.dev.hastor:quickstart" || tg.Alias != "quickstart" || tg.Auth.CHAP != nil {
		t.Errorf("target = %+v", tg)
	}
	l := tg.LUNs[0]
	want := LUN{LUN: 0, VolumeID: "quickstart-lun0", Path: "quickstart.img", Size: GiB, BlockSize: 512}
	if l != want {
		t.Errorf("LUN = %+v, want %+v", l, want)
	}
	if got := cfg.LUNPath(&l); got != filepath.Join(dir, "state", "quickstart.img") {
		t.Errorf("LUNPath = %q", got)
	}
}

// full.yaml must load with its secret files present, and it must set every
// key that Config knows, so it stays complete as Config grows.
func TestFullExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{
		"etc/hastor/discovery.secret": secretFile("discovery-Xo9ahshe5ie\n"),
		"etc/hastor/db-chap.secret":   secretFile("db-chap-Ahng4eihoh0z\n"),
		"etc/hastor/lab-vault.key":    secretFile("correct horse battery staple"),
		"srv/hastor/lab-vault.img":    &fstest.MapFile{Mode: 0o600},
		"etc/hastor/vm-repl.secret":   secretFile("vm-replication-Eeth4ohkoo3yaeK\n"),
	}
	v := &validator{lines: map[string]int{}, present: map[string]bool{}, bad: map[string]bool{},
		budget: maxNodes, opt: parseOptions{file: "full.yaml", baseDir: "/etc/hastor", fs: mapFS{files}}}
	cfg := v.decode(data)
	if cfg == nil {
		t.Fatalf("decode failed: %v", v.problems)
	}
	v.check(cfg)
	if len(v.problems) > 0 {
		t.Fatalf("full.yaml is invalid: %v", &ValidationError{File: "full.yaml", Problems: v.problems})
	}

	// A Credential appears in four places; each key needs to be shown in one.
	index := regexp.MustCompile(`\[\d+\]`)
	cred := regexp.MustCompile(`^(discovery|targets\[\])\.auth\.(chap|mutual_chap)\.`)
	norm := func(p string) string { return cred.ReplaceAllString(index.ReplaceAllString(p, "[]"), "credential.") }
	present := map[string]bool{}
	for p := range v.present {
		present[norm(p)] = true
	}
	var missing []string
	for _, p := range schemaPaths(reflect.TypeFor[Config](), "") {
		if !present[norm(p)] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("full.yaml does not show these keys: %q", missing)
	}

	// Spot checks.
	if cfg.Discovery.Auth.CHAP.Secret != "discovery-Xo9ahshe5ie" {
		t.Error("discovery secret not read")
	}
	db := cfg.Targets[0]
	if db.LUNs[0].Size != 0 || cfg.LUNPath(&db.LUNs[0]) != "/dev/vg0/hastor-db" || !db.LUNs[0].WriteCache {
		t.Errorf("block-device LUN = %+v", db.LUNs[0])
	}
	if cfg.LUNPath(&cfg.Targets[1].LUNs[0]) != "/var/lib/hastor/images/installer.img" {
		t.Errorf("relative LUN path resolved to %q", cfg.LUNPath(&cfg.Targets[1].LUNs[0]))
	}
}

// schemaPaths lists the key path of every leaf setting of t, with "[]" for
// list indexes.
func schemaPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case byteSizeType, durationType, logLevelType:
		return []string{prefix}
	}
	switch t.Kind() {
	case reflect.Struct:
		var out []string
		for name, ft := range yamlFields(t) {
			out = append(out, schemaPaths(ft, joinPath(prefix, name))...)
		}
		return out
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return schemaPaths(t.Elem(), prefix+"[]")
		}
	}
	return []string{prefix}
}

// Every file in examples/ must at least get through the YAML and schema
// checks; secret files and devices are machine-specific.
func TestAllExamplesParse(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(paths) < 2 {
		t.Fatalf("examples: %v %v", paths, err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		v := &validator{lines: map[string]int{}, present: map[string]bool{}, bad: map[string]bool{},
			budget: maxNodes, opt: parseOptions{baseDir: "/", fs: mapFS{fstest.MapFS{}}}}
		if v.decode(data) == nil || len(v.problems) > 0 {
			t.Errorf("%s: %v", p, &ValidationError{File: p, Problems: v.problems})
		}
	}
}
