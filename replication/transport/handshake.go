package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// Handshake messages.
var (
	magicHello     = [8]byte{'H', 'S', 'T', 'R', 'H', 'E', 'L', 'O'}
	magicChallenge = [8]byte{'H', 'S', 'T', 'R', 'C', 'H', 'A', 'L'}
	magicResponse  = [8]byte{'H', 'S', 'T', 'R', 'R', 'E', 'S', 'P'}
	magicOK        = [8]byte{'H', 'S', 'T', 'R', 'O', 'K', 'A', 'Y'}
)

const (
	protoVersion     = 2 // 2: MsgWrite may carry FlagDiscard (replication package)
	handshakeTimeout = 5 * time.Second
	maxName          = 255
)

// connKind is what a connection carries.
type connKind uint8

const (
	kindData    connKind = 0
	kindControl connKind = 1
)

// hello is the dialer's first message.
type hello struct {
	version  uint8
	kind     connKind
	path     uint8
	session  uint64
	nonce    [32]byte
	resource string
	from, to string
}

func (h *hello) encode() []byte {
	b := make([]byte, 0, 64+len(h.resource)+len(h.from)+len(h.to))
	b = append(b, magicHello[:]...)
	b = append(b, h.version, byte(h.kind), h.path, 0)
	b = binary.LittleEndian.AppendUint64(b, h.session)
	b = append(b, h.nonce[:]...)
	for _, s := range []string{h.resource, h.from, h.to} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}

// readHello reads and checks a hello.
func readHello(r io.Reader) (hello, error) {
	var h hello
	var fixed [52]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return h, fmt.Errorf("%w: hello: %w", ErrProtocol, err)
	}
	var err error
	h, err = decodeHelloFixed(fixed[:])
	if err != nil {
		return h, err
	}
	for _, s := range []*string{&h.resource, &h.from, &h.to} {
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return h, fmt.Errorf("%w: hello: %w", ErrProtocol, err)
		}
		b := make([]byte, n[0])
		if _, err := io.ReadFull(r, b); err != nil {
			return h, fmt.Errorf("%w: hello: %w", ErrProtocol, err)
		}
		*s = string(b)
	}
	return h, nil
}

func decodeHelloFixed(b []byte) (hello, error) {
	var h hello
	if [8]byte(b[:8]) != magicHello {
		return h, fmt.Errorf("%w: not a hastor replication hello", ErrProtocol)
	}
	h.version, h.kind, h.path = b[8], connKind(b[9]), b[10]
	if h.version != protoVersion {
		return h, fmt.Errorf("%w: protocol version %d, want %d", ErrProtocol, h.version, protoVersion)
	}
	if h.kind > kindControl {
		return h, fmt.Errorf("%w: connection kind %d", ErrProtocol, h.kind)
	}
	h.session = binary.LittleEndian.Uint64(b[12:])
	copy(h.nonce[:], b[20:52])
	if h.session == 0 {
		return h, fmt.Errorf("%w: session 0", ErrProtocol)
	}
	return h, nil
}

func mac(secret []byte, role, resource string, n1, n2 []byte, session uint64) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(role))
	m.Write([]byte{0})
	m.Write([]byte(resource))
	m.Write([]byte{0})
	m.Write(n1)
	m.Write(n2)
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], session)
	m.Write(s[:])
	return m.Sum(nil)
}

// dialHandshake runs the dialer's side on c.
func dialHandshake(c net.Conn, cfg *Config, kind connKind, path int, session uint64) error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	h := hello{version: protoVersion, kind: kind, path: uint8(path), session: session,
		resource: cfg.Resource, from: cfg.LocalNode, to: cfg.PeerNode}
	rand.Read(h.nonce[:])
	if _, err := c.Write(h.encode()); err != nil {
		return err
	}
	var ch [8 + 32 + 32]byte
	if _, err := io.ReadFull(c, ch[:]); err != nil {
		return fmt.Errorf("%w: no challenge (wrong resource or node names on the peer?): %w", ErrAuth, err)
	}
	if [8]byte(ch[:8]) != magicChallenge {
		return fmt.Errorf("%w: bad challenge", ErrProtocol)
	}
	nonceA := ch[8:40]
	if !hmac.Equal(ch[40:72], mac(cfg.Secret, "hastor-acceptor", cfg.Resource, h.nonce[:], nonceA, session)) {
		return fmt.Errorf("%w: the peer does not know the shared secret", ErrAuth)
	}
	resp := append(magicResponse[:], mac(cfg.Secret, "hastor-dialer", cfg.Resource, nonceA, h.nonce[:], session)...)
	if _, err := c.Write(resp); err != nil {
		return err
	}
	var ok [8]byte
	if _, err := io.ReadFull(c, ok[:]); err != nil || ok != magicOK {
		return fmt.Errorf("%w: the peer refused our response (different secrets?)", ErrAuth)
	}
	return nil
}

// acceptHandshake runs the acceptor's side on c and returns the hello.
func acceptHandshake(c net.Conn, cfg *Config) (hello, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	h, err := readHello(c)
	if err != nil {
		return h, err
	}
	switch {
	case h.resource != cfg.Resource:
		return h, fmt.Errorf("%w: the peer connects for resource %q, not %q", ErrAuth, h.resource, cfg.Resource)
	case h.from != cfg.PeerNode || h.to != cfg.LocalNode:
		return h, fmt.Errorf("%w: the peer is %q connecting to %q; expected %q connecting to %q", ErrAuth, h.from, h.to, cfg.PeerNode, cfg.LocalNode)
	}
	var nonceA [32]byte
	rand.Read(nonceA[:])
	ch := append(append(magicChallenge[:], nonceA[:]...), mac(cfg.Secret, "hastor-acceptor", cfg.Resource, h.nonce[:], nonceA[:], h.session)...)
	if _, err := c.Write(ch); err != nil {
		return h, err
	}
	var resp [8 + 32]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		return h, fmt.Errorf("%w: no response (the peer refused our challenge: different secrets?): %w", ErrAuth, err)
	}
	if [8]byte(resp[:8]) != magicResponse || !hmac.Equal(resp[8:], mac(cfg.Secret, "hastor-dialer", cfg.Resource, nonceA[:], h.nonce[:], h.session)) {
		return h, fmt.Errorf("%w: the peer does not know the shared secret", ErrAuth)
	}
	if _, err := c.Write(magicOK[:]); err != nil {
		return h, err
	}
	return h, nil
}
