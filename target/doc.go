// Package target is hastor's iSCSI target: it accepts TCP connections,
// runs login (with CHAP) and discovery, and carries SCSI commands between
// initiators and the logical units of package target/scsi (RFC 7143).
//
// Lifecycle: New builds a Server from Options; Serve accepts connections on a
// listener until the context ends; Shutdown closes every listener and
// connection and waits for their goroutines.
//
// Each connection has one reader goroutine and one writer goroutine. The
// reader decodes each PDU header once, then reads any SCSI data straight into
// the task's aligned buffer (blockdev.Pool), so WRITE data goes from the
// socket to pwrite without an intermediate copy. Each SCSI command runs in
// its own goroutine, so many commands are in flight per session and complete
// in any order. The writer owns the connection's StatSN and sends each
// response, READ data included, with one writev of headers and data buffers.
//
// Ownership: a task belongs to the reader while its data arrives, to its
// execution goroutine while the SCSI layer runs it, and to the writer from
// the moment its response is queued; the writer releases it. The session's
// task table (under the session mutex) lets task management find tasks in
// any of these states. A panic while handling one connection is recovered
// and closes only that connection.
package target
