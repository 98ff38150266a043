package delta

import (
	"fmt"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// TrainRows is a training pass (ForwardAt, the loss, Backward) for a loss
// that reads the logits at rows only (indices b·T+t, as ForwardAt takes
// them), with the classifier computed one chunk of rows at a time: only a
// chunk's logits are ever alive, where ForwardAt holds rows × vocab,
// gigabytes for long responses and a 128k vocabulary. The chunks are
// rows[0:ends[0]], rows[ends[0]:ends[1]], ...; the last end is len(rows).
//
// For each chunk, rows[lo:hi], loss(lo, hi, logits) receives the chunk's
// logits ([hi−lo × vocab], a buffer reused for the next chunk) and must
// overwrite them with d(loss)/d(logits), as BiasedCrossEntropySum does.
// The gradients of every parameter are then added to m.Grads, as Backward
// adds them. An error from loss stops the pass and is returned; m.Grads
// then hold part of it, and the caller must drop the step.
func (m *Model) TrainRows(ids []int32, B, T int, rows []int32, ends []int, loss func(lo, hi int, logits []float32) error) error {
	for _, r := range rows {
		if r < 0 || int(r) >= B*T {
			panic(fmt.Sprintf("delta: TrainRows row %d outside the batch of %d×%d", r, B, T))
		}
	}
	widest, lo := 0, 0
	for _, hi := range ends {
		if hi <= lo || hi > len(rows) {
			panic(fmt.Sprintf("delta: TrainRows chunk ends %v do not cut %d rows", ends, len(rows)))
		}
		widest, lo = max(widest, hi-lo), hi
	}
	if lo != len(rows) {
		panic(fmt.Sprintf("delta: TrainRows chunk ends %v do not cut %d rows", ends, len(rows)))
	}
	// The transformer and the final norm, without the classifier.
	m.ForwardAt(ids, B, T, []int32{})
	st, c, p := m.train, m.Config, m.Pool
	dim, vocab := c.Dim, c.VocabSize
	st.xsel = fit(st.xsel, widest*dim)
	st.logits = fit(st.logits, widest*vocab)
	dsel := st.dao[:widest*dim] // free until the attention's backward
	dxn := st.dtmp
	clear(dxn)
	lo = 0
	for _, hi := range ends {
		k := hi - lo
		xs, logits, ds := st.xsel[:k*dim], st.logits[:k*vocab], dsel[:k*dim]
		for j, r := range rows[lo:hi] {
			copy(xs[j*dim:(j+1)*dim], st.xn[int(r)*dim:])
		}
		p.MatMulNT(logits, xs, m.W.Wcls, k, vocab, dim, false)
		if err := loss(lo, hi, logits); err != nil {
			return err
		}
		// classifier backward of the chunk: logits = xs·wclsᵀ
		p.MatMulNN(ds, logits, m.W.Wcls, k, dim, vocab, false)
		p.MatMulTN(m.G.Wcls, logits, xs, vocab, dim, k, true)
		for j, r := range rows[lo:hi] {
			kernels.Axpy(1, ds[j*dim:(j+1)*dim], dxn[int(r)*dim:(int(r)+1)*dim])
		}
		lo = hi
	}
	m.backwardFromNorm(dxn)
	return nil
}
