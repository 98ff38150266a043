package cpuinfo

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// A 4-CPU machine with two hyper-threads per core has 2 physical cores.
func TestPhysicalCoresCountsSiblingSets(t *testing.T) {
	dir := t.TempDir()
	for cpu, siblings := range []string{"0,2", "1,3", "0,2", "1,3"} {
		topo := filepath.Join(dir, "cpu"+string(rune('0'+cpu)), "topology")
		if err := os.MkdirAll(topo, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(topo, "thread_siblings_list"), []byte(siblings+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n := physicalCores(dir); n != 2 {
		t.Errorf("physicalCores = %d, want 2", n)
	}
	if n := physicalCores(filepath.Join(dir, "missing")); n != 0 {
		t.Errorf("no topology: %d, want 0", n)
	}
}

func TestPhysicalCoresWithinUsableCPUs(t *testing.T) {
	if n := PhysicalCores(); n < 1 || n > runtime.NumCPU() {
		t.Errorf("PhysicalCores = %d, want 1..%d", n, runtime.NumCPU())
	}
}
