package pmmined

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/cmc-dev/cmc/internal/atomicfile"
	"github.com/cmc-dev/cmc/vocab"
)

// A map file holds one Map so that generation can reuse it instead of
// building it again. Layout (little-endian):
//
//	magic     8 bytes  "CMCTMAP\n"
//	version   uint32   mapFileVersion
//	key       32 bytes sha256 of both vocabularies and the strategy (cacheKey)
//	users     uint32   number of user tokens
//	deltas    uint32   number of delta tokens
//	body      zstd frame of ToDelta (int32 per user token) then Kind (uint8 each)
//	checksum  uint32   CRC-32C of everything before it
//
// A file that fails any check is rebuilt, never trusted.
const (
	mapFileMagic   = "CMCTMAP\n"
	mapFileVersion = 1
	mapHeaderSize  = 8 + 4 + 32 + 4 + 4
)

// ruleVersion changes whenever a change to the mapping rule can change a
// map, so that maps cached by an older build are not reused.
const ruleVersion = "pmmined rule 1"

// cacheKey identifies the map of user onto delta under strategy s: the
// pieces, types, encoding and special ids of both vocabularies.
func cacheKey(user, delta *vocab.Vocab, s Strategy) [32]byte {
	h := sha256.New()
	var buf []byte
	buf = append(buf, ruleVersion...)
	buf = append(buf, 0)
	buf = append(buf, s...)
	buf = append(buf, 0)
	for _, v := range []*vocab.Vocab{user, delta} {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(v.Encoding()))
		for _, id := range []int32{v.BOS, v.EOS, v.UNK, v.PAD} {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
		}
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(v.Pieces)))
		for i, p := range v.Pieces {
			buf = binary.AppendUvarint(buf, uint64(v.Type(int32(i))))
			buf = binary.AppendUvarint(buf, uint64(len(p)))
			buf = append(buf, p...)
			if len(buf) > 1<<16 {
				h.Write(buf)
				buf = buf[:0]
			}
		}
	}
	h.Write(buf)
	var key [32]byte
	h.Sum(key[:0])
	return key
}

// CachePath is the file in cacheDir that holds the map of user onto delta
// under strategy s.
func CachePath(cacheDir string, user, delta *vocab.Vocab, s Strategy) string {
	return cachePath(cacheDir, s, cacheKey(user, delta, s))
}

func cachePath(cacheDir string, s Strategy, key [32]byte) string {
	return filepath.Join(cacheDir, fmt.Sprintf("tokenmap-%s-%s.bin", s, hex.EncodeToString(key[:12])))
}

// LoadOrBuild returns the map of user onto delta under strategy s, read
// from cacheDir when a valid map file for exactly these vocabularies is
// there, else built and saved there (a failure to save is logged, not
// returned). An empty cacheDir only builds.
func LoadOrBuild(cacheDir string, user, delta *vocab.Vocab, s Strategy) (*Map, error) {
	if cacheDir == "" {
		return Build(user, delta, s)
	}
	if _, err := ParseStrategy(string(s)); err != nil {
		return nil, err
	}
	if err := user.Validate(); err != nil {
		return nil, fmt.Errorf("user %w", err)
	}
	if err := delta.Validate(); err != nil {
		return nil, fmt.Errorf("delta %w", err)
	}
	key := cacheKey(user, delta, s)
	path := cachePath(cacheDir, s, key)
	m, err := readMapFile(path, key, len(user.Pieces), len(delta.Pieces))
	if err == nil {
		m.Strategy = s
		return m, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		slog.Warn("token map cache unusable, rebuilding", "path", path, "err", err)
	}
	if m, err = Build(user, delta, s); err != nil {
		return nil, err
	}
	// A cache that cannot be written costs a rebuild next time, not this run.
	err = os.MkdirAll(cacheDir, 0o755)
	if err == nil {
		err = writeMapFile(path, m, key)
	}
	if err != nil {
		slog.Warn("token map not cached", "dir", cacheDir, "err", err)
	}
	return m, nil
}

// writeMapFile saves m atomically: temp file, fsync, rename.
func writeMapFile(path string, m *Map, key [32]byte) error {
	body := make([]byte, 0, 5*len(m.ToDelta))
	for _, d := range m.ToDelta {
		body = binary.LittleEndian.AppendUint32(body, uint32(d))
	}
	for _, k := range m.Kind {
		body = append(body, byte(k))
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("token map file %s: %w", path, err)
	}
	data := make([]byte, 0, mapHeaderSize+len(body)/2)
	data = append(data, mapFileMagic...)
	data = binary.LittleEndian.AppendUint32(data, mapFileVersion)
	data = append(data, key[:]...)
	data = binary.LittleEndian.AppendUint32(data, uint32(len(m.ToDelta)))
	data = binary.LittleEndian.AppendUint32(data, uint32(m.DeltaSize))
	data = enc.EncodeAll(body, data)
	enc.Close()
	data = binary.LittleEndian.AppendUint32(data, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	return atomicfile.Write(path, data)
}

// readMapFile loads a map file and checks everything it can: magic,
// version, key, sizes, checksum, and that every entry is a valid delta id
// and kind.
func readMapFile(path string, key [32]byte, users, deltas int) (*Map, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < mapHeaderSize+4 || string(data[:8]) != mapFileMagic {
		return nil, fmt.Errorf("%s is not a token map file", path)
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != mapFileVersion {
		return nil, fmt.Errorf("%s has version %d, want %d", path, v, mapFileVersion)
	}
	if !bytes.Equal(data[12:44], key[:]) {
		return nil, fmt.Errorf("%s was built for other vocabularies or another strategy", path)
	}
	if u, d := binary.LittleEndian.Uint32(data[44:]), binary.LittleEndian.Uint32(data[48:]); int(u) != users || int(d) != deltas {
		return nil, fmt.Errorf("%s maps %d onto %d tokens, want %d onto %d", path, u, d, users, deltas)
	}
	payload, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)) != sum {
		return nil, fmt.Errorf("%s: checksum mismatch", path)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(5*users+1024)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer dec.Close()
	body, err := dec.DecodeAll(payload[mapHeaderSize:], make([]byte, 0, 5*users))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(body) != 5*users {
		return nil, fmt.Errorf("%s: body has %d bytes, want %d", path, len(body), 5*users)
	}
	m := &Map{ToDelta: make([]int32, users), Kind: make([]Kind, users), DeltaSize: deltas}
	for u := range m.ToDelta {
		d := int32(binary.LittleEndian.Uint32(body[4*u:]))
		k := Kind(body[4*users+u])
		if d < -1 || int(d) >= deltas || k >= kindCount || (d < 0) != (k == KindNone) {
			return nil, fmt.Errorf("%s: entry %d (delta %d, kind %d) is invalid", path, u, d, k)
		}
		m.ToDelta[u], m.Kind[u] = d, k
	}
	return m, nil
}
