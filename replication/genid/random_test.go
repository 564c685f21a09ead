package genid

import (
	"errors"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestRandomHistories drives random sequences of writes, promotions,
// demotions, disconnects, reconnects, interrupted and racing resyncs,
// crashes (with unacknowledged in-flight writes), restarts, invalidations
// and split-brain resolutions through the two-node model, and checks at
// every connect (model_test.go, cluster.check) that
//   - Decide gives mirrored answers on the two nodes;
//   - NoSync is never decided while the data differ, so diverging writes
//     are always found (DRBD UG-GI: equal current UUIDs mean in sync);
//   - no resync direction loses an acknowledged write that the admin did
//     not throw away (invalidate, discard, discard-younger-primary): in
//     particular the writes of the node that was primary last, when the
//     other one wrote nothing, always survive;
//   - a bitmap-based resync's bitmap union covers every differing block;
//   - nodes of one resource never look unrelated.
//
// At the end it heals the pair (restart, demote, connect, resolve split
// brain by hand, resync) and checks that both nodes hold the same data
// and every acknowledged write not thrown away.
func TestRandomHistories(t *testing.T) {
	runs, steps := 3000, 150
	if testing.Short() {
		runs = 300
	}
	total := map[string]int{}
	for seed := uint64(1); seed <= uint64(runs); seed++ {
		c, err := randomHistory(seed, steps)
		for k, v := range c.counts {
			total[k] += v
		}
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	var keys []string
	for k := range total {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		sb.WriteString(k + "=" + strconv.Itoa(total[k]) + " ")
	}
	t.Logf("decisions (node a's view, action/rule): %s", sb.String())
	// The generator must reach the interesting rules, or the test proves
	// little.
	for _, want := range []string{"FullSyncSource/2", "NoSync/3", "SyncSource/3", "SyncSource/4", "SyncTarget/4", "FullSyncSource/5", "SplitBrain/6", "SplitBrain/7"} {
		if total[want] == 0 {
			t.Errorf("no %s decision in %d runs", want, runs)
		}
	}
}

// randomHistory runs one random history; the error is a violated
// invariant (refused commands are part of the game and ignored).
func randomHistory(seed uint64, steps int) (*cluster, error) {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	c := newCluster()
	c.related = true
	c.policy = Policy(r.IntN(3))
	_ = c.force(0)
	if _, err := c.connect(""); err != nil {
		return c, err
	}
	ok := func(err error) error {
		if errors.Is(err, errViolation) {
			return err
		}
		return nil
	}
	for s := 0; s < steps; s++ {
		i := r.IntN(2)
		var err error
		switch k := r.IntN(100); {
		case k < 30:
			err = c.write(i, r.IntN(nBlocks))
		case k < 38:
			err = c.promote(i)
		case k < 46:
			err = c.demote(i)
		case k < 54:
			err = c.disconnect()
		case k < 70:
			resolve := ""
			if r.IntN(4) == 0 {
				resolve = []string{"discard-a", "discard-b"}[r.IntN(2)]
			}
			_, err = c.connect(resolve)
		case k < 78:
			err = c.step(1 + r.IntN(3))
		case k < 86:
			if c.sync != nil && count(c.sync.pending) == 0 {
				err = c.finish([]string{"", "", "source", "target"}[r.IntN(4)])
			}
		case k < 90:
			err = c.crash(i, r.IntN(2) == 0, r.IntN(nBlocks))
		case k < 97:
			err = c.restart(i)
		default:
			if p := c.n[1-i]; p.flags.Consistent && p.set.Current != 0 {
				err = c.invalidate(i)
			}
		}
		if err := ok(err); err != nil {
			return c, err
		}
	}
	return c, heal(c)
}

// heal brings the pair back in sync and checks the end state.
func heal(c *cluster) error {
	for i := range c.n {
		_ = c.restart(i)
	}
	for round := 0; round < 6; round++ {
		for i := range c.n {
			_ = c.demote(i)
		}
		if c.sync != nil {
			_ = c.step(nBlocks)
			if err := c.finish(""); err != nil {
				return err
			}
			continue
		}
		if c.connected {
			break
		}
		d, err := c.connect("")
		if err != nil {
			return err
		}
		if d[0].Action == SplitBrain {
			if _, err := c.connect("discard-b"); err != nil {
				return err
			}
		}
	}
	if !c.connected || c.sync != nil {
		return errors.New("heal: the pair did not reconnect in sync: " + c.n[0].String() + " / " + c.n[1].String() + " last " + c.last[0].String() + ": " + c.last[0].Reason)
	}
	if c.n[0].data != c.n[1].data {
		return errors.New("heal: in sync but data differ")
	}
	for i := range c.n {
		if err := c.checkAcked(i); err != nil {
			return err
		}
	}
	return nil
}
