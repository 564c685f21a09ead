package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Sentinel errors.
var (
	// ErrSessionLost: the session ended before the message was
	// acknowledged.
	ErrSessionLost = errors.New("transport: session lost")
	// ErrAuth: a connection's handshake failed (wrong secret, resource
	// or node names).
	ErrAuth = errors.New("transport: peer authentication failed")
	// ErrProtocol: the peer sent something malformed; the connection is
	// closed.
	ErrProtocol = errors.New("transport: protocol error")
	// ErrConfig: the Config is invalid.
	ErrConfig = errors.New("transport: invalid configuration")
)

// Frame layout.
const (
	headerSize = 32
	frameMagic = 0x48535246 // "HSRF"
	// MaxMeta and MaxData bound a message's parts.
	MaxMeta = 1024
	MaxData = 16 << 20

	// Transport-internal frame types.
	typeAck  = 240 // cumulative ack: Seq is the last delivered seq of Channel
	typePing = 241
	typePong = 242
	// MaxUserType is the largest type a caller may use.
	MaxUserType = 239
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is a decoded frame header.
type header struct {
	typ     uint8
	ch      Channel
	flags   uint8
	metaLen int
	seq     uint64
	dataLen int
	crc     uint32
}

// encode writes h into b (headerSize bytes) with a zero CRC field.
func (h *header) encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], frameMagic)
	b[4] = h.typ
	b[5] = byte(h.ch)
	b[6] = h.flags
	b[7] = 0
	le.PutUint16(b[8:], uint16(h.metaLen))
	le.PutUint16(b[10:], 0)
	le.PutUint32(b[12:], uint32(h.dataLen))
	le.PutUint64(b[16:], h.seq)
	le.PutUint32(b[24:], 0)
	le.PutUint32(b[28:], 0)
}

// decodeHeader parses and checks a frame header.
func decodeHeader(b []byte) (header, error) {
	le := binary.LittleEndian
	var h header
	if len(b) < headerSize {
		return h, fmt.Errorf("%w: short header", ErrProtocol)
	}
	if le.Uint32(b[0:]) != frameMagic {
		return h, fmt.Errorf("%w: bad frame magic %#x", ErrProtocol, le.Uint32(b[0:]))
	}
	h.typ, h.ch, h.flags = b[4], Channel(b[5]), b[6]
	h.metaLen = int(le.Uint16(b[8:]))
	h.dataLen = int(le.Uint32(b[12:]))
	h.seq = le.Uint64(b[16:])
	h.crc = le.Uint32(b[24:])
	switch {
	case h.ch > Control:
		return h, fmt.Errorf("%w: bad channel %d", ErrProtocol, h.ch)
	case h.metaLen > MaxMeta || h.dataLen > MaxData:
		return h, fmt.Errorf("%w: frame too large (meta %d, data %d)", ErrProtocol, h.metaLen, h.dataLen)
	case h.typ > MaxUserType && h.typ != typeAck && h.typ != typePing && h.typ != typePong:
		return h, fmt.Errorf("%w: unknown frame type %d", ErrProtocol, h.typ)
	case h.typ > MaxUserType && (h.metaLen != 0 || h.dataLen != 0):
		return h, fmt.Errorf("%w: control frame %d with payload", ErrProtocol, h.typ)
	case h.typ <= MaxUserType && h.seq == 0:
		return h, fmt.Errorf("%w: message without sequence number", ErrProtocol)
	}
	return h, nil
}

// frameCRC returns the CRC32C of a frame whose header (CRC field zero),
// meta and data are given.
func frameCRC(hdr, meta, data []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr)
	c = crc32.Update(c, castagnoli, meta)
	return crc32.Update(c, castagnoli, data)
}
