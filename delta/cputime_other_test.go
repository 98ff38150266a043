//go:build !unix

package delta

import "time"

// processCPU is unknown here; the benchmarks then report wall-clock rates only.
func processCPU() time.Duration { return 0 }
