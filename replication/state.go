package replication

// Role is a node's role for one resource.
type Role uint8

// Roles.
const (
	// Secondary: the node receives the primary's writes and serves no
	// initiator I/O (its LUN reports the ALUA standby state).
	Secondary Role = iota
	// Primary: the node serves initiator I/O and replicates writes.
	Primary
)

func (r Role) String() string {
	if r == Primary {
		return "Primary"
	}
	return "Secondary"
}

// DiskState is the state of a node's copy of the data (DRBD's disk states).
type DiskState uint8

// Disk states.
const (
	// DiskInconsistent: the data is not a usable image (a sync target in
	// the middle of a resync, or a new resource before its first sync).
	DiskInconsistent DiskState = iota
	// DiskOutdated: consistent, but known to lack the peer's newer writes.
	DiskOutdated
	// DiskUpToDate: consistent and as new as any copy known.
	DiskUpToDate
	// DiskFailed: the local disk returned an I/O error and was detached.
	DiskFailed
	// DiskUnknown: the peer's disk state while disconnected.
	DiskUnknown
	diskStateEnd
)

func (d DiskState) String() string {
	switch d {
	case DiskInconsistent:
		return "Inconsistent"
	case DiskOutdated:
		return "Outdated"
	case DiskUpToDate:
		return "UpToDate"
	case DiskFailed:
		return "Failed"
	}
	return "DUnknown"
}

// ConnState is the state of a resource's connection to its peer.
type ConnState uint8

// Connection states.
const (
	// StandAlone: not connecting (the admin disconnected, or a split brain
	// or unrelated data was found).
	StandAlone ConnState = iota
	// Connecting: waiting for the peer.
	Connecting
	// Handshake: connected, exchanging states and bitmaps.
	Handshake
	// Established: connected and in sync; writes are replicated.
	Established
	// SyncSource: sending a resync to the peer; writes are replicated.
	SyncSource
	// SyncTarget: receiving a resync.
	SyncTarget
	// SplitBrain: both nodes changed the data while disconnected; not
	// connecting until the admin resolves it.
	SplitBrain
	// Unrelated: the peer holds other data, or the handshake refused the
	// resync direction; not connecting.
	Unrelated
)

func (c ConnState) String() string {
	return [...]string{"StandAlone", "Connecting", "Handshake", "Connected", "SyncSource", "SyncTarget", "SplitBrain", "Unrelated"}[c]
}

// replicating reports whether application writes go to the peer in c.
func (c ConnState) replicating() bool { return c == Established || c == SyncSource || c == SyncTarget }

// Protocol is a resource's replication protocol (DRBD's A, B and C).
type Protocol uint8

// Protocols: when a write is acknowledged to the initiator.
const (
	// ProtocolA: on the local disk and handed to the send queue.
	ProtocolA Protocol = iota
	// ProtocolB: on the local disk and received by the peer.
	ProtocolB
	// ProtocolC: on the local disk and on the peer's disk.
	ProtocolC
)

func (p Protocol) String() string { return string(rune('A' + p)) }

// ParseProtocol parses "A", "B" or "C".
func ParseProtocol(s string) (Protocol, bool) {
	switch s {
	case "A", "a":
		return ProtocolA, true
	case "B", "b":
		return ProtocolB, true
	case "C", "c":
		return ProtocolC, true
	}
	return 0, false
}
