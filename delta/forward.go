package delta

import (
	"fmt"
	"math"
	"slices"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// layerActs are one block's activations, kept for the backward pass.
// Rows are positions b·T+t of the batch.
type layerActs struct {
	x    []float32 // [N, dim] input of the block (residual stream)
	inv1 []float32 // [N] 1/rms of x
	xb   []float32 // [N, dim] rmsnorm(x) ⊙ rms_att
	q    []float32 // [N, dim] queries after RoPE
	k    []float32 // [N, kv_dim] keys after RoPE
	v    []float32 // [N, kv_dim]
	lse  []float32 // [B, n_heads, T] log Σ exp of each attention row's scaled scores
	ao   []float32 // [N, dim] attention output, before wo
	xmid []float32 // [N, dim] x + attention·wo
	inv2 []float32 // [N] 1/rms of xmid
	xb2  []float32 // [N, dim] rmsnorm(xmid) ⊙ rms_ffn
	h1   []float32 // [N, hidden] xb2·w1ᵀ (gate, before SiLU)
	h3   []float32 // [N, hidden] xb2·w3ᵀ (up)
	hh   []float32 // [N, hidden] silu(h1) ⊙ h3
}

// trainState holds the training pass's activations and the backward pass's
// scratch, sized by the first Forward and reused while B·T and T fit.
type trainState struct {
	B, T    int
	ids     []int32
	rope    rope
	layers  []layerActs
	x       []float32 // [N, dim] residual stream after the last block
	inv     []float32 // [N] 1/rms of x
	xn      []float32 // [N, dim] rmsnorm(x) ⊙ rms_final
	rows    []int32   // the positions ForwardAt computes logits for; nil: all
	rowsBuf []int32   // rows' storage, reused
	xsel    []float32 // [len(rows), dim] the rows of xn the classifier reads, when rows != nil
	logits  []float32 // [rows, vocab]; Backward reads d(loss)/d(logits) from here

	dx, dtmp, dao []float32 // [N, dim]
	dq            []float32 // [N, dim]
	dk, dv        []float32 // [N, kv_dim]
	dh1, dh3      []float32 // [N, hidden]
	// Attention scratch, one slice per part of the attention loops (see
	// part): [2, causalBlock, T] for a block of probabilities and
	// their gradients. The probabilities are not kept for backward but
	// recomputed from lse, as FlashAttention does: storing them would take
	// B·n_heads·T² floats per layer, gigabytes at the 2048-token contexts
	// CMC trains on.
	scratch [][]float32

	// the block being processed, read by the per-head workers below
	cur         *layerActs
	attnFwd     func(lo, hi int)
	attnBwd     func(lo, hi int)
	scale       float32
	rep, hs     int
	dim, kvDim  int
	nHeads, nKV int
}

func (m *Model) trainBuffers(B, T int) *trainState {
	c := m.Config
	st := m.train
	if st == nil {
		st = &trainState{rope: newRope(c), layers: make([]layerActs, c.NLayers)}
		st.hs, st.dim, st.kvDim = c.HeadSize(), c.Dim, c.KVDim()
		st.nHeads, st.nKV, st.rep = c.NHeads, c.NKVHeads, c.NHeads/c.NKVHeads
		st.scale = float32(1 / math.Sqrt(float64(st.hs)))
		st.attnFwd = st.attentionForward
		st.attnBwd = st.attentionBackward
		m.train = st
	}
	st.B, st.T = B, T
	N, dim, kv, hid := B*T, c.Dim, c.KVDim(), c.HiddenDim
	for l := range st.layers {
		a := &st.layers[l]
		a.x, a.inv1, a.xb = fit(a.x, N*dim), fit(a.inv1, N), fit(a.xb, N*dim)
		a.q, a.k, a.v = fit(a.q, N*dim), fit(a.k, N*kv), fit(a.v, N*kv)
		a.lse, a.ao, a.xmid = fit(a.lse, B*c.NHeads*T), fit(a.ao, N*dim), fit(a.xmid, N*dim)
		a.inv2, a.xb2 = fit(a.inv2, N), fit(a.xb2, N*dim)
		a.h1, a.h3, a.hh = fit(a.h1, N*hid), fit(a.h3, N*hid), fit(a.hh, N*hid)
	}
	st.x, st.inv, st.xn = fit(st.x, N*dim), fit(st.inv, N), fit(st.xn, N*dim)
	st.dx, st.dtmp, st.dao, st.dq = fit(st.dx, N*dim), fit(st.dtmp, N*dim), fit(st.dao, N*dim), fit(st.dq, N*dim)
	st.dk, st.dv = fit(st.dk, N*kv), fit(st.dv, N*kv)
	st.dh1, st.dh3 = fit(st.dh1, N*hid), fit(st.dh3, N*hid)
	st.scratch = slices.Grow(st.scratch[:0], m.Pool.Threads())[:m.Pool.Threads()]
	for i := range st.scratch {
		st.scratch[i] = fit(st.scratch[i], 2*causalBlock*T)
	}
	st.rope.grow(T)
	return st
}

// Forward runs the model on a batch of B sequences of T tokens each
// (ids[b·T+t]) with a causal mask and returns the logits of every position,
// [B·T × vocab], row b·T+t predicting the token after ids[b·T+t]. The slice
// belongs to the model and is overwritten by the next Forward; the caller
// writes d(loss)/d(logits) into it (see CrossEntropy) and calls Backward.
// It panics when len(ids) != B·T or an id is outside the vocabulary.
func (m *Model) Forward(ids []int32, B, T int) []float32 {
	return m.ForwardAt(ids, B, T, nil)
}

// ForwardAt is Forward computing the logits only at the given positions
// (indices b·T+t), [len(rows) × vocab] in the order of rows: the classifier
// is the largest product of a small model, and a loss on the response
// tokens alone does not need the prompt's logits. rows == nil means every
// position. Backward then takes d(loss)/d(logits) of those rows.
func (m *Model) ForwardAt(ids []int32, B, T int, rows []int32) []float32 {
	c := m.Config
	if B <= 0 || T <= 0 || len(ids) != B*T {
		panic(fmt.Sprintf("delta: Forward got %d ids for a batch of %d×%d", len(ids), B, T))
	}
	for _, r := range rows {
		if r < 0 || int(r) >= B*T {
			panic(fmt.Sprintf("delta: ForwardAt row %d outside the batch of %d×%d", r, B, T))
		}
	}
	m.ensureGrads()
	st := m.trainBuffers(B, T)
	st.ids = ids
	N, dim, p := B*T, c.Dim, m.Pool

	m.embed(st.layers[0].x, ids)
	for l := range st.layers {
		w, a := &m.W.Layers[l], &st.layers[l]
		next := st.x
		if l+1 < len(st.layers) {
			next = st.layers[l+1].x
		}
		m.attentionIn(w, a, N, 0, T, &st.rope)
		st.cur = a
		p.For(len(st.scratch), st.attnFwd)
		m.attentionOut(w, a, N)
		m.feedForward(w, a, next, N)
	}

	normRows(p, st.xn, st.inv, st.x, m.W.RMSFinal, c.eps(), dim, N)
	// the classifier, on the positions asked for
	xc, R := st.xn, N
	st.rows = nil
	if rows != nil {
		st.rows = append(st.rowsBuf[:0], rows...) // the caller may reuse rows before Backward
		st.rowsBuf = st.rows
		R = len(rows)
		st.xsel = fit(st.xsel, R*dim)
		for j, r := range rows {
			copy(st.xsel[j*dim:(j+1)*dim], st.xn[int(r)*dim:])
		}
		xc = st.xsel
	}
	st.logits = fit(st.logits, R*c.VocabSize)
	if R > 0 {
		p.MatMulNT(st.logits, xc, m.W.Wcls, R, c.VocabSize, dim, false)
	}
	return st.logits
}

// One transformer block, as llama2.c's forward reads, in the three steps
// that the training pass (Forward) and incremental decoding (Session.Decode)
// share; they differ only in the attention itself, which reads keys and
// values of the batch's own sequences in one case and of the cache in the
// other. a holds n rows (positions) of the block's activations: the
// training pass keeps one layerActs per block for the backward pass, a
// Session reuses one set for every block, with k and v pointing into its
// cache and xmid the same slice as x.

// embed copies the token embeddings of ids into x, one row each.
func (m *Model) embed(x []float32, ids []int32) {
	c := m.Config
	for i, id := range ids {
		if id < 0 || int(id) >= c.VocabSize {
			panic(fmt.Sprintf("delta: token id %d at %d outside the vocabulary of %d", id, i, c.VocabSize))
		}
		copy(x[i*c.Dim:(i+1)*c.Dim], m.W.TokenEmbedding[int(id)*c.Dim:])
	}
}

// attentionIn is the block's input to attention: xb = rmsnorm(x) ⊙ rms_att,
// q, k, v = xb·Wᵀ, and RoPE on q and k, row i at position pos0 + i%period.
func (m *Model) attentionIn(w *Layer, a *layerActs, n, pos0, period int, r *rope) {
	c, p := m.Config, m.Pool
	dim, kv := c.Dim, c.KVDim()
	normRows(p, a.xb, a.inv1, a.x, w.RMSAtt, c.eps(), dim, n)
	p.MatMulNT(a.q, a.xb, w.Wq, n, dim, dim, false)
	p.MatMulNT(a.k, a.xb, w.Wk, n, kv, dim, false)
	p.MatMulNT(a.v, a.xb, w.Wv, n, kv, dim, false)
	rotateRows(p, r, a.q, a.k, dim, kv, n, pos0, period)
}

// attentionOut adds the attention's projection to the residual stream:
// xmid = x + ao·woᵀ.
func (m *Model) attentionOut(w *Layer, a *layerActs, n int) {
	dim := m.Config.Dim
	copy(a.xmid[:n*dim], a.x) // nothing to do when xmid is x
	m.Pool.MatMulNT(a.xmid, a.ao, w.Wo, n, dim, dim, true)
}

// feedForward is the block's SwiGLU feed-forward network:
// xb2 = rmsnorm(xmid) ⊙ rms_ffn, hh = silu(xb2·w1ᵀ) ⊙ (xb2·w3ᵀ),
// next = xmid + hh·w2ᵀ. next may be xmid.
func (m *Model) feedForward(w *Layer, a *layerActs, next []float32, n int) {
	c, p := m.Config, m.Pool
	dim, hid := c.Dim, c.HiddenDim
	normRows(p, a.xb2, a.inv2, a.xmid, w.RMSFFN, c.eps(), dim, n)
	p.MatMulNT(a.h1, a.xb2, w.W1, n, hid, dim, false)
	p.MatMulNT(a.h3, a.xb2, w.W3, n, hid, dim, false)
	swigluRows(p, a.hh, a.h1, a.h3, hid, n)
	copy(next[:n*dim], a.xmid)
	p.MatMulNT(next, a.hh, w.W2, n, dim, hid, true)
}

// minParallelRows is the number of rows from which the row-wise steps
// (norms, RoPE, SwiGLU) are spread over the pool. Below it, as when
// decoding a token, they take well under a microsecond and run on the
// caller, which also keeps the closures below (and their allocation) off
// the per-token path.
const minParallelRows = 16

// normRows sets out = rmsnorm(x) ⊙ gain and inv = 1/rms for n rows.
func normRows(p *kernels.Pool, out, inv, x, gain []float32, eps float32, dim, n int) {
	if n < minParallelRows {
		for i := range n {
			inv[i] = rmsnorm(out[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim], gain, eps)
		}
		return
	}
	p.For(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			inv[i] = rmsnorm(out[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim], gain, eps)
		}
	})
}

