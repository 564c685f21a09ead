package luks2

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

var errCrashed = errors.New("simulated power loss")

// crashDev applies only the first budget writes; the write after that is
// torn (only its first half lands) when torn is set, and every later
// write is lost.
type crashDev struct {
	*memDev
	budget int
	torn   bool
}

func (c *crashDev) WriteAt(p []byte, off int64) (int, error) {
	if c.budget == 0 {
		if c.torn {
			c.torn = false
			_, _ = c.memDev.WriteAt(p[:len(p)/2], off)
		}
		return 0, errCrashed
	}
	c.budget--
	return c.memDev.WriteAt(p, off)
}

// TestCrashSafety cuts power after every write of each header-changing
// operation (cleanly and with a torn write) and checks that the volume
// still opens and that at least one expected passphrase still works.
func TestCrashSafety(t *testing.T) {
	base := newMemDev(17 << 20)
	v, key, err := Format(base, []byte("old"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddKey(key, []byte("second"), 2, fastPBKDF2); err != nil {
		t.Fatal(err)
	}
	image := base.snapshot()
	ops := []struct {
		name string
		run  func(v *Volume) error
		// pass lists passphrases of which at least one must open after a
		// crash; always lists passphrases that must open regardless.
		anyOf, always []string
	}{
		{"AddKey", func(v *Volume) error { _, err := v.AddKey(key, []byte("new"), -1, fastPBKDF2); return err }, []string{"old"}, []string{"old", "second"}},
		{"ChangeKey", func(v *Volume) error { _, err := v.ChangeKey([]byte("old"), []byte("new"), fastPBKDF2); return err }, []string{"old", "new"}, []string{"second"}},
		{"RemoveKey", func(v *Volume) error { return v.RemoveKey(0) }, []string{"second"}, []string{"second"}},
		{"Erase", func(v *Volume) error { return v.Erase() }, nil, nil},
	}
	for _, op := range ops {
		for _, torn := range []bool{false, true} {
			for budget := 0; ; budget++ {
				dev := &crashDev{memDev: &memDev{b: bytes.Clone(image)}, budget: budget, torn: torn}
				vol, err := Open(dev)
				if err != nil {
					t.Fatal(err)
				}
				opErr := op.run(vol)
				name := fmt.Sprintf("%s budget=%d torn=%v", op.name, budget, torn)
				if opErr != nil && !errors.Is(opErr, errCrashed) {
					t.Fatalf("%s: %v", name, opErr)
				}
				after := &memDev{b: dev.snapshot()}
				got, err := Open(after)
				if err != nil {
					t.Fatalf("%s: volume no longer opens: %v", name, err)
				}
				opened := 0
				for _, p := range op.anyOf {
					if k, _, err := got.Unlock([]byte(p)); err == nil && bytes.Equal(k, key) {
						opened++
					}
				}
				if len(op.anyOf) > 0 && opened == 0 {
					t.Fatalf("%s: none of %q opens", name, op.anyOf)
				}
				for _, p := range op.always {
					if _, _, err := got.Unlock([]byte(p)); err != nil {
						t.Fatalf("%s: %q: %v", name, p, err)
					}
				}
				if opErr == nil {
					break // the operation completed within the budget
				}
			}
		}
	}
}
