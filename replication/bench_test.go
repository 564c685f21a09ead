package replication

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"hastor/blockdev"
	"hastor/replication/transport"
)

// filePair runs two Nodes on O_DIRECT files over loopback TCP, with
// conns data connections on one path; the primary's data area is filled
// with non-zero bytes (so no chunk is sent as a discard).
func filePair(b *testing.B, size int64, conns int) [2]*Node {
	dir := b.TempDir()
	la, lb := loopAddr(b), loopAddr(b)
	pool := blockdev.NewPool()
	var nodes [2]*Node
	for i := range 2 {
		f, err := blockdev.Open(filepath.Join(dir, string(rune('a'+i))), blockdev.Options{Size: size, Create: true})
		if err != nil {
			b.Fatal(err)
		}
		mf, err := blockdev.Open(filepath.Join(dir, string(rune('a'+i))+".meta"), blockdev.Options{Size: 8 << 20, Create: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close(); mf.Close() })
		{
			buf := pool.Get(1 << 20)
			for off := int64(0); off < size; off += 1 << 20 {
				for j := 0; j < len(buf.B); j += 8 {
					binary.LittleEndian.PutUint64(buf.B[j:], uint64(off)+uint64(j)|1+uint64(i)<<40)
				}
				if _, err := f.WriteAt(buf.B, off); err != nil {
					b.Fatal(err)
				}
			}
			pool.Put(buf)
		}
		local, remote, me, peer := la, lb, "a", "b"
		if i == 1 {
			local, remote, me, peer = lb, la, "b", "a"
		}
		n, err := Open(Options{
			Name: "r0", Data: f, Meta: mf, Pool: pool,
			Machine: MachineConfig{Protocol: ProtocolC, Tiebreak: i == 0, PeerTimeout: 10 * time.Second},
			Link: transport.Config{Resource: "r0", LocalNode: me, PeerNode: peer, Dial: i == 0,
				Paths: []transport.Path{{Local: local, Remote: remote}}, Secret: []byte("0123456789abcdef"),
				ConnsPerPath: conns, ReconnectInterval: 20 * time.Millisecond},
		})
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(ctx) }()
	}
	b.Cleanup(func() { cancel(); wg.Wait() })
	return nodes
}

// BenchmarkFullSync measures an idle full sync of 1 GiB between two
// nodes on O_DIRECT files over loopback TCP, from the forced promotion to
// both disks UpToDate.
func BenchmarkFullSync(b *testing.B) {
	const size = 1 << 30
	b.SetBytes(size)
	for range b.N {
		b.StopTimer()
		nodes := filePair(b, size, 2)
		for nodes[0].Status().Conn != Established {
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
		if err := nodes[0].Promote(context.Background(), true); err != nil {
			b.Fatal(err)
		}
		for !synced(nodes[0].Status()) {
			time.Sleep(200 * time.Microsecond)
		}
	}
}
