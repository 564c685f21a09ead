// Package scsi is the SCSI layer of hastor's iSCSI target: it decodes CDBs
// and executes them (SPC-4 primary commands, SBC-3 block commands) against
// logical units backed by a blockdev.Device.
//
// # Model
//
// A Target is one SCSI target device: the fixed set of logical units (LU)
// behind one iSCSI target name, indexed by LUN number. Target.LU never
// returns nil: absent LUNs map to a stand-in that answers INQUIRY, REPORT
// LUNS and REQUEST SENSE as SPC-4 requires for an incorrect LUN.
//
// Each command goes through two steps. LU.Decode validates the CDB once
// into a typed Command (operation, data direction and length, LBA, block
// count, flags, or the CHECK CONDITION to return); it is pure and does not
// allocate. LU.Execute then runs it for an I_T nexus and returns a Response
// (status, fixed- or descriptor-format sense data, number of data-in bytes).
//
// A Nexus is one I_T nexus (iSCSI session). The package keeps per-nexus unit
// attention queues (SAM-5 "unit attention condition") in it and in the LU. Unit
// attentions are established when a nexus first attaches (29h/00h), by logical
// unit and target resets (29h/03h, 29h/01h), by MODE SELECT changes made
// through another nexus (2Ah/01h) and by I_T nexus loss (29h/07h, reported when
// the initiator port logs in again).
//
// Mode parameters: Caching (08h, WCE changeable), Control (0Ah, D_SENSE
// changeable; SWP fixed at 0) and Informational Exceptions (1Ch). Their
// current values form a small immutable state (modeState) replaced by
// explicit transitions, kept apart so it can be replicated to a peer node.
// Nothing is savable.
//
// Besides the usual SPC-4/SBC-3 set (INQUIRY, MODE SENSE/SELECT, READ,
// WRITE, VERIFY, WRITE AND VERIFY, SYNCHRONIZE CACHE, ...) the LU implements
// PRE-FETCH (10)/(16) (GOOD: there is no cache to load), GET LBA STATUS,
// ORWRITE (16), COMPARE AND WRITE (caw.go, VMware's ATS), WRITE SAME
// (10)/(16), EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (xcopy.go,
// VMware's full copy, between the LUs of one Target), READ DEFECT DATA
// (10)/(12) (empty lists) and SPC-2 RESERVE/RELEASE (6)/(10).
//
// # Logical block provisioning
//
// An LU whose device can deallocate (blockdev.Discarder: a file, a block
// device or a replicated volume, not an encrypted one) is thin provisioned
// (provisioning.go): LBPME and LBPRZ in READ CAPACITY (16), UNMAP, and WRITE
// SAME (16) with UNMAP=1, both as durable as writes; GET LBA STATUS reports
// deallocated runs where the device can tell (blockdev.Mapper: an image
// file's holes). Other LUs, and those configured FullyProvisioned, are
// fully provisioned: UNMAP is an unsupported operation code there and GET
// LBA STATUS reports every block mapped.
//
// Unsupported commands (EXTENDED COPY (LID4), SANITIZE, WRITE
// ATOMIC, ...) fail with INVALID COMMAND OPERATION CODE, which conformance
// suites such as libiscsi's treat as "not implemented". REPORT SUPPORTED OPERATION CODES lists exactly the commands
// the LU supports, and its CDB usage data is the mask Decode uses to reject
// reserved bits.
//
// # Reservations
//
// SPC-2 reservations (reservation.go) live in a small immutable state per LU
// (resState), replaced by explicit transitions and kept apart from I/O state
// like the mode state, so that both can be replicated to a peer node. While
// an I_T nexus holds the LU reserved, most commands of other I_T nexuses end
// with RESERVATION CONFLICT (status 18h, no sense data) after any pending
// unit attention is reported. LU reset, target reset and I_T nexus loss
// (Detach) release the reservation.
//
// Persistent reservations (pr.go, prcmd.go: PERSISTENT RESERVE IN/OUT) are
// shaped the same way (prState). They survive resets and I_T nexus loss, are
// kept in memory only (no APTPL), and while registrations exist SPC-2
// RESERVE and RELEASE conflict.
//
// # Read-modify-write atomicity
//
// ORWRITE and COMPARE AND WRITE must run as uninterrupted sequences. The
// LU keeps a fixed table of stripe locks (stripes.go): commands
// that modify the medium hold their stripes' locks shared, read-modify-write
// commands hold them exclusively, READ takes none.
//
// Spec references name clauses by title (e.g. SBC-3 "READ CAPACITY (16)")
// rather than number, since numbering differs between draft revisions.
//
// # Durability
//
// With the Caching page's WCE bit clear, and for every write with FUA, a
// write is durable (blockdev.FUAWriter, or WriteAt followed by Flush)
// before Execute returns GOOD. With WCE set, other writes are acknowledged
// once the device has them, and SYNCHRONIZE CACHE flushes the device.
//
// # Concurrency
//
// Decode and Execute are safe for concurrent use, for any number of
// commands of any nexuses on the same LU. READ, WRITE and TEST UNIT READY
// take no LU-wide lock and do not allocate: they read the current mode and
// reservation states through atomic pointers and the nexus's pending-UA
// flag through an atomic bool; WRITE also takes the shared lock of the
// stripes it writes (one or two atomic operations for a typical I/O). Mode changes, attach/detach and resets serialize on a
// small per-LU mutex. Commands run concurrently are unordered, as with
// the SIMPLE task attribute; the Control mode page reports QUEUE
// ALGORITHM MODIFIER 1.
//
// # Callers' duties (the iSCSI transport)
//
//   - Create one Nexus per session; call Target.Attach at login before the
//     first command and Target.Detach after the session's last command has
//     completed. Do not change or copy a Nexus after Attach.
//   - Map the PDU's LUN field with DecodeLUN and pick the LU with
//     Target.LU.
//   - Call Decode on the CDB, then Command.CheckTransferLength with the
//     expected data transfer length; use Command.Dir and Command.DataLen to size
//     buffers and solicit data-out (R2T), never beyond the expected data
//     transfer length. DataLen is 0 for commands that failed to decode:
//     discard any immediate data and send the response. The data direction
//     comes from the CDB, not from the PDU's R/W flags.
//   - Buffers passed to Execute must start at a multiple of 4096
//     (blockdev.Align). Execute may overwrite data-out bytes (ORWRITE
//     computes its result in place). For data-in, pass len = min(DataLen, expected data
//     transfer length) and cap = len rounded up to a multiple of 4096; send
//     data[:Response.DataLen] and compute residuals from it. For data-out,
//     pass the bytes received (see Execute for short transfers).
//   - Send Response.Status as is: besides GOOD and CHECK CONDITION it may be
//     RESERVATION CONFLICT (no sense data) or TASK ABORTED.
//   - Task management: on ABORT TASK and similar, stop sending the
//     command's response (Execute may still be running); on LOGICAL UNIT
//     RESET, abort the LU's tasks and call LU.Reset; on TARGET WARM/COLD
//     RESET, abort all tasks and call Target.Reset. TAS is 0: tasks of
//     other nexuses are aborted without a response.
//   - Close the blockdev.Device only after every Execute on the LU has
//     returned.
package scsi
