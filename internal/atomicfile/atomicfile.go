// Package atomicfile writes files so that readers see either the old
// content or the new, never a torn mix: a temporary file in the same
// directory, fsynced, then renamed over the target. A process killed
// between the two leaves its temporary file behind; RemoveStale finds and
// removes those of one target.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Write replaces path with data.
func Write(path string, data []byte) error {
	return WriteFunc(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc replaces path with what write writes to a buffered writer. When
// write or any step after it fails, path is left as it was and the
// temporary file is removed.
func WriteFunc(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), tempPrefix(filepath.Base(path))+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	// CreateTemp makes files private; cmc's outputs are ordinary files.
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable: without it a crash can bring back
	// the old file after the new one was reported written.
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// tempPrefix starts the temporary files of a target named base; os.CreateTemp
// appends a random decimal number. The dot hides them from ls.
func tempPrefix(base string) string { return "." + base + ".tmp" }

// RemoveStale removes the temporary files that interrupted writes of path
// left in its directory, and returns their names. It must not run while
// another process writes path. Besides WriteFunc's own names it removes
// BASE.tmpNNN, the visible names of the checkpoints of earlier cmc
// versions, which are as large as a checkpoint.
func RemoveStale(path string) ([]string, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("look for stale temporary files of %s: %w", path, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !(isTemp(name, tempPrefix(base)) || isTemp(name, base+".tmp")) {
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// isTemp reports whether name is prefix followed by os.CreateTemp's digits.
func isTemp(name, prefix string) bool {
	digits, ok := strings.CutPrefix(name, prefix)
	if !ok || digits == "" {
		return false
	}
	return strings.Trim(digits, "0123456789") == ""
}
