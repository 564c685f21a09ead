package genid

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// TestScenarios runs the scripts in testdata/. Each line is a command; the
// lines after it indented by two spaces are its expected output; lines
// starting with # are comments. With -update the expected output is
// rewritten from what the commands print.
//
// Commands (two nodes, a and b; a holds the Tiebreak flag):
//
//	force N                hastorctl primary --force on N
//	primary N | secondary N
//	write N BLOCK...       N (primary) writes the blocks
//	disconnect             the link drops; both nodes see it
//	connect [discard-N]    handshake; prints both decisions and starts
//	                       the resync decided; discard-N resolves a split
//	                       brain by discarding N's changes
//	policy NAME            split-brain auto-recovery policy
//	crash N [inflight B]   N goes down; inflight B: N, primary, had written
//	                       block B locally, unacknowledged
//	restart N | invalidate N
//	step K                 resync copies up to K blocks
//	sync [source|target]   resync copies the rest and ends; with a race
//	                       only that side records the end, then the link
//	                       drops
//	show                   both nodes' tuples and flags
//	check N                every acknowledged write (not discarded by an
//	                       admin) is on N
//
// Every connect is also checked against the data model (model_test.go);
// a violated invariant fails the test whatever the expected output says.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

func runScenario(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	c := newCluster()
	var out strings.Builder
	var mismatch []string
	for i := 0; i < len(lines); {
		line := lines[i]
		i++
		if strings.HasPrefix(line, "  ") {
			continue // stray output: dropped on -update, a mismatch otherwise
		}
		out.WriteString(line + "\n")
		cmd := strings.TrimSpace(line)
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		var want []string
		for i < len(lines) && strings.HasPrefix(lines[i], "  ") {
			want = append(want, strings.TrimPrefix(lines[i], "  "))
			i++
		}
		got, err := c.run(cmd)
		if err != nil {
			if errors.Is(err, errViolation) {
				t.Errorf("%s:%d %s: %v", path, i, cmd, err)
			}
			got = append(got, "error: "+err.Error())
		}
		for _, g := range got {
			out.WriteString("  " + g + "\n")
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			mismatch = append(mismatch, fmt.Sprintf("%s: %q\n got:\n  %s\n want:\n  %s", path, cmd, strings.Join(got, "\n  "), strings.Join(want, "\n  ")))
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, m := range mismatch {
		t.Error(m)
	}
}

// run executes one scenario command and returns what it prints.
func (c *cluster) run(cmd string) ([]string, error) {
	f := strings.Fields(cmd)
	node := func(k int) (int, error) {
		if len(f) <= k {
			return 0, fmt.Errorf("%s: missing node", f[0])
		}
		return c.idx(f[k])
	}
	ints := func(from int) ([]int, error) {
		var v []int
		for _, s := range f[from:] {
			x, err := strconv.Atoi(s)
			if err != nil {
				return nil, err
			}
			v = append(v, x)
		}
		return v, nil
	}
	switch f[0] {
	case "force", "primary", "secondary", "restart", "invalidate":
		i, err := node(1)
		if err != nil {
			return nil, err
		}
		before := short(c.n[i].set)
		switch f[0] {
		case "force":
			err = c.force(i)
		case "primary":
			err = c.promote(i)
		case "secondary":
			err = c.demote(i)
		case "restart":
			err = c.restart(i)
		case "invalidate":
			err = c.invalidate(i)
		}
		if err != nil {
			return nil, err
		}
		return c.changed(i, before), nil
	case "write":
		i, err := node(1)
		if err != nil {
			return nil, err
		}
		blocks, err := ints(2)
		if err != nil {
			return nil, err
		}
		for _, b := range blocks {
			if err := c.write(i, b); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case "disconnect":
		before := [2]string{short(c.n[0].set), short(c.n[1].set)}
		if err := c.disconnect(); err != nil {
			return nil, err
		}
		return append(c.changed(0, before[0]), c.changed(1, before[1])...), nil
	case "crash":
		i, err := node(1)
		if err != nil {
			return nil, err
		}
		inflight, blk := false, 0
		if len(f) == 4 && f[2] == "inflight" {
			inflight = true
			if blk, err = strconv.Atoi(f[3]); err != nil {
				return nil, err
			}
		}
		before := short(c.n[1-i].set)
		if err := c.crash(i, inflight, blk); err != nil {
			return nil, err
		}
		return c.changed(1-i, before), nil
	case "connect":
		resolve := ""
		if len(f) > 1 {
			resolve = f[1]
		}
		d, err := c.connect(resolve)
		if err != nil {
			return nil, err
		}
		return []string{
			"a: " + d[0].String(),
			"b: " + d[1].String(),
			"reason (a): " + d[0].Reason,
		}, nil
	case "policy":
		if len(f) != 2 {
			return nil, fmt.Errorf("policy: want a name")
		}
		p, err := ParsePolicy(f[1])
		if err != nil {
			return nil, err
		}
		c.policy = p
		return nil, nil
	case "step":
		k, err := ints(1)
		if err != nil || len(k) != 1 {
			return nil, fmt.Errorf("step: want a count")
		}
		return nil, c.step(k[0])
	case "sync":
		race := ""
		if len(f) > 1 {
			race = f[1]
		}
		if err := c.step(nBlocks); err != nil {
			return nil, err
		}
		if err := c.finish(race); err != nil {
			return nil, err
		}
		return []string{c.n[0].String(), c.n[1].String()}, nil
	case "show":
		conn := "disconnected"
		if c.sync != nil {
			conn = fmt.Sprintf("resyncing %s→%s, %d blocks left", c.n[c.sync.src].name, c.n[c.sync.tgt].name, count(c.sync.pending))
		} else if c.connected {
			conn = "connected"
		}
		return []string{c.n[0].String(), c.n[1].String(), conn}, nil
	case "check":
		i, err := node(1)
		if err != nil {
			return nil, err
		}
		if err := c.checkAcked(i); err != nil {
			return nil, err
		}
		return []string{"ok: " + c.n[i].name + " has every acknowledged write"}, nil
	}
	return nil, fmt.Errorf("unknown command %q", f[0])
}

// changed prints node i's tuple if it changed.
func (c *cluster) changed(i int, before string) []string {
	if now := short(c.n[i].set); now != before {
		return []string{fmt.Sprintf("%s: %s -> %s", c.n[i].name, before, now)}
	}
	return nil
}
