// Package blockdev is the storage edge of hastor: every byte a LUN stores
// goes through a Device. It provides
//
//   - Device, the interface the rest of hastor uses, with the optional
//     capabilities FUAWriter and Discarder (check them by type assertion);
//   - File (from Open): O_DIRECT I/O on a regular file or a block device;
//   - Pool: aligned, pooled I/O buffers;
//   - Mem: an in-memory Device that can Crash, losing unflushed writes;
//   - Faulty: a Device wrapper that fails chosen operations.
//
// # Callers' duties
//
// Alignment. Every buffer passed to ReadAt, WriteAt or WriteAtFUA must start
// at a multiple of Align (4096); take buffers from a Pool. Offsets and
// lengths must be multiples of the device's block size (Options.BlockSize
// for a File), and the range must lie within Size. Devices check this on
// every call (a few compares) and fail with ErrAlignment or ErrOutOfRange,
// so a bad request never reaches the kernel; but the SCSI layer should have
// rejected it already when it decoded the CDB.
//
// Durability. A WriteAt (or Discard) that returned without error is visible
// to every later read but may sit in a volatile cache (the disk's, or the
// kernel's metadata for a sparse file) and can be lost on power failure. It
// becomes durable when a Flush called after it returned has returned
// without error. WriteAtFUA is durable on return, without making other
// writes durable. Map SYNCHRONIZE CACHE to Flush and the FUA bit to
// WriteAtFUA, and acknowledge a write that the initiator wants durable only
// after one of them succeeded. A failed Flush means the durability of
// earlier writes is unknown: File then refuses every later Flush and
// WriteAtFUA with ErrFlushFailed, and the LUN should be failed rather than
// the flush retried. Close flushes before releasing the device.
//
// Concurrency. All methods of File, Mem, Faulty and Pool are safe for
// concurrent use, and File takes no lock that serializes I/O: many SCSI
// commands of one LUN may read, write and flush at once. The results of
// overlapping concurrent writes, or of a read overlapping a concurrent
// write, are unspecified (even inside one block); callers that need
// ordering (SCSI ordered tasks, replication) must wait for the earlier
// command to complete before issuing the later one.
//
// Asynchronous I/O. The Device API is synchronous, but a File can submit
// ReadAt, WriteAt and WriteAtFUA with Linux native AIO (io_submit) and
// park the calling goroutine until one reaper goroutine per File, woken by
// the network poller through an eventfd, sees the transfer complete; a
// waiting command then holds no OS thread. By default (IOAuto) a File does
// this only for transfers that start while another of its transfers is in
// flight, and uses pread/pwrite, whose latency is lower, when a transfer
// is alone; Options.IO selects IOAsync or IOSync instead. Flush
// (fdatasync) and Discard stay synchronous. If the kernel refuses an AIO
// context the File uses pread/pwrite only; File.AsyncIO tells. A File
// holds Options.QueueDepth AIO requests in flight at most; further callers
// wait in Go.
//
// Ownership. Open locks the backing store with flock (exclusive, shared for
// ReadOnly) so two daemons cannot serve the same store; a read-write block
// device is also opened with O_EXCL, so a mounted device is refused. The
// caller owns the returned File and must Close it, which also stops its
// reaper goroutine and releases its AIO context (counted against the
// host-wide fs.aio-max-nr). O_DIRECT is never
// dropped silently: a filesystem without it (tmpfs) makes Open fail with
// ErrNoDirectIO.
package blockdev
