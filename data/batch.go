package data

import (
	"fmt"
	"math/rand/v2"
)

// Order is the order in which training visits n sequences in an epoch: a
// permutation of 0..n-1 that depends only on (n, seed, epoch), so that a
// resumed run sees exactly the batches the interrupted one would have.
//
// The shuffle is written out here (Fisher-Yates over a PCG stream) rather
// than taken from rand.Perm, whose algorithm the Go release may change; the
// PCG generator's output is fixed by its specification.
func Order(n int, seed uint64, epoch int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	rng := rand.NewPCG(seed, uint64(epoch))
	for i := n - 1; i > 0; i-- {
		// The modulo bias is below n/2^64: irrelevant for any data set.
		j := int(rng.Uint64() % uint64(i+1))
		order[i], order[j] = order[j], order[i]
	}
	return order
}

// Batch is rows of a fixed width, one sequence per row, left-aligned and
// padded; all slices are row-major with row r at [r*Width, (r+1)*Width).
// Sequences are not packed several to a row: without a per-document
// attention mask they would attend to each other.
type Batch struct {
	Rows, Width int
	Tokens      []int32 // padding holds the pad token
	Labels      []int32 // NoToken at padding and wherever Sequence has none
	// Lens is the number of real tokens in each row, 0 for the filler rows
	// of a last, short batch. Positions past Lens[r] can be skipped: under
	// causal attention they do not change the earlier ones.
	Lens    []int
	Sources []string // "" for filler rows
}

// MakeBatch lays out the sequences seqs[idx[0]], seqs[idx[1]], ... as a
// rows x width batch. idx may be shorter than rows (the end of an epoch);
// the remaining rows are all padding. A sequence longer than width is an
// error: Encode's maxLen should not exceed the batch width.
func MakeBatch(seqs []Sequence, idx []int, rows, width int, pad int32) (Batch, error) {
	if len(idx) > rows {
		return Batch{}, fmt.Errorf("make batch: %d sequences for %d rows", len(idx), rows)
	}
	b := Batch{
		Rows:    rows,
		Width:   width,
		Tokens:  make([]int32, rows*width),
		Labels:  make([]int32, rows*width),
		Lens:    make([]int, rows),
		Sources: make([]string, rows),
	}
	for i := range b.Tokens {
		b.Tokens[i] = pad
		b.Labels[i] = NoToken
	}
	for r, k := range idx {
		seq := seqs[k]
		if len(seq.Tokens) > width {
			return Batch{}, fmt.Errorf("make batch: %s has %d tokens, more than the batch width %d",
				seq.Source, len(seq.Tokens), width)
		}
		copy(b.Tokens[r*width:], seq.Tokens)
		copy(b.Labels[r*width:], seq.Labels)
		b.Lens[r] = len(seq.Tokens)
		b.Sources[r] = seq.Source
	}
	return b, nil
}
