package delta

import (
	"fmt"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// TrainRows is a training pass (ForwardAt, the loss, Backward) for a loss
// that reads the logits at rows only (indices b·T+t, as ForwardAt takes
// them), with the classifier computed in chunks of at most chunk rows: only
// chunk × vocab logits are ever alive, where ForwardAt holds rows × vocab,
// gigabytes for long responses and a 128k vocabulary.
//
// For each chunk, rows[lo:hi], loss(lo, hi, logits) receives the chunk's
// logits ([hi−lo × vocab], a buffer reused for the next chunk) and must
// overwrite them with d(loss)/d(logits), as BiasedCrossEntropySum does. The
// gradients of every parameter are added to m.Grads, as Backward adds them.
func (m *Model) TrainRows(ids []int32, B, T int, rows []int32, chunk int, loss func(lo, hi int, logits []float32)) {
	if chunk < 1 {
		panic(fmt.Sprintf("delta: TrainRows in chunks of %d rows", chunk))
	}
	for _, r := range rows {
		if r < 0 || int(r) >= B*T {
			panic(fmt.Sprintf("delta: TrainRows row %d outside the batch of %d×%d", r, B, T))
		}
	}
	// The transformer and the final norm, without the classifier.
	m.ForwardAt(ids, B, T, []int32{})
	st, c, p := m.train, m.Config, m.Pool
	dim, vocab := c.Dim, c.VocabSize
	n := min(chunk, len(rows))
	st.xsel = fit(st.xsel, n*dim)
	st.logits = fit(st.logits, n*vocab)
	dsel := st.dao[:n*dim] // free until the attention's backward
	dxn := st.dtmp
	clear(dxn)
	for lo := 0; lo < len(rows); lo += chunk {
		hi := min(lo+chunk, len(rows))
		k := hi - lo
		xs, logits, ds := st.xsel[:k*dim], st.logits[:k*vocab], dsel[:k*dim]
		for j, r := range rows[lo:hi] {
			copy(xs[j*dim:(j+1)*dim], st.xn[int(r)*dim:])
		}
		p.MatMulNT(logits, xs, m.W.Wcls, k, vocab, dim, false)
		loss(lo, hi, logits)
		// classifier backward of the chunk: logits = xs·wclsᵀ
		p.MatMulNN(ds, logits, m.W.Wcls, k, dim, vocab, false)
		p.MatMulTN(m.G.Wcls, logits, xs, vocab, dim, k, true)
		for j, r := range rows[lo:hi] {
			kernels.Axpy(1, ds[j*dim:(j+1)*dim], dxn[int(r)*dim:(int(r)+1)*dim])
		}
	}
	m.backwardFromNorm(dxn)
}
