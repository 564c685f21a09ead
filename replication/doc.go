// Package replication will hold hastor's synchronous block replication to a
// peer node (DRBD-like protocols A, B and C, dirty bitmaps, activity log,
// generation identifiers, resync and online verify).
//
// It will sit between a LUN in package target and its blockdev.Device, and it
// will be written as a deterministic state machine driven by one I/O goroutine.
// Nothing is implemented yet.
package replication
