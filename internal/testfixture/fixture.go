// Package testfixture finds the shared test fixtures (real vocabularies, models
// and data sets) that live in ../shared/fixtures beside the checkout.
//
// A test that needs a fixture asks for it here, so that one rule holds
// everywhere: on a developer's machine without the fixtures the test is
// skipped, but under CI=true a missing fixture fails the test, so that CI
// can never stay green with the real-data tests silently skipped.
package testfixture

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir is the fixtures directory, found from the test's working directory
// (its package directory) by walking up to the module root.
func Dir(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatalf("fixtures: %v", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(dir), "shared", "fixtures")
		}
		if filepath.Dir(dir) == dir {
			tb.Fatalf("fixtures: no go.mod above %s", wd)
		}
	}
}

// Path returns the path of the fixture rel (relative to the fixtures
// directory). When it is missing the test is skipped, or fails under CI=true.
func Path(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(Dir(tb), rel)
	if _, err := os.Stat(p); err != nil {
		Missing(tb, "fixture %s not found (expected ../shared/fixtures beside the repository): %v", p, err)
	}
	return p
}

// Missing ends a test whose fixture is absent: a skip on a developer's
// machine, a failure under CI=true.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf(format, args...)
	}
	tb.Skipf(format, args...)
}
