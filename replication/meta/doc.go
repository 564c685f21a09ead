// Package meta holds a replicated resource's crash-safe metadata, after
// DRBD's (DRBD User's Guide, "DRBD Internals": "DRBD meta data", "The
// Activity Log", "The quick-sync bitmap", "Generation Identifiers"):
//
//   - Layout: where the metadata lives, internal (at the end of the backing
//     device, which loses that much data area) or external (a separate
//     device or file); PlanInternal and PlanExternal compute it.
//   - Superblock: sizes, the four generation UUIDs (opaque here; package
//     genid gives them meaning), state flags and the resync position, in
//     two checksummed copies written alternately.
//   - Bitmap: the dirty ("quick-sync") bitmap, one bit per 4 KiB block of
//     data, set when the block may differ from the peer; persisted in
//     checksummed 4 KiB pages, a torn page reading as all ones.
//   - ActivityLog: the set of 4 MiB extents that may have writes in
//     flight, bounded (al-extents) with LRU eviction; a deterministic state
//     machine with no I/O. Transactions go to a ring of checksummed 4 KiB
//     slots; after a crash, Recover returns the extents that were active,
//     and only those are resynced (besides the bitmap's bits).
//   - Store: the only part that does I/O, on a blockdev.Device: Create,
//     Open, Load (with crash recovery), WriteSuperblock, FlushBitmap and
//     CommitAL, each ordered and flushed before it returns.
//
// # On-disk format (version 1, little-endian, every structure one or more
// 4 KiB blocks at 4 KiB-aligned offsets, each with a magic at byte 0 and a
// CRC32C of the block, taken with bytes 4-8 zero, at byte 4)
//
//	superblock ×2   version, placement, seq, data size, 4096, 4 MiB,
//	                al-extents, ring slots, bitmap pages, flags,
//	                4 UUIDs, resync position; rest zero
//	AL slot ×ring   transaction seq, part, parts, count, total; then
//	                up to 1008 extent numbers (u32)
//	bitmap page ×N  page index at byte 8; bits of 31 extents (31744
//	                blocks, 124 MiB of data) from byte 128
//
// # Crash safety
//
// The invariant kept: every block whose bit is set in memory, or that a
// write in flight may have changed, either has its bit set on disk or lies
// in an extent that the newest complete activity-log transaction on disk
// records active. Load restores the bitmap and sets the bits of those
// extents, so after any crash every block that may differ from the peer is
// marked out of sync. It holds because:
//
//   - a write is issued only once its extents are recorded active on disk
//     (Begin returns Go, or AfterCommit and the caller waits for
//     Committed, which follows Store.CommitAL's flush);
//   - an extent leaves the log only with no write in flight, and the
//     transaction that drops it is written only after the bitmap pages
//     holding its unpersisted set bits are written and flushed
//     (Transaction.BitmapPages; Store.CommitAL does it);
//   - a transaction is a full snapshot of the active set, possibly several
//     slots; the ring holds two, so a torn transaction (never committed,
//     so none of its new extents has writes) leaves the previous one whole;
//   - the superblock copies alternate by sequence number, so a torn write
//     destroys only the older copy; Open takes the valid copy with the
//     highest sequence: the last committed one or the one being written;
//   - a torn bitmap page is read as all ones.
//
// # Callers' duties
//
//   - One goroutine (the resource's driver) owns a Store with its Bitmap
//     and ActivityLog; none of them is safe for concurrent use.
//   - Call ActivityLog.Begin before each local write and issue the write
//     only as its BeginStatus says; call Complete when it has finished.
//     When Begin returns AfterCommit, call Seal, Store.CommitAL and
//     Committed (batch several Begins into one transaction if you can);
//     queue writes that got Wait and retry them after Committed or
//     Complete.
//   - Set the bits of a write in the Bitmap before issuing it whenever the
//     peer may not get it (disconnected, or when the peer's ack fails).
//     Bits set outside a write that holds its extents (invalidate, verify,
//     resync-target marking) are durable only after Store.FlushBitmap.
//   - Persist state changes with Store.WriteSuperblock before acting on
//     them. On a clean shutdown call ActivityLog.EvictIdle, commit that
//     transaction and FlushBitmap, so that the next Load resyncs nothing.
//   - After an error from the Store, treat the metadata device as failed.
package meta
