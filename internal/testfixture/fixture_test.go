package testfixture

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDirFindsSharedFixtures checks the path rule against the real layout:
// the fixtures' SOURCES.md sits in the directory Dir names.
func TestDirFindsSharedFixtures(t *testing.T) {
	p := Path(t, "SOURCES.md")
	if filepath.Base(filepath.Dir(p)) != "fixtures" {
		t.Errorf("Path = %s, want a file directly under .../shared/fixtures", p)
	}
}

// TestMissingFailsUnderCI runs a sub-test that asks for an absent fixture
// in a child process with CI=true and checks that it fails, not skips.
func TestMissingFailsUnderCI(t *testing.T) {
	if os.Getenv("FIXTURE_CHILD") == "1" {
		Path(t, "no/such/fixture")
		return
	}
	for _, ci := range []string{"true", ""} {
		cmd := testCommand(t, "-test.run=^TestMissingFailsUnderCI$", "-test.v")
		cmd.Env = append(os.Environ(), "FIXTURE_CHILD=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		failed := err != nil
		if failed != (ci == "true") {
			t.Errorf("CI=%q: child failed=%v, want %v\n%s", ci, failed, ci == "true", out)
		}
	}
}

func testCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command(exe, args...)
}
