// Package initiator is a small iSCSI initiator (RFC 7143) for tests and
// tools: it logs in to one target over one TCP connection and runs SCSI
// commands with many in flight. It is not a production initiator: it has
// no digests, no error recovery (ErrorRecoveryLevel 0), no multiple
// connections per session and no mutual CHAP.
//
// Dial opens the connection, Session.Login runs the login phase, and then
// Session.Do (safe for concurrent use) sends one SCSI command and waits for
// its status. Each command has its own Initiator Task Tag; commands are sent
// in CmdSN order and only inside the target's CmdSN window (§4.2.2.1). One
// reader goroutine reads every PDU from the target and dispatches it by ITT:
// Data-In is assembled into the command's buffer, R2T wakes the command's
// goroutine, which answers with Data-Out, and a NOP-In ping is answered
// with a NOP-Out. The reader never writes to the socket itself, so it can
// never deadlock against a target that writes while it reads.
//
// When the connection is lost, or the target breaks the protocol, every
// outstanding command fails with an error that wraps ErrConnLost (or
// ErrProtocol), and so does every later command. A command whose status
// was received returns a Result; its Err method turns a non-GOOD status
// into a *SCSIError. A command abandoned because its context ended may
// still be executed by the target: callers that care (a durability checker)
// must treat it as "outcome unknown".
//
// Callers must call Close (after Logout, for a clean end) to stop the reader
// goroutine.
package initiator
