package gguf

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/cmc-dev/cmc/vocab"
)

// Summary describes a file for people (WriteText, behind `cmc inspect`)
// and for machines (its JSON encoding). Long values are abbreviated.
type Summary struct {
	Path         string          `json:"path,omitempty"`
	Version      uint32          `json:"version"`
	Architecture string          `json:"architecture"`
	Alignment    uint64          `json:"alignment"`
	DataOffset   int64           `json:"data_offset"`
	Params       *LlamaParams    `json:"params,omitempty"`
	ParamsError  string          `json:"params_error,omitempty"`
	Vocab        *VocabSummary   `json:"vocab,omitempty"`
	VocabError   string          `json:"vocab_error,omitempty"`
	Metadata     []KeySummary    `json:"metadata"`
	Tensors      []TensorSummary `json:"tensors"`
	TensorBytes  uint64          `json:"tensor_bytes"` // total of the tensors' data
}

// VocabSummary is the gist of a Vocab.
type VocabSummary struct {
	Model       string         `json:"model"`
	Pre         string         `json:"pre,omitempty"`
	Size        int            `json:"size"`
	Merges      int            `json:"merges"`
	HasScores   bool           `json:"has_scores"`
	TypeCounts  map[string]int `json:"type_counts,omitempty"` // "normal", "control", "byte", ...
	Special     []SpecialToken `json:"special"`
	AddBOS      bool           `json:"add_bos"`
	AddEOS      bool           `json:"add_eos"`
	FirstPieces []string       `json:"first_pieces"`
}

// SpecialToken is a special token id with its role and piece.
type SpecialToken struct {
	Role  string `json:"role"` // "BOS", "EOS", "UNK", "PAD"
	ID    int32  `json:"id"`
	Piece string `json:"piece"`
}

// KeySummary is one metadata entry, its value rendered as text.
type KeySummary struct {
	Key   string `json:"key"`
	Type  string `json:"type"` // "uint32", "string", "array of string", ...
	Len   int    `json:"len,omitempty"`
	Value string `json:"value"` // arrays and long strings abbreviated
}

// TensorSummary is one tensor's description.
type TensorSummary struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Shape  []uint64 `json:"shape"`
	Bytes  uint64   `json:"bytes"`
	Offset uint64   `json:"offset"`
}

// summaryLimit is how many array elements (and ten times as many
// characters of a string) a summary shows.
const summaryLimit = 8

// Summary describes the file. Problems with the vocabulary or the
// hyper-parameters are reported in VocabError and ParamsError rather than
// failing, so that a broken file can still be inspected.
func (f *File) Summary() Summary {
	s := Summary{
		Path:         f.path,
		Version:      f.Version,
		Architecture: f.Architecture(),
		Alignment:    f.Alignment,
		DataOffset:   f.DataOffset,
		Metadata:     make([]KeySummary, 0, len(f.KV)),
		Tensors:      make([]TensorSummary, 0, len(f.Tensors)),
	}
	if p, err := f.LlamaParams(); err != nil {
		s.ParamsError = err.Error()
	} else {
		s.Params = &p
	}
	if _, ok := f.Lookup(KeyTokens); ok {
		if v, err := f.Vocab(); err != nil {
			s.VocabError = err.Error()
		} else {
			s.Vocab = summarizeVocab(v)
		}
	}
	for _, kv := range f.KV {
		s.Metadata = append(s.Metadata, KeySummary{
			Key:   kv.Key,
			Type:  kv.Value.typeName(),
			Len:   kv.Value.Len(),
			Value: kv.Value.Describe(summaryLimit),
		})
	}
	for _, t := range f.Tensors {
		s.Tensors = append(s.Tensors, TensorSummary{
			Name: t.Name, Type: t.Type.String(), Shape: t.Shape, Bytes: t.Bytes(), Offset: t.Offset,
		})
		s.TensorBytes += t.Bytes()
	}
	return s
}

func summarizeVocab(v *vocab.Vocab) *VocabSummary {
	s := &VocabSummary{
		Model: v.Model, Pre: v.Pre, Size: len(v.Pieces), Merges: len(v.Merges),
		HasScores: v.Scores != nil, AddBOS: v.AddBOS, AddEOS: v.AddEOS,
		FirstPieces: v.Pieces[:min(len(v.Pieces), summaryLimit)],
		Special:     []SpecialToken{},
	}
	if v.Types != nil {
		s.TypeCounts = map[string]int{}
		for _, t := range v.Types {
			s.TypeCounts[t.String()]++
		}
	}
	for _, sp := range []struct {
		role string
		id   int32
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"UNK", v.UNK}, {"PAD", v.PAD}} {
		if sp.id >= 0 {
			s.Special = append(s.Special, SpecialToken{Role: sp.role, ID: sp.id, Piece: v.Pieces[sp.id]})
		}
	}
	return s
}

// Describe renders v as text: strings quoted, arrays as [a, b, …] showing
// at most limit elements, strings cut after 10*limit characters. limit <= 0
// shows everything.
func (v Value) Describe(limit int) string {
	var b strings.Builder
	v.describe(&b, limit)
	return b.String()
}

