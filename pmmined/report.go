package pmmined

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cmc-dev/cmc/internal/atomicfile"
	"github.com/cmc-dev/cmc/vocab"
)

// Stats counts a map's user tokens by kind.
type Stats struct {
	Total  int
	counts [kindCount]int
}

// Stats summarises m.
func (m *Map) Stats() Stats {
	s := Stats{Total: len(m.Kind)}
	for _, k := range m.Kind {
		s.counts[k]++
	}
	return s
}

// Count returns the number of user tokens of kind k.
func (s Stats) Count(k Kind) int {
	if k >= kindCount {
		return 0
	}
	return s.counts[k]
}

// Percent returns the share of user tokens of kind k, in percent.
func (s Stats) Percent(k Kind) float64 {
	if s.Total == 0 {
		return 0
	}
	return 100 * float64(s.Count(k)) / float64(s.Total)
}

// summaryOrder lists the kinds from the most to the least faithful mapping.
func summaryOrder() []Kind {
	return []Kind{KindSpecial, KindByte, KindLeadByte, KindExact, KindPrefix, KindEdit, KindNone}
}

// String gives the counts on one line, for logs.
func (s Stats) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d tokens:", s.Total)
	for _, k := range summaryOrder() {
		if n := s.Count(k); n > 0 {
			fmt.Fprintf(&sb, " %s %d (%.1f%%)", k, n, s.Percent(k))
		}
	}
	return sb.String()
}

// WriteSummary prints the counts of m by kind and up to examples mappings
// of each kind, spread over the user vocabulary, pieces shown as quoted text.
func WriteSummary(w io.Writer, m *Map, user, delta *vocab.Vocab, examples int) error {
	bw := bufio.NewWriter(w)
	s := m.Stats()
	fmt.Fprintf(bw, "token map (%s): %d user tokens onto %d delta tokens\n", m.Strategy, len(m.ToDelta), m.DeltaSize)
	fmt.Fprintf(bw, "%-10s %8s %8s\n", "kind", "count", "%")
	for _, k := range summaryOrder() {
		fmt.Fprintf(bw, "%-10s %8d %8.2f\n", k, s.Count(k), s.Percent(k))
	}
	if n := s.Count(KindPrefix); n > 0 {
		// The paper reports prefix matches onto shorter tokens on their own.
		shorter := 0
		for u, k := range m.Kind {
			if k == KindPrefix && len(user.Text(int32(u))) > len(delta.Text(m.ToDelta[u])) {
				shorter++
			}
		}
		fmt.Fprintf(bw, "prefix onto a shorter token: %d (%.2f%%), onto a longer one: %d (%.2f%%)\n",
			shorter, 100*float64(shorter)/float64(s.Total), n-shorter, 100*float64(n-shorter)/float64(s.Total))
	}
	if examples > 0 {
		fmt.Fprintf(bw, "examples (user id piece -> delta id piece):\n")
	}
	for _, k := range summaryOrder() {
		var ids []int32
		for u, uk := range m.Kind {
			if uk == k {
				ids = append(ids, int32(u))
			}
		}
		shown := min(examples, len(ids))
		for i := range shown {
			u := ids[i*len(ids)/shown]
			fmt.Fprintf(bw, "  %-10s %7d %-24s -> %7d %s\n", k, u, user.Display(u), m.ToDelta[u], delta.Display(m.ToDelta[u]))
		}
	}
	return bw.Flush()
}

// WriteTSV writes m as tab-separated values: a header "user_id delta_id
// kind", then one row per user token in id order, delta_id -1 when unmapped.
func WriteTSV(w io.Writer, m *Map) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("user_id\tdelta_id\tkind\n")
	var line []byte
	for u, d := range m.ToDelta {
		line = strconv.AppendInt(line[:0], int64(u), 10)
		line = append(line, '\t')
		line = strconv.AppendInt(line, int64(d), 10)
		line = append(line, '\t')
		line = append(line, m.Kind[u].String()...)
		line = append(line, '\n')
		bw.Write(line)
	}
	return bw.Flush()
}

// WriteTSVFile writes m with WriteTSV to path atomically.
func WriteTSVFile(path string, m *Map) error {
	return atomicfile.WriteFunc(path, func(f io.Writer) error { return WriteTSV(f, m) })
}
