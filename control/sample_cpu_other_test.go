//go:build !unix

package control

import "time"

// processCPU is not measured here; BenchmarkSample then reports 0 cpu-ns/op.
func processCPU() time.Duration { return 0 }