func (v Value) describe(b *strings.Builder, limit int) {
	switch v.Type {
	case ValueString:
		s := v.str
		if n := utf8.RuneCountInString(s); limit > 0 && n > 10*limit {
			var cut, runes int
			for cut = range s {
				if runes == 10*limit {
					break
				}
				runes++
			}
			b.WriteString(strconv.Quote(s[:cut]))
			fmt.Fprintf(b, "…(%d characters)", n)
			return
		}
		b.WriteString(strconv.Quote(s))
	case ValueBool:
		b.WriteString(strconv.FormatBool(v.bits != 0))
	case ValueFloat32:
		b.WriteString(strconv.FormatFloat(float64(math.Float32frombits(uint32(v.bits))), 'g', -1, 32))
	case ValueFloat64:
		b.WriteString(strconv.FormatFloat(math.Float64frombits(v.bits), 'g', -1, 64))
	case ValueArray:
		n := v.Len()
		b.WriteByte('[')
		for i := range n {
			if limit > 0 && i == limit {
				fmt.Fprintf(b, ", … %d more", n-limit)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			v.Index(i).describe(b, limit)
		}
		b.WriteByte(']')
	default:
		if v.Type.isSigned() {
			b.WriteString(strconv.FormatInt(int64(v.bits), 10))
		} else {
			b.WriteString(strconv.FormatUint(v.bits, 10))
		}
	}
}

// tokenizerArrays are the keys that the vocabulary section of WriteText
// already summarises.
var tokenizerArrays = map[string]bool{KeyTokens: true, KeyScores: true, KeyTokenTypes: true, KeyMerges: true}

// WriteText renders the summary as aligned plain text. Unless allKeys is
// set, the metadata table leaves out the tokenizer arrays that the
// vocabulary section already describes.
func (s Summary) WriteText(w io.Writer, allKeys bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	if s.Path != "" {
		p("file\t%s\n", s.Path)
	}
	p("format\tGGUF v%d, alignment %d, tensor data at offset %d\n", s.Version, s.Alignment, s.DataOffset)
	p("architecture\t%s\n", orDash(s.Architecture))

	p("\nhyper-parameters\n")
	if s.Params == nil {
		p("  (none: %s)\n", s.ParamsError)
	} else {
		hp := s.Params
		p("  context length\t%d\n", hp.ContextLength)
		p("  embedding length\t%d\n", hp.EmbeddingLength)
		p("  blocks\t%d\n", hp.BlockCount)
		p("  feed-forward length\t%d\n", hp.FeedForwardLength)
		p("  heads / KV heads\t%d / %d (head dim %d)\n", hp.HeadCount, hp.HeadCountKV, hp.HeadDim())
		p("  rope dimensions\t%d, freq base %g\n", hp.RopeDimensionCount, hp.RopeFreqBase)
		// The file stores it as float32: print the number that was written.
		p("  rms norm eps\t%s\n", strconv.FormatFloat(hp.RMSNormEps, 'g', -1, 32))
		p("  vocab size\t%d\n", hp.VocabSize)
	}

	p("\nvocabulary\n")
	switch v := s.Vocab; {
	case v != nil:
		p("  model\t%s (pre-tokenizer %s)\n", v.Model, orDash(v.Pre))
		scores := ""
		if v.HasScores {
			scores = " with scores"
		}
		p("  size\t%d tokens%s, %d merges\n", v.Size, scores, v.Merges)
		if len(v.TypeCounts) > 0 {
			p("  token types\t%s\n", describeCounts(v.TypeCounts))
		}
		for _, sp := range v.Special {
			p("  %s\t%d %q\n", sp.Role, sp.ID, sp.Piece)
		}
		p("  add BOS / EOS\t%v / %v\n", v.AddBOS, v.AddEOS)
		quoted := make([]string, len(v.FirstPieces))
		for i, piece := range v.FirstPieces {
			quoted[i] = strconv.Quote(piece)
		}
		p("  first pieces\t%s\n", strings.Join(quoted, " "))
	case s.VocabError != "":
		p("  (unreadable: %s)\n", s.VocabError)
	default:
		p("  (none)\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	hidden := 0
	p("\nmetadata (%d keys)\n", len(s.Metadata))
	p("  KEY\tTYPE\tVALUE\n")
	for _, k := range s.Metadata {
		if !allKeys && tokenizerArrays[k.Key] {
			hidden++
			continue
		}
		typ := k.Type
		if strings.HasPrefix(typ, "array") {
			typ = fmt.Sprintf("%s[%d]", strings.TrimPrefix(typ, "array of "), k.Len)
		}
		p("  %s\t%s\t%s\n", k.Key, typ, k.Value)
	}
	if hidden > 0 {
		p("  (%d tokenizer arrays summarised under vocabulary; --all-keys lists them)\n", hidden)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	p("\ntensors (%d, %s)\n", len(s.Tensors), humanBytes(s.TensorBytes))
	if len(s.Tensors) > 0 {
		p("  NAME\tTYPE\tSHAPE\tBYTES\n")
	}
	for _, t := range s.Tensors {
		dims := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			dims[i] = strconv.FormatUint(d, 10)
		}
		p("  %s\t%s\t%s\t%d\n", t.Name, t.Type, strings.Join(dims, " x "), t.Bytes)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describeCounts renders counts as "normal 31739, byte 256, ..." in a
// fixed order: the known token types first, then any others.
func describeCounts(counts map[string]int) string {
	var parts []string
	seen := map[string]bool{}
	for t := vocab.TokenNormal; t <= vocab.TokenByte; t++ {
		name := t.String()
		if n, ok := counts[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
			seen[name] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		if !seen[name] {
			parts = append(parts, fmt.Sprintf("%s %d", name, counts[name]))
		}
	}
	return strings.Join(parts, ", ")
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