// rotateRows applies RoPE to n rows of q ([n, dim]) and k ([n, kv]), row i
// at position pos0 + i%period.
func rotateRows(p *kernels.Pool, r *rope, q, k []float32, dim, kv, n, pos0, period int) {
	if n < minParallelRows {
		r.rotateRows(q, k, dim, kv, 0, n, pos0, period)
		return
	}
	p.For(n, func(lo, hi int) { r.rotateRows(q, k, dim, kv, lo, hi, pos0, period) })
}

// rotateRows is rotateRows' work on rows [lo, hi).
func (r *rope) rotateRows(q, k []float32, dim, kv, lo, hi, pos0, period int) {
	for i := lo; i < hi; i++ {
		r.rotate(q[i*dim:(i+1)*dim], pos0+i%period, 1)
		r.rotate(k[i*kv:(i+1)*kv], pos0+i%period, 1)
	}
}

// swigluRows sets hh = silu(h1) ⊙ h3 = h1·σ(h1) ⊙ h3 for n rows of hid.
func swigluRows(p *kernels.Pool, hh, h1, h3 []float32, hid, n int) {
	if n < minParallelRows {
		swiglu(hh, h1, h3)
		return
	}
	p.For(n, func(lo, hi int) { swiglu(hh[lo*hid:hi*hid], h1[lo*hid:hi*hid], h3[lo*hid:hi*hid]) })
}

