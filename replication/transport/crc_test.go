package transport

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// flipProxy forwards TCP connections to target and, once, flips one bit
// of the stream towards it after skip bytes: corruption the TCP checksum
// did not catch.
func flipProxy(t *testing.T, target string, skip int64) (addr string, flipped *atomic.Bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flipped = new(atomic.Bool)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(c, s); c.Close() }()
			go func() {
				defer wg.Done()
				defer s.Close()
				buf := make([]byte, 32<<10)
				var n int64
				for {
					k, err := c.Read(buf)
					if k > 0 {
						if n+int64(k) > skip && !flipped.Load() && flipped.CompareAndSwap(false, true) {
							buf[skip-n] ^= 0x10
						}
						n += int64(k)
						if _, werr := s.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), flipped
}

// TestCRCCatchesCorruption: a bit flipped on the wire fails the frame's
// CRC32C; that connection is closed, the message is sent again on another
// one, and everything arrives intact and in order.
func TestCRCCatchesCorruption(t *testing.T) {
	var flipped *atomic.Bool
	a, _, ra, rb := pair(t, 1, func(a, b *Config) {
		a.CRC, b.CRC = true, true
		proxy, f := flipProxy(t, a.Paths[0].Remote, 200<<10)
		flipped = f
		a.Paths[0].Remote = proxy
	})
	s := waitUp(t, ra)
	waitUp(t, rb)
	waitConns(t, a)
	const n = 2000
	for i := range uint64(n) {
		if err := send(t, s, Data, i, 4096, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitGot(t, rb, Data, n)
	if !flipped.Load() {
		t.Fatal("the proxy flipped nothing")
	}
	ra.mu.Lock()
	ups := ra.ups
	ra.mu.Unlock()
	if ups != 1 {
		t.Fatalf("%d sessions; the corruption should cost one connection, not the session", ups)
	}
}
