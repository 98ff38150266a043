package delta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// checkpointMagic starts a training checkpoint: the model's parameters and,
// optionally, the optimiser's state, everything needed to resume a run
// bit for bit.
const checkpointMagic = "CMCDELTA"

const checkpointVersion = 1

// checkpointHeader is the JSON that follows the magic and version.
type checkpointHeader struct {
	Model     Config
	Params    int          // number of float32 parameters that follow
	Optimizer *AdamWConfig `json:",omitempty"` // present when M and V follow the parameters
	Step      int          `json:",omitempty"`
}

// SaveCheckpoint writes m's parameters and, when o is not nil, the
// optimiser's state to path atomically (temporary file, fsync, rename).
// The layout: "CMCDELTA", uint32 version, uint32 header length, the JSON
// header, then little-endian float32 Params, and M and V with an optimiser.
func SaveCheckpoint(path string, m *Model, o *AdamW) error {
	h := checkpointHeader{Model: m.Config, Params: len(m.Params)}
	if o != nil {
		h.Optimizer, h.Step = &o.Config, o.Step
	}
	header, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("save checkpoint %q: %w", path, err)
	}
	return writeAtomic(path, func(w io.Writer) error {
		var pre bytes.Buffer
		pre.WriteString(checkpointMagic)
		binary.Write(&pre, binary.LittleEndian, [2]uint32{checkpointVersion, uint32(len(header))})
		pre.Write(header)
		if _, err := w.Write(pre.Bytes()); err != nil {
			return err
		}
		tensors := [][]float32{m.Params}
		if o != nil {
			tensors = append(tensors, o.M, o.V)
		}
		for _, t := range tensors {
			if err := writeFloats(w, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadCheckpoint reads a checkpoint written by SaveCheckpoint. The
// optimiser is nil when the checkpoint has none.
func LoadCheckpoint(path string) (*Model, *AdamW, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var pre struct {
		Magic   [8]byte
		Version uint32
		Len     uint32
	}
	if err := binary.Read(r, binary.LittleEndian, &pre); err != nil {
		return nil, nil, fmt.Errorf("load checkpoint %q: header: %w", path, err)
	}
	if string(pre.Magic[:]) != checkpointMagic || pre.Version != checkpointVersion {
		return nil, nil, fmt.Errorf("load checkpoint %q: starts with %q version %d, want %q version %d", path, pre.Magic[:], pre.Version, checkpointMagic, checkpointVersion)
	}
	if pre.Len > 1<<20 {
		return nil, nil, fmt.Errorf("load checkpoint %q: header of %d bytes is implausibly long", path, pre.Len)
	}
	header := make([]byte, pre.Len)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, nil, fmt.Errorf("load checkpoint %q: header: %w", path, err)
	}
	var h checkpointHeader
	if err := json.Unmarshal(header, &h); err != nil {
		return nil, nil, fmt.Errorf("load checkpoint %q: header: %w", path, err)
	}
	m, err := newModel(h.Model)
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint %q: %w", path, err)
	}
	if h.Params != len(m.Params) {
		return nil, nil, fmt.Errorf("load checkpoint %q: %d parameters, the config %+v has %d", path, h.Params, h.Model, len(m.Params))
	}
	if err := readFloats(r, m.Params); err != nil {
		return nil, nil, fmt.Errorf("load checkpoint %q: parameters: %w", path, err)
	}
	var o *AdamW
	if h.Optimizer != nil {
		o = NewAdamW(m, *h.Optimizer)
		o.Step = h.Step
		if err := readFloats(r, o.M); err != nil {
			return nil, nil, fmt.Errorf("load checkpoint %q: optimiser first moments: %w", path, err)
		}
		if err := readFloats(r, o.V); err != nil {
			return nil, nil, fmt.Errorf("load checkpoint %q: optimiser second moments: %w", path, err)
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return nil, nil, fmt.Errorf("load checkpoint %q: trailing bytes after the last tensor", path)
	}
	return m, o, nil
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

// writeAtomic writes a file through a temporary file in the same directory,
// fsyncs it and renames it over path, so a crash leaves the old file or the
// new one, never half of one.
func writeAtomic(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	return nil
}
