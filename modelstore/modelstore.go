// Package modelstore finds models that ollama has pulled, so that cmc can
// run them in place: `--model ollama:llama3.2:1b` names the GGUF file that
// `ollama pull llama3.2:1b` stored, without copying gigabytes.
//
// ollama keeps its models in a content-addressed store, by default
// ~/.ollama/models (or $OLLAMA_MODELS):
//
//	manifests/HOST/NAMESPACE/MODEL/TAG   one JSON manifest per pulled name
//	blobs/sha256-HEX                     every layer, named by its digest
//
// A manifest lists layers by media type and digest; the weights are the
// layer of type application/vnd.ollama.image.model, a GGUF file. A name is
// [HOST/][NAMESPACE/]MODEL[:TAG] with ollama's defaults registry.ollama.ai,
// library and latest, so "ollama:user/model" and "ollama:hf.co/user/repo:q4"
// resolve as ollama itself resolves them (its types/model and manifest
// packages).
package modelstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Scheme prefixes a model reference that names a model in ollama's store.
const Scheme = "ollama:"

// ModelMediaType is the media type of the layer holding a model's weights.
const ModelMediaType = "application/vnd.ollama.image.model"

// ollama's defaults for the parts a name leaves out.
const (
	defaultHost      = "registry.ollama.ai"
	defaultNamespace = "library"
	defaultTag       = "latest"
)

// Resolve returns the file a model reference names: for "ollama:NAME" the
// model blob in the store at $OLLAMA_MODELS or ~/.ollama/models, and any
// other reference (a plain path, "none") unchanged.
func Resolve(ref string) (string, error) {
	name, ok := strings.CutPrefix(ref, Scheme)
	if !ok {
		return ref, nil
	}
	dir, err := DefaultDir()
	if err != nil {
		return "", fmt.Errorf("%s: %w", ref, err)
	}
	return Store{Dir: dir}.ModelPath(name)
}

// DefaultDir is the store ollama uses: $OLLAMA_MODELS, else ~/.ollama/models.
func DefaultDir() (string, error) {
	if dir := os.Getenv("OLLAMA_MODELS"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find ollama's store (set OLLAMA_MODELS): %w", err)
	}
	return filepath.Join(home, ".ollama", "models"), nil
}

// Store is an ollama models directory.
type Store struct {
	Dir string
}

// Name is a fully qualified model name, as ollama lays it out on disk.
type Name struct {
	Host, Namespace, Model, Tag string
}

