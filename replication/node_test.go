package replication

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"testing"
	"time"

	"hastor/blockdev"
	"hastor/replication/transport"
)

func loopAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// nodePair runs two Nodes on in-memory devices over loopback TCP.
func nodePair(t *testing.T, proto Protocol, size int64) ([2]*Node, [2]*blockdev.Mem) {
	var devs [2]*blockdev.Mem
	var data, metas [2]blockdev.Device
	for i := range 2 {
		devs[i] = blockdev.NewMem(size, 512)
		data[i] = devs[i]
	}
	return runPair(t, proto, data, metas, 0), devs
}

// openFiles creates two image files of size bytes, closed when the test
// ends, and returns them also as Devices.
func openFiles(t *testing.T, size int64) (files [2]*blockdev.File, data [2]blockdev.Device) {
	dir := t.TempDir()
	for i := range 2 {
		f, err := blockdev.Open(filepath.Join(dir, string(rune('a'+i))), blockdev.Options{Size: size, Create: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files[i], data[i] = f, f
	}
	return files, data
}

// runPair opens two Nodes, a (dialing) and b, on data (and, where set,
// external metadata) devices, joined over loopback TCP by one path of
// conns data connections (0: the default), runs them until the test ends,
// and returns them.
func runPair(t testing.TB, proto Protocol, data, metas [2]blockdev.Device, conns int) [2]*Node {
	return runPairOpts(t, proto, data, metas, conns, 61)
}

// runPairOpts is runPair with an activity log of alExtents extents.
func runPairOpts(t testing.TB, proto Protocol, data, metas [2]blockdev.Device, conns, alExtents int) [2]*Node {
	la, lb := loopAddr(t), loopAddr(t)
	var nodes [2]*Node
	pool := blockdev.NewPool()
	for i := range 2 {
		local, remote, me, peer := la, lb, "a", "b"
		if i == 1 {
			local, remote, me, peer = lb, la, "b", "a"
		}
		n, err := Open(Options{
			Name: "r0", Data: data[i], Meta: metas[i], ALExtents: alExtents, Pool: pool,
			Machine: MachineConfig{Protocol: proto, Tiebreak: i == 0, PeerTimeout: 10 * time.Second},
			Link: transport.Config{Resource: "r0", LocalNode: me, PeerNode: peer, Dial: i == 0,
				Paths: []transport.Path{{Local: local, Remote: remote}}, Secret: []byte("0123456789abcdef"),
				ConnsPerPath: conns, ReconnectInterval: 20 * time.Millisecond},
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return nodes
}

func waitNode(t *testing.T, n *Node, what string, ok func(NodeStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ok(n.Status()) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("waited for %s: %+v", what, n.Status())
}

func synced(st NodeStatus) bool {
	return st.Conn == Established && st.Disk == DiskUpToDate && st.PeerDisk == DiskUpToDate && st.OutOfSync == 0
}

// TestNodeReplicates: two Nodes over real TCP: a forced primary's data
// reaches the secondary by full sync, and writes made through its Device
// (concurrently, with FUA and flushes) land on both devices.
func TestNodeReplicates(t *testing.T) {
	for _, p := range []Protocol{ProtocolA, ProtocolC} {
		t.Run(p.String(), func(t *testing.T) {
			nodes, devs := nodePair(t, p, 32<<20)
			ctx := context.Background()
			if err := nodes[0].Promote(ctx, true); err != nil {
				t.Fatal(err)
			}
			waitNode(t, nodes[0], "the full sync", synced)
			if err := nodes[1].Device().Ready(); err == nil {
				t.Fatal("the secondary's device is ready")
			}
			dev := nodes[0].Device()
			pool := blockdev.NewPool()
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b := pool.Get(8192)
					defer pool.Put(b)
					for k := range 200 {
						for i := range b.B {
							b.B[i] = byte(w*7 + k + i)
						}
						off := int64((w*200+k)%3000) * 8192
						var err error
						if k%10 == 0 {
							_, err = dev.WriteAtFUA(b.B, off)
						} else {
							_, err = dev.WriteAt(b.B, off)
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err := dev.Flush(); err != nil {
				t.Fatal(err)
			}
			waitNode(t, nodes[0], "nothing pending", func(st NodeStatus) bool { return st.Pending == 0 && synced(st) })
			waitNode(t, nodes[1], "nothing unacked", func(st NodeStatus) bool { return st.Unacked == 0 })
			size := nodes[0].Device().Size()
			a, b := make([]byte, size), make([]byte, size)
			devs[0].ReadAt(a, 0)
			devs[1].ReadAt(b, 0)
			if !bytes.Equal(a, b) {
				t.Fatal("the two devices differ")
			}
		})
	}
}

// TestNodeOnFilesInternalMeta: two Nodes on O_DIRECT files with internal
// metadata and a small activity log. Application writes run during the
// first full sync and across two disconnects and bitmap resyncs, so the
// secondary's metadata writes (bitmap pages, superblocks) go to the same
// file, through the same AIO reaper, that completes its replicated and
// resync writes; the primary commits its activity log meanwhile. Every
// write must finish (a reaper that waited for the machine's mutex while a
// metadata write held it would hang them) and the data areas must end up
// identical.
func TestNodeOnFilesInternalMeta(t *testing.T) {
	const size = 300 << 20 // more than 256 resync chunks: a periodic bitmap flush
	// Bounded: a hang, even in the nodes' shutdown at cleanup (which runs
	// before this Stop), is a failure with every goroutine's stack.
	watchdog := time.AfterFunc(3*time.Minute, func() {
		debug.SetTraceback("all")
		panic("TestNodeOnFilesInternalMeta hung for 3 minutes")
	})
	t.Cleanup(func() { watchdog.Stop() })
	files, data := openFiles(t, size)
	var metas [2]blockdev.Device
	if !files[1].AsyncIO() {
		t.Log("no native AIO here: the secondary's writes use its workers")
	}
	nodes := runPairOpts(t, ProtocolC, data, metas, 2, 8)
	waitNode(t, nodes[0], "the connection", func(st NodeStatus) bool { return st.Conn == Established })
	if err := nodes[0].Promote(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	dev := nodes[0].Device()
	pool := blockdev.NewPool()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := pool.Get(4096)
			defer pool.Put(b)
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				for i := range b.B {
					b.B[i] = byte(w*31 + k + i)
				}
				off := r.Int64N(dev.Size()/4096) * 4096
				if _, err := dev.WriteAt(b.B, off); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	waitNode(t, nodes[0], "the full sync under writes", synced)
	for range 2 {
		if err := nodes[1].Disconnect(); err != nil {
			t.Fatal(err)
		}
		waitNode(t, nodes[0], "the disconnect", func(st NodeStatus) bool { return st.Conn != Established })
		time.Sleep(100 * time.Millisecond) // writes while disconnected: a bitmap resync follows
		if err := nodes[1].Connect(false); err != nil {
			t.Fatal(err)
		}
		waitNode(t, nodes[0], "the bitmap resync under writes", synced)
	}
	close(stop)
	wg.Wait()
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}
	waitNode(t, nodes[0], "nothing pending", func(st NodeStatus) bool { return st.Pending == 0 && synced(st) })
	waitNode(t, nodes[1], "nothing unacked", func(st NodeStatus) bool { return st.Unacked == 0 })
	for i, st := range []NodeStatus{nodes[0].Status(), nodes[1].Status()} {
		if st.ALWrites+st.BMWrites == 0 {
			t.Errorf("node %d wrote no metadata: the test did not exercise it (%+v)", i, st)
		}
	}
	n := dev.Size()
	a, b := pool.Get(1<<20), pool.Get(1<<20)
	for off := int64(0); off < n; off += int64(len(a.B)) {
		k := min(int64(len(a.B)), n-off)
		if _, err := files[0].ReadAt(a.B[:k], off); err != nil {
			t.Fatal(err)
		}
		if _, err := files[1].ReadAt(b.B[:k], off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.B[:k], b.B[:k]) {
			t.Fatalf("the data areas differ in the MiB at %d", off)
		}
	}
}

// TestNodeDiscardOnFiles: a discard on the primary's Device punches the
// range out of both nodes' image files (each frees the space), reads as
// zeros on both, and shows as a hole through Device.Mapped.
func TestNodeDiscardOnFiles(t *testing.T) {
	const size = 32 << 20
	files, data := openFiles(t, size)
	var metas [2]blockdev.Device
	// An activity log of 8 extents: discards go in 8 MiB pieces.
	nodes := runPairOpts(t, ProtocolC, data, metas, 0, 8)
	waitNode(t, nodes[0], "the connection", func(st NodeStatus) bool { return st.Conn == Established })
	if err := nodes[0].Promote(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	waitNode(t, nodes[0], "the full sync", synced)
	dev := nodes[0].Device()
	pool := blockdev.NewPool()
	b := pool.Get(8 << 20)
	for i := range b.B {
		b.B[i] = byte(i%251 + 1)
	}
	if _, err := dev.WriteAt(b.B, 0); err != nil {
		t.Fatal(err)
	}
	used := func(f *blockdev.File) int64 {
		var st syscall.Stat_t
		if err := syscall.Stat(f.Path(), &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	before := [2]int64{used(files[0]), used(files[1])}
	if err := dev.Discard(2<<20, 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}
	waitNode(t, nodes[0], "nothing pending", func(st NodeStatus) bool { return st.Pending == 0 && synced(st) })
	for i, f := range files {
		if freed := before[i] - used(f); freed < 4<<20 {
			t.Errorf("node %d: the discard freed %d bytes of its image file", i, freed)
		}
		if _, err := f.ReadAt(b.B, 0); err != nil {
			t.Fatal(err)
		}
		for k, v := range b.B {
			want := byte(k%251 + 1)
			if k >= 2<<20 && k < 6<<20 {
				want = 0
			}
			if v != want {
				t.Fatalf("node %d: byte %d is %#x after the discard, want %#x", i, k, v, want)
			}
		}
	}
	if mapped, run, err := dev.Mapped(2<<20, size); err != nil || mapped || run != 4<<20 {
		t.Fatalf("Mapped(2 MiB) = %v, %d, %v; want a 4 MiB hole", mapped, run, err)
	}
	// More extents than the log holds, in pieces.
	if err := dev.Discard(0, dev.Size()); err != nil {
		t.Fatal(err)
	}
	if mapped, run, err := dev.Mapped(0, dev.Size()); err != nil || mapped || run != dev.Size() {
		t.Fatalf("after discarding everything: Mapped = %v, %d, %v", mapped, run, err)
	}
	if err := dev.Discard(1, 512); !errors.Is(err, blockdev.ErrAlignment) {
		t.Fatalf("unaligned discard: %v", err)
	}
}
