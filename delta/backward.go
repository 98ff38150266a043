package delta

import (
	"fmt"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// Backward propagates dlogits = d(loss)/d(logits) of the last Forward or
// ForwardAt (the slice it returned, overwritten in place by the loss) through the
// model and adds the gradient of every parameter to m.Grads, which start at
// zero and are cleared by AdamW.Update (or ZeroGrad), so micro-batches of
// one optimiser step sum. With a tied classifier, the embedding's gradient
// sums both of its uses.
func (m *Model) Backward(dlogits []float32) {
	st := m.train
	if st == nil {
		panic("delta: Backward without a Forward")
	}
	c := m.Config
	N, dim, p := st.B*st.T, c.Dim, m.Pool
	if len(dlogits) != len(st.logits) {
		panic(fmt.Sprintf("delta: Backward got %d dlogits for %d logits", len(dlogits), len(st.logits)))
	}

	// classifier: logits = xn·wclsᵀ, on all rows or on those of ForwardAt
	dxn := st.dtmp
	if st.rows == nil {
		p.MatMulNN(dxn, dlogits, m.W.Wcls, N, dim, c.VocabSize, false)
		p.MatMulTN(m.G.Wcls, dlogits, st.xn, c.VocabSize, dim, N, true)
	} else {
		clear(dxn)
		if R := len(st.rows); R > 0 {
			dsel := st.dao[:R*dim] // free until the attention's backward
			p.MatMulNN(dsel, dlogits, m.W.Wcls, R, dim, c.VocabSize, false)
			p.MatMulTN(m.G.Wcls, dlogits, st.xsel, c.VocabSize, dim, R, true)
			for j, r := range st.rows {
				kernels.Axpy(1, dsel[j*dim:(j+1)*dim], dxn[int(r)*dim:(int(r)+1)*dim])
			}
		}
	}

	m.backwardFromNorm(dxn)
}

// backwardFromNorm is Backward below the classifier: it propagates dxn =
// d(loss)/d(final RMSNorm output) [B·T × dim] through the model.
func (m *Model) backwardFromNorm(dxn []float32) {
	st := m.train
	c := m.Config
	N, T, dim, kv, hid, p := st.B*st.T, st.T, c.Dim, c.KVDim(), c.HiddenDim, m.Pool

	// final norm; dx is d(loss)/d(residual stream) from here on
	dx := st.dx
	clear(dx)
	rmsnormRowsBackward(p, dx, m.G.RMSFinal, dxn, st.x, m.W.RMSFinal, st.inv, dim)

	for l := len(st.layers) - 1; l >= 0; l-- {
		w, g, a := &m.W.Layers[l], &m.G.Layers[l], &st.layers[l]

		// next x = xmid + hh·w2ᵀ: the residual passes dx through unchanged
		dhh := st.dh1
		p.MatMulNN(dhh, dx, w.W2, N, hid, dim, false)
		p.MatMulTN(g.W2, dx, a.hh, dim, hid, N, true)

		// hh = silu(h1) ⊙ h3, silu(z) = z·σ(z), silu'(z) = σ(z)·(1 + z·(1−σ(z)))
		p.For(N, func(lo, hi int) {
			h1, h3 := a.h1[lo*hid:hi*hid], a.h3[lo*hid:hi*hid]
			dh1, dh3 := st.dh1[lo*hid:hi*hid], st.dh3[lo*hid:hi*hid]
			sigmoids(dh3, h1) // dh3 holds σ(h1) until overwritten below
			for i, z := range h1 {
				sg, d := dh3[i], dh1[i]
				dh3[i] = d * z * sg
				dh1[i] = d * h3[i] * sg * (1 + z*(1-sg))
			}
		})
		dxb2 := st.dtmp
		p.MatMulNN(dxb2, st.dh1, w.W1, N, dim, hid, false)
		p.MatMulNN(dxb2, st.dh3, w.W3, N, dim, hid, true)
		p.MatMulTN(g.W1, st.dh1, a.xb2, hid, dim, N, true)
		p.MatMulTN(g.W3, st.dh3, a.xb2, hid, dim, N, true)
		rmsnormRowsBackward(p, dx, g.RMSFFN, dxb2, a.xmid, w.RMSFFN, a.inv2, dim)

		// xmid = x + ao·woᵀ
		p.MatMulNN(st.dao, dx, w.Wo, N, dim, dim, false)
		p.MatMulTN(g.Wo, dx, a.ao, dim, dim, N, true)

		st.cur = a
		p.For(len(st.scratch), st.attnBwd)
		// dq and dk are gradients of the rotated vectors: rotate them back
		p.For(N, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				st.rope.rotate(st.dq[i*dim:(i+1)*dim], i%T, -1)
				st.rope.rotate(st.dk[i*kv:(i+1)*kv], i%T, -1)
			}
		})

		// q, k, v = xb·Wᵀ
		dxb := st.dtmp
		p.MatMulNN(dxb, st.dq, w.Wq, N, dim, dim, false)
		p.MatMulNN(dxb, st.dk, w.Wk, N, dim, kv, true)
		p.MatMulNN(dxb, st.dv, w.Wv, N, dim, kv, true)
		p.MatMulTN(g.Wq, st.dq, a.xb, dim, dim, N, true)
		p.MatMulTN(g.Wk, st.dk, a.xb, kv, dim, N, true)
		p.MatMulTN(g.Wv, st.dv, a.xb, kv, dim, N, true)
		rmsnormRowsBackward(p, dx, g.RMSAtt, dxb, a.x, w.RMSAtt, a.inv1, dim)
	}

	// embedding: rows of the same token accumulate, so this stays serial
	for i, id := range st.ids {
		kernels.Axpy(1, dx[i*dim:(i+1)*dim], m.G.TokenEmbedding[int(id)*dim:(int(id)+1)*dim])
	}
}