// swiglu sets hh = silu(h1) ⊙ h3 elementwise.
func swiglu(hh, h1, h3 []float32) {
	sigmoids(hh, h1)
	for i, g := range h1 {
		hh[i] *= g * h3[i]
	}
}

// attentionForward computes causal softmax attention for parts [lo, hi) of
// the (sequence, head) pairs of block st.cur with matrix products on the
// head's strided columns: S = q·kᵀ/√head_size, P = softmax of S over
// positions ≤ t, ao = P·v, keeping log Σ exp S per row for the backward
// pass. Query head h reads key/value head h / (n_heads/n_kv_heads). Rows
// go in blocks, each block's products stopping at its last row's position,
// so that most of the masked upper triangle is never computed.
func (st *trainState) attentionForward(lo, hi int) {
	var serial *kernels.Pool // already inside the pool's For
	a, T, hs, dim, kv := st.cur, st.T, st.hs, st.dim, st.kvDim
	for part := lo; part < hi; part++ {
		P := st.scratch[part][:causalBlock*T]
		first, last := st.part(part, st.B*st.nHeads)
		for task := first; task < last; task++ {
			b, h := task/st.nHeads, task%st.nHeads
			q := a.q[b*T*dim+h*hs:]
			k := a.k[b*T*kv+(h/st.rep)*hs:]
			v := a.v[b*T*kv+(h/st.rep)*hs:]
			lse := a.lse[task*T : (task+1)*T]
			for r0 := 0; r0 < T; r0 += causalBlock {
				r1 := min(T, r0+causalBlock)
				serial.MatMulNTStrided(P, r1, q[r0*dim:], dim, k, kv, r1-r0, r1, hs, false)
				for t := r0; t < r1; t++ {
					row := P[(t-r0)*r1 : (t-r0+1)*r1]
					kernels.Scale(st.scale, row[:t+1])
					m := maxOf(row[:t+1])
					sum := kernels.ExpShifted(row[:t+1], m)
					kernels.Scale(1/sum, row[:t+1])
					clear(row[t+1:])
					lse[t] = m + float32(math.Log(float64(sum)))
				}
				serial.MatMulNNStrided(a.ao[(b*T+r0)*dim+h*hs:], dim, P, r1, v, kv, r1-r0, hs, r1, false)
			}
		}
	}
}

// part returns the tasks [first, last) of part i when n tasks are split
// into len(st.scratch) parts, one per thread, each with its own scratch.
func (st *trainState) part(i, n int) (first, last int) {
	parts := len(st.scratch)
	return i * n / parts, (i + 1) * n / parts
}

// causalBlock is the number of query rows whose attention products are
// computed together: row t only needs key positions ≤ t, so each block
// stops at its last row's position.
const causalBlock = 64
