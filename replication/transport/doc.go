// Package transport is the network edge of replication: the link between
// the two nodes of a resource. It keeps several TCP connections over one
// or more paths (address pairs), stripes messages over them, and delivers
// them in order, exactly once, for as long as one connection lives.
//
// # Sessions
//
// A Session spans connections. The dialing node (one of the two, by
// configuration) picks a random session ID and sends it in each new
// connection's handshake; the accepting node joins the connection to its
// live session if the ID matches, and otherwise ends that session and
// starts a new one. A session ends when its last connection is gone, when
// Close is called, or when the oldest message the peer has not
// acknowledged is older than Timeout × KoCount. Handler.Up and
// Handler.Down bracket it.
//
// # Channels, striping, order
//
// Messages go on one of two channels, each with its own sequence numbers:
// Data (writes, resync) and Control (acks, state). Each path has
// ConnsPerPath data connections and one control connection. A message goes
// to the live connection of its channel's kind with the fewest bytes
// queued for writing (falling back to the other kind when none is left).
// The receiver reorders by sequence number, drops duplicates, delivers in
// order on one goroutine per channel, and acknowledges cumulatively. The
// sender keeps every message until it is acknowledged and re-sends those
// of a connection that died on the remaining ones; so losing a connection
// or a path loses and reorders nothing.
//
// # Wire format
//
// A connection starts with the handshake: the dialer's hello (resource,
// node names, session ID, connection kind, a 32-byte nonce), the
// acceptor's challenge (its nonce and HMAC-SHA256 of both nonces under the
// shared secret), the dialer's response (the HMAC the other way round),
// and the acceptor's OK. With TLS configured the handshake runs inside
// TLS. Then frames: a 32-byte header (magic, type, channel, meta length,
// sequence number, data length, CRC32C), the meta, the data. The CRC
// covers header, meta and data when Config.CRC is set. A frame that fails
// its checks closes its connection only.
//
// # Callers' duties
//
// Msg.Data belongs to the transport from Send until Msg.Done is called.
// Deliver's data comes from Config.Alloc and then belongs to the handler;
// its meta is valid only during the call. Deliver is called from one
// goroutine per channel and must not block for long: delivery, and so
// acknowledgements and the sender's window, wait for it.
package transport
