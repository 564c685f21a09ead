package replication

import (
	"encoding/binary"
	"errors"
	"fmt"

	"hastor/replication/genid"
)

// MsgType is the type of a message between the two nodes of a resource.
type MsgType uint8

// Message types. Each channel delivers in the order it was sent; the two
// channels are not ordered with each other (see onData). [c] marks the
// control channel, the rest travel on the data channel with the writes.
const (
	MsgState        MsgType = 1 + iota // role, disk state, generation identifiers, flags, size
	MsgRecvAck                         // [c] protocol B: the write ID was received
	MsgWriteAck                        // [c] the write ID is on the peer's disk (Status != 0: it failed)
	MsgFlushAck                        // [c] the flush ID and every write before it are durable on the peer
	MsgResyncAck                       // [c] resync data ID was written (or found equal)
	MsgChecksumMiss                    // [c] checksum resync: the block range ID differs; send the data
	MsgVerifyReply                     // [c] verify: Flags holds the mismatch mask of the range
	MsgVerifyDone                      // verify finished on the source; Len = bytes found out of sync
	MsgReadReply                       // [c] a read the detached primary asked for; Data holds the blocks
	MsgNeedFull                        // the peer asks for a full resync (invalidate while connected)
	MsgWrite                           // application write: Off, Len, Flags&FlagFUA; Data holds the blocks (none with FlagDiscard)
	MsgFlush                           // barrier: flush after every earlier write
	MsgBitmap                          // bitmap exchange: Data holds (first, end) block pairs, little-endian u64
	MsgBitmapDone                      // end of the sender's bitmap
	MsgResyncData                      // resync: Off, Len; Data holds the blocks
	MsgResyncZero                      // resync: Off, Len read as zeros on the source (discard or write zeros)
	MsgChecksum                        // checksum resync: Data holds one SHA-256 digest of the range
	MsgResyncDone                      // the resync is complete; UUIDs are the source's after FinishSyncSource
	MsgVerifyReq                       // verify: Data holds 8-byte digests of each 4 KiB block of the range
	MsgMarkOOS                         // verify: mark Off, Len out of sync (found twice different)
	MsgReadReq                         // the detached primary asks for blocks Off, Len
	MsgPRState                         // the primary's persistent reservation state (Data; opaque); ID != 0 asks for MsgPRAck
	MsgPRAck                           // [c] the secondary holds the state of MsgPRState ID
	msgTypeEnd
)

// Message flags.
const (
	FlagFUA     uint32 = 1 << iota // MsgWrite: write with FUA, answer with MsgWriteAck once durable
	FlagDiscard                    // MsgWrite: no data; the range is to read as zeros (deallocate it)
)

// Msg is the decoded fixed part ("meta") of a message. Which fields count
// depends on the type; Data travels beside it.
type Msg struct {
	Type  MsgType
	ID    uint64 // request or operation ID, echoed in the answer
	Off   int64  // byte offset in the data area
	Len   int64  // byte length
	Flags uint32
	// Status is 0 for success; in an ack, non-zero means the peer's disk
	// failed the operation.
	Status uint8
	// State messages only.
	Role     Role
	Disk     DiskState
	GFlags   genid.Flags
	UUIDs    genid.Set
	Size     int64 // data area size in bytes
	Protocol Protocol
	// PrimaryAtSplit: the sender was primary when its last session ended
	// (split-brain recovery needs it).
	PrimaryAtSplit bool
	// Changed is the number of out-of-sync blocks in the sender's bitmap.
	Changed uint64
}

const (
	metaShort = 32  // ID, Off, Len, Flags, Status
	metaState = 112 // metaShort + the state fields
)

// ErrBadMessage: a message from the peer failed its checks. The session is
// closed; nothing is applied.
var ErrBadMessage = errors.New("replication: malformed peer message")

func (t MsgType) hasState() bool { return t == MsgState || t == MsgResyncDone || t == MsgBitmapDone }

