//go:build unix

package control

import (
	"syscall"
	"time"
)

// processCPU is the CPU time, user and system, that this process has used:
// on a shared machine it measures the sampler's own work, which wall time
// (ns/op) mixes with the waits for a core.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
