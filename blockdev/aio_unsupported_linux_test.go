//go:build linux && !(amd64 || arm64)

package blockdev

// aioSlots returns the number of idle and of all AIO request slots of f.
func aioSlots(f *File) (idle, total int) { return 0, 0 }

// aioTransfers returns the number of transfers f has made with AIO.
func aioTransfers(f *File) uint64 { return 0 }
