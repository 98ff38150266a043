// Package cpuinfo tells how many CPU threads compute-bound work should use.
//
// llama.cpp's own tools default to the number of physical cores: a second
// hyper-thread of a core shares its vector units, so for matrix products it
// adds contention rather than speed. cmc does the same.
package cpuinfo

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// PhysicalCores is the number of physical cores this process may run on:
// the distinct cores behind the CPUs of its affinity mask, at least 1. Where
// the topology cannot be read it is runtime.NumCPU().
func PhysicalCores() int {
	n := physicalCores("/sys/devices/system/cpu")
	usable := runtime.NumCPU() // honours the affinity mask
	if n <= 0 || n > usable {
		return usable
	}
	return n
}

// physicalCores counts the distinct sibling sets (threads sharing a core)
// listed under a Linux sysfs cpu directory; 0 when there are none.
func physicalCores(sysCPU string) int {
	paths, _ := filepath.Glob(filepath.Join(sysCPU, "cpu[0-9]*", "topology", "thread_siblings_list"))
	cores := map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cores[strings.TrimSpace(string(b))] = true
	}
	return len(cores)
}
