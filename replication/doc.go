// Package replication will hold hastor's synchronous block replication to a
// peer node: DRBD's protocols A, B and C, dirty bitmaps, the activity log,
// generation identifiers, resync and online verify.
//
// Where it sits: a LUN's stack is scsi.LU → crypt.Device (if encrypted) →
// replication's Device → blockdev.File. Encryption is above replication, so
// only ciphertext crosses the wire and reaches the peer's disk. The
// replicating Device is a blockdev.Device: WriteAt returns when the write is
// as durable as the resource's protocol promises (A: local disk and the send
// queue; B: local disk and the peer received it; C: both disks), and
// Flush/FUA reach the peer's disk before they return. Discard (UNMAP) is a
// write of zeros that carries no data: each node deallocates the range. On
// the secondary the
// Device is not ready in the scsi.Medium sense, with the ALUA standby
// sense, so initiators see a standby path rather than a lost device.
//
// How it is built (STYLE.md lessons 1, 2, 4 and 11):
//   - a deterministic state machine per resource: events go in (a local
//     write, its completion, a peer message, an ack, a tick, connect or
//     disconnect, an admin command); actions come out (write locally, send,
//     persist metadata, complete a command). It starts no goroutine, reads
//     no clock and touches no socket or disk. Completions wait in an explicit
//     queue until their protocol's conditions hold;
//   - one driver goroutine per resource carries out the actions;
//   - the transport: several TCP connections over one or more paths,
//     messages striped to the connection with the least queued bytes and put
//     back in order by sequence number, acks and pings on their own channel,
//     HMAC challenge-response with the shared secret, optional TLS and
//     CRC32C;
//   - subpackages for the pieces with no I/O: genid (generation identifiers
//     and the resync decision) and meta (superblock, dirty bitmap and
//     activity log, with their crash-safe on-disk format).
//
// Role changes are explicit, fenced transitions (hastorctl primary and
// secondary now; the cluster package's election later).
package replication
