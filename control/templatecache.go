package control

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/cmc-dev/cmc/internal/atomicfile"
)

// CachedTemplate keeps a template's log-probabilities on disk so that
// later epochs never run the template. Each position keeps its TopK most
// likely tokens exactly; the remaining probability mass is spread evenly
// over the other tokens. With k = 64 and a peaked template that mass is
// small, and the loss gap against the exact template is measured by a test
// (and reported by `cmc train`'s benchmark). A miss serves the same top-k
// values that a hit will, so a training run gives the same delta whether an
// entry was already on disk or not: two jobs sharing one cache race for its
// entries.
type CachedTemplate struct {
	Inner Template
	Dir   string
	TopK  int
	// Key identifies the template model (TemplateKey); entries made with
	// another key are never read.
	Key string

	// Hits and Misses count sequences served from disk and computed.
	Hits, Misses int

	enc        *zstd.Encoder
	dec        *zstd.Decoder
	logp, exps []float32 // one row's log-probs and softmax scratch
	top        []int32   // one row's top-k ids (a min-heap while selecting)
}

const templateCacheMagic = "CMCT1\x00"

func (c *CachedTemplate) VocabSize() int { return c.Inner.VocabSize() }

// SequenceLogits serves tokens from the cache, or runs the template and
// stores the top-k of every position.
func (c *CachedTemplate) SequenceLogits(tokens []int32, dst []float32) error {
	if err := c.init(); err != nil {
		return err
	}
	path := c.path(tokens)
	if raw, err := os.ReadFile(path); err == nil {
		if err := c.decode(raw, len(tokens), dst); err == nil {
			c.Hits++
			return nil
		}
		// A damaged or foreign entry is recomputed, never trusted.
	}
	c.Misses++
	if err := c.Inner.SequenceLogits(tokens, dst); err != nil {
		return err
	}
	entry := c.encode(len(tokens), dst)
	if err := c.fill(entry, len(tokens), dst); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("template cache: %w", err)
	}
	return atomicfile.Write(path, c.enc.EncodeAll(entry, nil))
}

func (c *CachedTemplate) init() error {
	if c.enc != nil {
		return nil
	}
	if c.TopK < 1 || c.TopK > c.VocabSize() {
		return fmt.Errorf("template cache: top-k %d must be between 1 and the vocabulary size %d", c.TopK, c.VocabSize())
	}
	var err error
	if c.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest)); err != nil {
		return err
	}
	if c.dec, err = zstd.NewReader(nil); err != nil {
		return err
	}
	c.logp, c.exps = make([]float32, c.VocabSize()), make([]float32, c.VocabSize())
	c.top = make([]int32, 0, c.TopK)
	return nil
}

func (c *CachedTemplate) path(tokens []int32) string {
	h := sha256.New()
	h.Write([]byte(c.Key))
	binary.Write(h, binary.LittleEndian, int32(c.TopK))
	binary.Write(h, binary.LittleEndian, tokens)
	sum := hex.EncodeToString(h.Sum(nil)[:16])
	return filepath.Join(c.Dir, sum[:2], sum[2:]+".zst")
}

// encode writes, per position, the log of the mass outside the top k (per
// token) and the top-k (id, log-prob) pairs.
func (c *CachedTemplate) encode(rows int, logits []float32) []byte {
	v, k := c.VocabSize(), c.TopK
	out := make([]byte, 0, len(templateCacheMagic)+12+rows*(4+8*k))
	out = append(out, templateCacheMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(v))
	out = binary.LittleEndian.AppendUint32(out, uint32(rows))
	out = binary.LittleEndian.AppendUint32(out, uint32(k))
	for r := 0; r < rows; r++ {
		lp := c.logp
		logSoftmax(lp, logits[r*v:(r+1)*v], c.exps)
		ids := c.topK(lp)
		var kept float64
		for _, id := range ids {
			kept += math.Exp(float64(lp[id]))
		}
		rest := float32(math.Inf(-1))
		if k < v && kept < 1 {
			rest = float32(math.Log((1 - kept) / float64(v-k)))
		}
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(rest))
		for _, id := range ids {
			out = binary.LittleEndian.AppendUint32(out, uint32(id))
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(lp[id]))
		}
	}
	return out
}

// topK returns the ids of the TopK largest log-probs, best first, by a
// min-heap selection: O(V log k) rather than a sort of the vocabulary.
func (c *CachedTemplate) topK(lp []float32) []int32 {
	h := c.top[:0]
	for id := range lp {
		switch {
		case len(h) < c.TopK:
			h = append(h, int32(id))
			siftUp(h, lp, len(h)-1)
		case lp[id] > lp[h[0]]:
			h[0] = int32(id)
			siftDown(h, lp, 0)
		}
	}
	slices.SortFunc(h, func(a, b int32) int { return cmpDesc(lp[a], lp[b]) })
	c.top = h
	return h
}

func (c *CachedTemplate) decode(compressed []byte, rows int, dst []float32) error {
	raw, err := c.dec.DecodeAll(compressed, nil)
	if err != nil {
		return err
	}
	return c.fill(raw, rows, dst)
}

// fill writes the log-probs of an uncompressed entry (encode's layout) into dst.
func (c *CachedTemplate) fill(raw []byte, rows int, dst []float32) error {
	v, k := c.VocabSize(), c.TopK
	head := len(templateCacheMagic) + 12
	if len(raw) != head+rows*(4+8*k) || string(raw[:len(templateCacheMagic)]) != templateCacheMagic {
		return errors.New("template cache entry has the wrong size or magic")
	}
	p := raw[len(templateCacheMagic):]
	if int(binary.LittleEndian.Uint32(p)) != v || int(binary.LittleEndian.Uint32(p[4:])) != rows || int(binary.LittleEndian.Uint32(p[8:])) != k {
		return errors.New("template cache entry has another shape")
	}
	p = p[12:]
	for r := 0; r < rows; r++ {
		row := dst[r*v : (r+1)*v]
		rest := math.Float32frombits(binary.LittleEndian.Uint32(p))
		for i := range row {
			row[i] = rest
		}
		p = p[4:]
		for j := 0; j < k; j++ {
			id := binary.LittleEndian.Uint32(p)
			if int(id) >= v {
				return errors.New("template cache entry names a token outside the vocabulary")
			}
			row[id] = math.Float32frombits(binary.LittleEndian.Uint32(p[4:]))
			p = p[8:]
		}
	}
	return nil
}

// TemplateKey identifies the template model in path for the cache: the
// SHA-256 of the whole file, so that two fine-tunes of one base, equal in
// size and in their first gigabytes, never share entries. Hashing streams
// the file once (about a second per 2 GB); the digest is remembered in
// dir/keys by the file's absolute path, size and modification time, so a
// later run against the same unchanged file does not read it again.
func TemplateKey(path, dir string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("template cache key: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("template cache key: %w", err)
	}
	name := sha256.Sum256([]byte(abs))
	memo := filepath.Join(dir, "keys", hex.EncodeToString(name[:16]))
	stamp := strconv.FormatInt(st.Size(), 10) + " " + strconv.FormatInt(st.ModTime().UnixNano(), 10) + " "
	if raw, err := os.ReadFile(memo); err == nil {
		if digest, ok := strings.CutPrefix(string(raw), stamp); ok && len(digest) == 2*sha256.Size {
			return digest, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("template cache key: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("template cache key: hash %s: %w", path, err)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	// The memo only saves time: failing to write it is not an error.
	if os.MkdirAll(filepath.Dir(memo), 0o755) == nil {
		_ = atomicfile.Write(memo, []byte(stamp+digest))
	}
	return digest, nil
}
