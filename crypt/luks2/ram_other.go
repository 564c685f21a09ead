//go:build !linux

package luks2

// totalRAMKiB returns 0 (unknown) where RAM size is not queried.
func totalRAMKiB() int64 { return 0 }
