package delta

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math"
	"os"

	"github.com/cmc-dev/cmc/internal/atomicfile"
)

// checkpointMagic starts a training checkpoint: the model's parameters and,
// optionally, the optimiser's state, everything needed to resume a run
// bit for bit.
const checkpointMagic = "CMCDELTA"

// checkpointVersion 2 added the run's identity and the checksum; version 1
// files, which had neither, are refused.
const checkpointVersion = 2

// checkpointHeader is the JSON that follows the magic and version.
type checkpointHeader struct {
	Model     Config
	Params    int          // number of float32 parameters that follow
	Optimizer *AdamWConfig `json:",omitempty"` // present when M and V follow the parameters
	Step      int          `json:",omitempty"`
	// Run identifies the training run (data, batch sizes, schedule ...),
	// as the trainer described it: a resume compares it with its own.
	Run map[string]string `json:",omitempty"`
}

// SaveCheckpoint writes m's parameters and, when o is not nil, the
// optimiser's state to path atomically (temporary file, fsync, rename),
// with run, the identity of the training run, stored as given.
// The layout: "CMCDELTA", uint32 version, uint32 header length, the JSON
// header, little-endian float32 Params (and M and V with an optimiser),
// then the SHA-256 of everything before it.
func SaveCheckpoint(path string, m *Model, o *AdamW, run map[string]string) error {
	h := checkpointHeader{Model: m.Config, Params: len(m.Params), Run: run}
	if o != nil {
		h.Optimizer, h.Step = &o.Config, o.Step
	}
	header, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("save checkpoint %q: %w", path, err)
	}
	return atomicfile.WriteFunc(path, func(w io.Writer) error {
		sum := sha256.New()
		hw := io.MultiWriter(w, sum)
		var pre bytes.Buffer
		pre.WriteString(checkpointMagic)
		binary.Write(&pre, binary.LittleEndian, [2]uint32{checkpointVersion, uint32(len(header))})
		pre.Write(header)
		if _, err := hw.Write(pre.Bytes()); err != nil {
			return err
		}
		tensors := [][]float32{m.Params}
		if o != nil {
			tensors = append(tensors, o.M, o.V)
		}
		for _, t := range tensors {
			if err := writeFloats(hw, t); err != nil {
				return err
			}
		}
		_, err := w.Write(sum.Sum(nil))
		return err
	})
}

// LoadCheckpoint reads a checkpoint written by SaveCheckpoint and returns
// the run identity stored with it. The optimiser is nil when the checkpoint
// has none. A checkpoint whose size does not match its header, or whose
// checksum does not match its content, is refused before it is used.
func LoadCheckpoint(path string) (*Model, *AdamW, map[string]string, error) {
	fail := func(format string, a ...any) (*Model, *AdamW, map[string]string, error) {
		return nil, nil, nil, fmt.Errorf("load checkpoint %s: "+format, append([]any{path}, a...)...)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail("%w", err)
	}
	sum := sha256.New()
	r := &hashingReader{r: bufio.NewReader(f), h: sum}
	var pre struct {
		Magic   [8]byte
		Version uint32
		Len     uint32
	}
	if err := binary.Read(r, binary.LittleEndian, &pre); err != nil {
		return fail("header: %w", err)
	}
	if string(pre.Magic[:]) != checkpointMagic {
		return fail("starts with %q, not %q: not a cmc checkpoint", pre.Magic[:], checkpointMagic)
	}
	if pre.Version != checkpointVersion {
		return fail("version %d, this cmc reads version %d (version 1 carried no checksum or run identity: start the run again without --resume)", pre.Version, checkpointVersion)
	}
	if pre.Len > 1<<20 {
		return fail("header of %d bytes is implausibly long", pre.Len)
	}
	header := make([]byte, pre.Len)
	if _, err := io.ReadFull(r, header); err != nil {
		return fail("header: %w", err)
	}
	var h checkpointHeader
	if err := json.Unmarshal(header, &h); err != nil {
		return fail("header: %w", err)
	}
	if err := h.Model.Validate(); err != nil {
		return fail("%w", err)
	}
	// The parameter count and the file size the header implies, checked
	// before allocating anything it claims.
	ts := layout(h.Model)
	if last := ts[len(ts)-1]; h.Params != last.Offset+last.Size() {
		return fail("%d parameters, the config %+v has %d", h.Params, h.Model, last.Offset+last.Size())
	}
	tensors, what := int64(1), "parameters"
	if h.Optimizer != nil {
		tensors, what = 3, "parameters and optimiser state"
	}
	if want := 16 + int64(pre.Len) + tensors*4*int64(h.Params) + sha256.Size; st.Size() != want {
		return fail("%d bytes, but its header (%d %s) implies %d: truncated or damaged", st.Size(), h.Params, what, want)
	}
	m, err := newModel(h.Model)
	if err != nil {
		return fail("%w", err)
	}
	if err := readFloats(r, m.Params); err != nil {
		return fail("parameters: %w", err)
	}
	var o *AdamW
	if h.Optimizer != nil {
		o = NewAdamW(m, *h.Optimizer)
		o.Step = h.Step
		if err := readFloats(r, o.M); err != nil {
			return fail("optimiser first moments: %w", err)
		}
		if err := readFloats(r, o.V); err != nil {
			return fail("optimiser second moments: %w", err)
		}
	}
	want := sum.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r.r, got); err != nil {
		return fail("checksum: %w", err)
	}
	if !bytes.Equal(got, want) {
		return fail("checksum mismatch (stored %x, content %x): the file is damaged", got[:8], want[:8])
	}
	return m, o, h.Run, nil
}

// hashingReader feeds everything read through it to a hash.
type hashingReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	return n, err
}

// writeFloats writes little-endian float32 values.
func writeFloats(w io.Writer, src []float32) error {
	buf := make([]byte, 1<<16)
	for len(src) > 0 {
		n := min(len(src), len(buf)/4)
		for i, v := range src[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		if _, err := w.Write(buf[:4*n]); err != nil {
			return err
		}
		src = src[n:]
	}
	return nil
}
