package evaluate

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/metrics"
)

// Set is one --data file, read and checked.
type Set struct {
	path string
	// set is the TOFU set the file is (empty: none of the four); scoring
	// is how its answers are scored, the set's own way or, for another
	// file, by what its records hold.
	set, scoring metrics.TOFUSet
	examples     []data.Example
}

var tofuSets = []metrics.TOFUSet{metrics.TOFUForget, metrics.TOFURetain, metrics.TOFURealAuthors, metrics.TOFUWorldFacts}

// ReadSets reads every --data file (with --limit applied) and checks
// what the task needs of it.
func ReadSets(args []string, format string, limit int, task string) ([]Set, error) {
	var sets []Set
	for _, arg := range args {
		set, path := parseDataArg(arg)
		examples, err := data.Read(path, format)
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		if limit > 0 && limit < len(examples) {
			examples = examples[:limit]
		}
		s := Set{path: path, set: set, scoring: set, examples: examples}
		if task == "tofu" {
			if err := s.check(sets); err != nil {
				return nil, err
			}
		}
		sets = append(sets, s)
	}
	return sets, nil
}

// parseDataArg splits a --data value into its TOFU set and path: an
// explicit SET= prefix, else TOFU's file names.
func parseDataArg(arg string) (metrics.TOFUSet, string) {
	if set, path, ok := strings.Cut(arg, "="); ok && slices.Contains(tofuSets, metrics.TOFUSet(set)) {
		return metrics.TOFUSet(set), path
	}
	name := strings.ReplaceAll(strings.ToLower(filepath.Base(arg)), "-", "_")
	switch {
	case strings.Contains(name, "real_author"):
		return metrics.TOFURealAuthors, arg
	case strings.Contains(name, "world_fact"):
		return metrics.TOFUWorldFacts, arg
	case strings.Contains(name, "forget"):
		return metrics.TOFUForget, arg
	case strings.Contains(name, "retain"):
		return metrics.TOFURetain, arg
	}
	return "", arg
}

// check validates a TOFU file against its set and the files before it.
func (s *Set) check(before []Set) error {
	if s.set != "" {
		for _, b := range before {
			if b.set == s.set {
				return fmt.Errorf("--data %s and %s are both TOFU's %s set", b.path, s.path, s.set)
			}
		}
	}
	for _, ex := range s.examples {
		if ex.Instruction == "" {
			return fmt.Errorf("--data %s: %s has no question (want TOFU records)", s.path, ex.Source)
		}
		if (s.set == metrics.TOFURealAuthors || s.set == metrics.TOFUWorldFacts) && len(ex.Perturbed) == 0 {
			return fmt.Errorf("--data %s: %s has no perturbed_answer, which TOFU's %s set scores against (use the *_perturbed file)", s.path, ex.Source, s.set)
		}
	}
	if s.scoring == "" {
		// Another file: with paraphrases it is scored like the retain set,
		// with perturbed answers alone like real authors.
		s.scoring = metrics.TOFURetain
		if !slices.ContainsFunc(s.examples, func(ex data.Example) bool { return ex.Paraphrased != "" }) &&
			slices.ContainsFunc(s.examples, func(ex data.Example) bool { return len(ex.Perturbed) > 0 }) {
			s.scoring = metrics.TOFURealAuthors
		}
	}
	return nil
}

// ReadReference reads the forget set's truth ratios (the model alone) from
// an earlier eval's --json.
// The reference is of no use without a forget set among sets to compare it with.
func ReadReference(path string, sets []Set) ([]float64, error) {
	if !slices.ContainsFunc(sets, func(s Set) bool { return s.set == metrics.TOFUForget }) {
		return nil, fmt.Errorf("--reference %s: no forget set among --data to compare with", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--reference: %w", err)
	}
	var doc Doc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("--reference %s: %w (want the --json of a cmc eval --task tofu)", path, err)
	}
	if doc.Task != "tofu" {
		return nil, fmt.Errorf("--reference %s: task %q, want the --json of a cmc eval --task tofu", path, doc.Task)
	}
	var ratios []float64
	found := ""
	for _, f := range doc.Files {
		if f.Set != metrics.TOFUForget {
			continue
		}
		if found != "" {
			return nil, fmt.Errorf("--reference %s: two forget sets (%s, %s)", path, found, f.File)
		}
		found = f.File
		for _, it := range f.Items {
			if r := float64(it.User.TruthRatio); !math.IsNaN(r) {
				ratios = append(ratios, r)
			}
		}
	}
	switch {
	case found == "":
		return nil, fmt.Errorf("--reference %s: no forget set in it", path)
	case len(ratios) == 0:
		return nil, fmt.Errorf("--reference %s: its forget set %s has no truth ratios (it needs paraphrased and perturbed answers)", path, found)
	}
	return ratios, nil
}
