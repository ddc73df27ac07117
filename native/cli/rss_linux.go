//go:build linux

package cli

import "syscall"

// peakRSS is the process's peak resident memory in bytes (0 when unknown).
func peakRSS() uint64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return uint64(ru.Maxrss) * 1024 // kilobytes on Linux
}