// ParseName parses [HOST/][NAMESPACE/]MODEL[:TAG] and fills in ollama's
// defaults. A colon after the last slash starts the tag (a host may carry
// a port, a tag never a slash).
func ParseName(s string) (Name, error) {
	n := Name{Host: defaultHost, Namespace: defaultNamespace, Tag: defaultTag}
	rest := s
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest, n.Tag = rest[:i], rest[i+1:]
	}
	parts := strings.Split(rest, "/")
	switch len(parts) {
	case 1:
		n.Model = parts[0]
	case 2:
		n.Namespace, n.Model = parts[0], parts[1]
	case 3:
		n.Host, n.Namespace, n.Model = parts[0], parts[1], parts[2]
	default:
		return Name{}, fmt.Errorf("ollama model name %q: want [HOST/][NAMESPACE/]MODEL[:TAG]", s)
	}
	for _, part := range []string{n.Host, n.Namespace, n.Model, n.Tag} {
		// Each part becomes a path element: nothing that could leave the store.
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, `/\`) {
			return Name{}, fmt.Errorf("ollama model name %q: want [HOST/][NAMESPACE/]MODEL[:TAG] with no empty, . or .. part", s)
		}
	}
	return n, nil
}

// String is the shortest form that parses back to n, as `ollama list`
// prints it.
func (n Name) String() string {
	s := n.Model + ":" + n.Tag
	switch {
	case !strings.EqualFold(n.Host, defaultHost):
		return n.Host + "/" + n.Namespace + "/" + s
	case !strings.EqualFold(n.Namespace, defaultNamespace):
		return n.Namespace + "/" + s
	}
	return s
}

func (n Name) manifestPath() string {
	return filepath.Join("manifests", n.Host, n.Namespace, n.Model, n.Tag)
}

// manifest is the part of ollama's manifest (a Docker image manifest, v2
// schema 2) that names the layers.
type manifest struct {
	SchemaVersion int     `json:"schemaVersion"`
	Layers        []layer `json:"layers"`
}

type layer struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ModelPath returns the GGUF blob of the model called name. A name the
// store does not hold is an error that lists what it holds.
func (s Store) ModelPath(name string) (string, error) {
	n, err := ParseName(name)
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.Dir, n.manifestPath())
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		// ollama matches names without regard to case; so does this.
		if other, ok := s.findFold(n); ok {
			n, path = other, filepath.Join(s.Dir, other.manifestPath())
			raw, err = os.ReadFile(path)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", s.notFound(n)
	}
	if err != nil {
		return "", fmt.Errorf("ollama model %s: %w", n, err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("ollama model %s: manifest %s: %w", n, path, err)
	}
	i := slices.IndexFunc(m.Layers, func(l layer) bool { return l.MediaType == ModelMediaType })
	if i < 0 {
		return "", fmt.Errorf("ollama model %s: manifest %s has no layer of type %s (an adapter or a cloud model?)", n, path, ModelMediaType)
	}
	l := m.Layers[i]
	if !digestPattern.MatchString(l.Digest) {
		return "", fmt.Errorf("ollama model %s: manifest %s: model layer digest %q, want sha256:<64 hex digits>", n, path, l.Digest)
	}
	blob := filepath.Join(s.Dir, "blobs", strings.Replace(l.Digest, ":", "-", 1))
	st, err := os.Stat(blob)
	if err != nil {
		return "", fmt.Errorf("ollama model %s: model blob: %w (pull it again with `ollama pull %s`)", n, err, n)
	}
	if l.Size > 0 && st.Size() != l.Size {
		return "", fmt.Errorf("ollama model %s: blob %s has %d bytes, the manifest says %d (an unfinished pull? run `ollama pull %s`)", n, blob, st.Size(), l.Size, n)
	}
	return blob, nil
}

// List returns the names of the models the store holds, sorted.
func (s Store) List() ([]Name, error) {
	files, err := filepath.Glob(filepath.Join(s.Dir, "manifests", "*", "*", "*", "*"))
	if err != nil {
		return nil, err
	}
	var names []Name
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			continue
		}
		rel, err := filepath.Rel(filepath.Join(s.Dir, "manifests"), f)
		if err != nil {
			continue
		}
		p := strings.Split(rel, string(filepath.Separator))
		names = append(names, Name{Host: p[0], Namespace: p[1], Model: p[2], Tag: p[3]})
	}
	slices.SortFunc(names, func(a, b Name) int { return strings.Compare(a.String(), b.String()) })
	return names, nil
}

// findFold returns the name in the store equal to n but for case.
func (s Store) findFold(n Name) (Name, bool) {
	names, err := s.List()
	if err != nil {
		return Name{}, false
	}
	for _, m := range names {
		if strings.EqualFold(m.manifestPath(), n.manifestPath()) {
			return m, true
		}
	}
	return Name{}, false
}

func (s Store) notFound(n Name) error {
	names, err := s.List()
	if err != nil || len(names) == 0 {
		return fmt.Errorf("ollama model %s: not in ollama's store %s, which holds no models (pull it with `ollama pull %s`, or set OLLAMA_MODELS to the store)", n, s.Dir, n)
	}
	held := make([]string, len(names))
	for i, m := range names {
		held[i] = m.String()
	}
	return fmt.Errorf("ollama model %s: not in ollama's store %s; it holds: %s", n, s.Dir, strings.Join(held, ", "))
}
