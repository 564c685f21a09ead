package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and always returns either a
// config that holds the validated invariants or a *ValidationError with at
// least one problem. The seed corpus is in testdata/fuzz/FuzzParse, and the
// example files are added here.
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 60s ./config/
func FuzzParse(f *testing.F) {
	examples, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	for _, p := range examples {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(base))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not a *ValidationError: %T %v", err, err)
			}
			if len(ve.Problems) == 0 {
				t.Fatal("ValidationError without problems")
			}
			for _, p := range ve.Problems {
				if p.Message == "" {
					t.Fatalf("problem without a message: %#v", p)
				}
			}
			_ = err.Error()
			return
		}
		if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) || len(cfg.Portals) == 0 || len(cfg.Targets) == 0 {
			t.Fatalf("invalid config accepted: %+v", cfg)
		}
		n := cfg.ISCSI
		if n.FirstBurstLength > n.MaxBurstLength || n.QueueDepth < 1 || len(n.HeaderDigest) == 0 || len(n.DataDigest) == 0 {
			t.Fatalf("invalid negotiation accepted: %+v", n)
		}
		for _, tg := range cfg.Targets {
			if ValidateISCSIName(tg.IQN) != nil || len(tg.LUNs) == 0 {
				t.Fatalf("invalid target accepted: %+v", tg)
			}
			for _, l := range tg.LUNs {
				if l.BlockSize != 512 && l.BlockSize != 4096 || l.LUN < 0 || l.LUN > MaxLUN || l.VolumeID == "" ||
					l.Size != 0 && (l.Size < MinLUNSize || l.Size%ByteSize(l.BlockSize) != 0) ||
					!strings.HasPrefix(cfg.LUNPath(&l), "/") {
					t.Fatalf("invalid LUN accepted: %+v", l)
				}
			}
		}
	})
}