// rmsnormRowsBackward adds to dx the gradient through the RMSNorm of every
// row of x and to dgain the gain's gradient, summed over rows. Rows are
// split between threads for dx, columns for dgain, so no two threads write
// the same element.
func rmsnormRowsBackward(p *kernels.Pool, dx, dgain, dout, x, gain, inv []float32, dim int) {
	p.For(len(inv), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			rmsnormBackward(dx[i*dim:(i+1)*dim], dout[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim], gain, inv[i])
		}
	})
	p.For(dim, func(lo, hi int) {
		for i, s := range inv {
			d, xr := dout[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim]
			for j := lo; j < hi; j++ {
				dgain[j] += d[j] * xr[j] * s
			}
		}
	})
}

// attentionBackward back-propagates the attention of parts [lo, hi) of the
// (sequence, key/value head) pairs of block st.cur from st.dao into st.dq,
// st.dk, st.dv. Tasks are per key/value head because the query heads that
// share one all add into its dk and dv; each task owns its rows of dq, dk
// and dv. P is recomputed block by block from q, k and the forward pass's
// log Σ exp. With S = q·kᵀ·scale, P = softmax(S) (zero above the diagonal)
// and O = P·v:
//
//	dv = Pᵀ·dO,  dP = dO·vᵀ,  dS = P ⊙ (dP − rowsum(P ⊙ dP)),
//	dq = scale·dS·k,  dk = scale·dSᵀ·q
func (st *trainState) attentionBackward(lo, hi int) {
	var serial *kernels.Pool // already inside the pool's For
	a, T, hs, dim, kv := st.cur, st.T, st.hs, st.dim, st.kvDim
	for part := lo; part < hi; part++ {
		P := st.scratch[part][:causalBlock*T]
		dS := st.scratch[part][causalBlock*T : 2*causalBlock*T]
		first, last := st.part(part, st.B*st.nKV)
		for task := first; task < last; task++ {
			b, kvh := task/st.nKV, task%st.nKV
			k, v := a.k[b*T*kv+kvh*hs:], a.v[b*T*kv+kvh*hs:]
			dk, dv := st.dk[b*T*kv+kvh*hs:], st.dv[b*T*kv+kvh*hs:]
			for t := 0; t < T; t++ {
				clear(dk[t*kv : t*kv+hs])
				clear(dv[t*kv : t*kv+hs])
			}
			for h := kvh * st.rep; h < (kvh+1)*st.rep; h++ {
				q, dq, dout := a.q[b*T*dim+h*hs:], st.dq[b*T*dim+h*hs:], st.dao[b*T*dim+h*hs:]
				lse := a.lse[(b*st.nHeads+h)*T : (b*st.nHeads+h+1)*T]
				for r0 := 0; r0 < T; r0 += causalBlock {
					r1 := min(T, r0+causalBlock)
					serial.MatMulNTStrided(P, r1, q[r0*dim:], dim, k, kv, r1-r0, r1, hs, false)
					serial.MatMulNTStrided(dS, r1, dout[r0*dim:], dim, v, kv, r1-r0, r1, hs, false)
					for t := r0; t < r1; t++ {
						p, d := P[(t-r0)*r1:(t-r0+1)*r1], dS[(t-r0)*r1:(t-r0+1)*r1]
						kernels.Scale(st.scale, p[:t+1])
						kernels.ExpShifted(p[:t+1], lse[t])
						clear(p[t+1:])
						sum := kernels.Dot(p[:t+1], d[:t+1])
						for s, w := range p[:t+1] {
							d[s] = w * (d[s] - sum) * st.scale
						}
						clear(d[t+1:])
					}
					serial.MatMulTNStrided(dv, kv, P, r1, dout[r0*dim:], dim, r1, hs, r1-r0, true)
					serial.MatMulNNStrided(dq[r0*dim:], dim, dS, r1, k, kv, r1-r0, hs, r1, false)
					serial.MatMulTNStrided(dk, kv, dS, r1, q[r0*dim:], dim, r1, hs, r1-r0, true)
				}
			}
		}
	}
}
