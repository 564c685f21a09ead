package luks2

import "golang.org/x/sys/unix"

// totalRAMKiB returns the machine's RAM in KiB, or 0 if unknown.
func totalRAMKiB() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit) / 1024
}
