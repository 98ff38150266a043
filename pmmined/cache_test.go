package pmmined

import (
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/vocab"
)

func cachePair() (user, delta *vocab.Vocab) {
	return byteLevel(" fishing", " the", "\n", "ab"), spm("<0x0A>", "▁", "▁fish", "ab")
}

func sameMap(a, b *Map) bool {
	return a.DeltaSize == b.DeltaSize && slices.Equal(a.ToDelta, b.ToDelta) && slices.Equal(a.Kind, b.Kind)
}

func TestLoadOrBuildReusesCache(t *testing.T) {
	dir := t.TempDir()
	user, delta := cachePair()
	built, err := LoadOrBuild(dir, user, delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	path := CachePath(dir, user, delta, PMMinED)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no map file after a build: %v", err)
	}
	// Plant a different but valid map under the same key: a load that
	// returns it proves the file is read rather than rebuilt.
	planted := &Map{ToDelta: slices.Clone(built.ToDelta), Kind: slices.Clone(built.Kind), DeltaSize: built.DeltaSize}
	planted.ToDelta[0], planted.Kind[0] = 3, KindEdit
	if err := writeMapFile(path, planted, cacheKey(user, delta, PMMinED)); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadOrBuild(dir, user, delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	if !sameMap(loaded, planted) || loaded.Strategy != PMMinED {
		t.Errorf("LoadOrBuild did not return the cached map: %v %v", loaded.ToDelta, loaded.Kind)
	}
	// Other vocabularies or another strategy get another file.
	other, _ := cachePair()
	other.Pieces[1] = vocab.EncodeByteLevel([]byte(" then"))
	for _, p := range []string{CachePath(dir, other, delta, PMMinED), CachePath(dir, user, delta, MinED)} {
		if p == path {
			t.Errorf("cache path %s shared by different maps", p)
		}
	}
}

func TestLoadOrBuildWithoutWritableCache(t *testing.T) {
	user, delta := cachePair()
	notDir := t.TempDir() + "/file"
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOrBuild(notDir, user, delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Build(user, delta, PMMinED)
	if !sameMap(got, want) {
		t.Errorf("got %v, want %v", got.ToDelta, want.ToDelta)
	}
}

func TestLoadOrBuildRebuildsBadCache(t *testing.T) {
	user, delta := cachePair()
	want, err := Build(user, delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	key := cacheKey(user, delta, PMMinED)
	good := func(t *testing.T, path string) []byte {
		if err := writeMapFile(path, want, key); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string, data []byte) []byte
	}{
		{"flipped body byte", func(t *testing.T, _ string, d []byte) []byte { d[mapHeaderSize+3] ^= 0x40; return d }},
		{"truncated", func(t *testing.T, _ string, d []byte) []byte { return d[:len(d)-7] }},
		{"wrong magic", func(t *testing.T, _ string, d []byte) []byte { d[0] = 'X'; return d }},
		{"newer version", func(t *testing.T, _ string, d []byte) []byte {
			binary.LittleEndian.PutUint32(d[8:], mapFileVersion+1)
			return d
		}},
		{"other strategy's map", func(t *testing.T, path string, _ []byte) []byte {
			m, err := Build(user, delta, Exact)
			if err != nil {
				t.Fatal(err)
			}
			if err := writeMapFile(path, m, cacheKey(user, delta, Exact)); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			return data
		}},
		{"id outside the delta vocabulary", func(t *testing.T, path string, _ []byte) []byte {
			bad := &Map{ToDelta: slices.Clone(want.ToDelta), Kind: slices.Clone(want.Kind), DeltaSize: want.DeltaSize}
			bad.ToDelta[0] = int32(want.DeltaSize)
			if err := writeMapFile(path, bad, key); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			return data
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := CachePath(dir, user, delta, PMMinED)
			data := c.damage(t, path, good(t, path))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := readMapFile(path, key, len(user.Pieces), len(delta.Pieces)); err == nil {
				t.Fatal("damaged map file accepted")
			}
			got, err := LoadOrBuild(dir, user, delta, PMMinED)
			if err != nil {
				t.Fatal(err)
			}
			if !sameMap(got, want) {
				t.Errorf("got %v %v, want %v %v", got.ToDelta, got.Kind, want.ToDelta, want.Kind)
			}
			if _, err := readMapFile(path, key, len(user.Pieces), len(delta.Pieces)); err != nil {
				t.Errorf("map file not rewritten: %v", err)
			}
		})
	}
}

func TestTSVAndSummary(t *testing.T) {
	user, delta := cachePair()
	m, err := Build(user, delta, PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	var tsv bytes.Buffer
	if err := WriteTSV(&tsv, m); err != nil {
		t.Fatal(err)
	}
	want := "user_id\tdelta_id\tkind\n0\t5\tprefix\n1\t-1\tnone\n2\t3\tbyte\n3\t6\texact\n4\t2\tspecial\n"
	if tsv.String() != want {
		t.Errorf("TSV:\n%s\nwant:\n%s", tsv.String(), want)
	}
	path := t.TempDir() + "/map.tsv"
	if err := WriteTSVFile(path, m); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != want {
		t.Errorf("TSV file:\n%s", data)
	}

	if got, want := m.Stats().String(), "5 tokens: special 1 (20.0%) byte 1 (20.0%) exact 1 (20.0%) prefix 1 (20.0%) none 1 (20.0%)"; got != want {
		t.Errorf("Stats().String() = %q, want %q", got, want)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("TSV file mode: %v, %v; want 0644", info.Mode(), err)
	}

	var sum bytes.Buffer
	if err := WriteSummary(&sum, m, user, delta, 2); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"token map (pmmined): 5 user tokens onto 7 delta tokens",
		"prefix            1    20.00",
		"prefix onto a shorter token: 1 (20.00%), onto a longer one: 0 (0.00%)",
		`prefix           0 " fishing"               ->       5 " fish"`,
		`special          4 <|endoftext|>            ->       2 </s>`,
		`none             1 " the"                   ->      -1 -`,
	} {
		if !strings.Contains(sum.String(), line) {
			t.Errorf("summary lacks %q:\n%s", line, sum.String())
		}
	}
}

// FuzzReadMapFile feeds damaged map files to the reader: it must reject
// them or return a map whose every entry is usable, never panic.
func FuzzReadMapFile(f *testing.F) {
	user, delta := cachePair()
	m, err := Build(user, delta, PMMinED)
	if err != nil {
		f.Fatal(err)
	}
	key := cacheKey(user, delta, PMMinED)
	seed := f.TempDir() + "/seed.bin"
	if err := writeMapFile(seed, m, key); err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:mapHeaderSize])
	f.Fuzz(func(t *testing.T, data []byte) {
		path := t.TempDir() + "/map.bin"
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readMapFile(path, key, len(user.Pieces), len(delta.Pieces))
		if err != nil {
			return
		}
		for u, d := range got.ToDelta {
			if d < -1 || int(d) >= len(delta.Pieces) || got.Kind[u] >= kindCount {
				t.Fatalf("accepted entry %d: delta %d kind %d", u, d, got.Kind[u])
			}
		}
	})
}
