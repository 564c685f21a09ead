// Package ackcheck checks that a block device behind an iSCSI target keeps
// every write it acknowledged, across crashes, restarts and failovers.
//
// A writer (Run) stamps every block it writes (a BlockSize unit, 4 KiB by
// default) with a header: a magic, the block number, a writer-wide
// monotonically increasing sequence number and a CRC32C of the block. The
// rest of the block is pseudo-random data derived from (block, sequence
// number), so a block read back can be verified without storing its
// content (Stamp, Decode).
//
// A Model records, per block, every sequence number issued, the last one
// acknowledged (GOOD status received) and the writes whose outcome is
// unknown (in flight when the connection died, or failed). Writes to one
// block never overlap in flight: the model refuses a second write to a
// block while one is in flight, and a block whose last write has an
// unknown outcome is never written again by the model (it is "poisoned"),
// so the state a block may be in after a crash is well defined. For each
// block read back, Model.Check accepts exactly:
//
//   - the last acknowledged write, or, when none was acknowledged, the
//     initial content (all zeros: the device must start zeroed);
//   - a write issued after the last acknowledged one whose outcome is
//     unknown (it may or may not have landed).
//
// Anything else is a violation: the initial content or an older stamp
// where a newer write was acknowledged (a lost write), a stamp never
// issued for that block (a misdirected or phantom write), or a block that
// is neither zero nor a valid stamp (torn or garbled).
//
// Verify reads the blocks back (after the target was restarted or failed
// over) and returns a Report. A Model can be saved and loaded (Save, Load,
// JSON), and can keep an append-only journal (Model.SetJournal,
// LoadJournal) that is written before each write is sent and after each
// acknowledgement, so a checker can verify after the writer process itself
// was killed, or run the writer in another process or network namespace.
//
// Callers own the synchronisation: a Model is not safe for concurrent use
// (Run and Verify lock around it), and Verify must not run while Run is
// running on the same Model.
package ackcheck