// encode appends m's meta to dst.
func (m *Msg) encode(dst []byte) []byte {
	var b [metaState]byte
	le := binary.LittleEndian
	le.PutUint64(b[0:], m.ID)
	le.PutUint64(b[8:], uint64(m.Off))
	le.PutUint64(b[16:], uint64(m.Len))
	le.PutUint32(b[24:], m.Flags)
	b[28] = m.Status
	if !m.Type.hasState() {
		return append(dst, b[:metaShort]...)
	}
	b[29] = byte(m.Role)
	b[30] = byte(m.Disk)
	b[31] = byte(m.Protocol)
	var gf uint64
	for i, f := range []bool{m.GFlags.Primary, m.GFlags.CrashedPrimary, m.GFlags.Consistent, m.GFlags.Tiebreak, m.PrimaryAtSplit} {
		if f {
			gf |= 1 << i
		}
	}
	le.PutUint64(b[32:], gf)
	le.PutUint64(b[40:], uint64(m.UUIDs.Current))
	le.PutUint64(b[48:], uint64(m.UUIDs.Bitmap))
	le.PutUint64(b[56:], uint64(m.UUIDs.History[0]))
	le.PutUint64(b[64:], uint64(m.UUIDs.History[1]))
	le.PutUint64(b[72:], uint64(m.Size))
	le.PutUint64(b[80:], m.Changed)
	return append(dst, b[:]...)
}

// decodeMsg parses and checks the meta of a message of type t.
func decodeMsg(t MsgType, meta []byte) (Msg, error) {
	m := Msg{Type: t}
	if t == 0 || t >= msgTypeEnd {
		return m, fmt.Errorf("%w: unknown type %d", ErrBadMessage, t)
	}
	want := metaShort
	if t.hasState() {
		want = metaState
	}
	if len(meta) != want {
		return m, fmt.Errorf("%w: type %d: meta is %d bytes, want %d", ErrBadMessage, t, len(meta), want)
	}
	le := binary.LittleEndian
	m.ID = le.Uint64(meta[0:])
	m.Off = int64(le.Uint64(meta[8:]))
	m.Len = int64(le.Uint64(meta[16:]))
	m.Flags = le.Uint32(meta[24:])
	m.Status = meta[28]
	if m.Off < 0 || m.Len < 0 || m.Off+m.Len < m.Off {
		return m, fmt.Errorf("%w: type %d: bad range %d+%d", ErrBadMessage, t, m.Off, m.Len)
	}
	if !t.hasState() {
		return m, nil
	}
	m.Role, m.Disk, m.Protocol = Role(meta[29]), DiskState(meta[30]), Protocol(meta[31])
	if m.Role > Primary || m.Disk >= diskStateEnd || m.Protocol > ProtocolC {
		return m, fmt.Errorf("%w: state: bad role %d, disk %d or protocol %d", ErrBadMessage, m.Role, m.Disk, m.Protocol)
	}
	gf := le.Uint64(meta[32:])
	m.GFlags = genid.Flags{Primary: gf&1 != 0, CrashedPrimary: gf&2 != 0, Consistent: gf&4 != 0, Tiebreak: gf&8 != 0}
	m.PrimaryAtSplit = gf&16 != 0
	m.UUIDs.Current = genid.UUID(le.Uint64(meta[40:]))
	m.UUIDs.Bitmap = genid.UUID(le.Uint64(meta[48:]))
	m.UUIDs.History[0] = genid.UUID(le.Uint64(meta[56:]))
	m.UUIDs.History[1] = genid.UUID(le.Uint64(meta[64:]))
	m.Size = int64(le.Uint64(meta[72:]))
	m.Changed = le.Uint64(meta[80:])
	return m, nil
}

// onData reports whether messages of type t travel on the data channel.
// The two channels are not ordered with each other, so everything whose
// meaning depends on what was sent before it (state changes, the end of a
// verify) travels with the data; only answers, which name what they
// answer, take the control channel.
func (t MsgType) onData() bool {
	return t >= MsgWrite && t != MsgPRAck || t == MsgState || t == MsgVerifyDone || t == MsgNeedFull
}

// maxPRState bounds the persistent reservation state a message carries.
const maxPRState = 1 << 20
