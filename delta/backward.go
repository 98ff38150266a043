package delta

import (
	"fmt"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// Backward propagates dlogits = d(loss)/d(logits) of the last Forward (the
// slice Forward returned, overwritten in place by the loss) through the
// model and adds the gradient of every parameter to m.Grads; call ZeroGrad
// before the first micro-batch of an optimiser step. With a tied
// classifier, the embedding's gradient sums both of its uses.
func (m *Model) Backward(dlogits []float32) {
	st := m.train
	if st == nil {
		panic("delta: Backward without a Forward")
	}
	c := m.Config
	N, T, dim, kv, hid, p := st.B*st.T, st.T, c.Dim, c.KVDim(), c.HiddenDim, m.Pool
	if len(dlogits) != N*c.VocabSize {
		panic(fmt.Sprintf("delta: Backward got %d dlogits for %d positions of %d", len(dlogits), N, c.VocabSize))
	}

	// classifier: logits = xn·wclsᵀ
	dxn := st.dtmp
	p.MatMulNN(dxn, dlogits, m.W.Wcls, N, dim, c.VocabSize, false)
	p.MatMulTN(m.G.Wcls, dlogits, st.xn, c.VocabSize, dim, N, true)

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
			for i := lo * hid; i < hi*hid; i++ {
				z, up, d := a.h1[i], a.h3[i], dhh[i]
				sg := sigmoid(z)
				st.dh3[i] = d * z * sg
				st.dh1[i] = d * up * sg * (1 + z*(1-sg))
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
		p.For(st.B*c.NKVHeads, st.attnBwd)
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

// attentionBackward back-propagates the attention of the (sequence, key/value
// head) pairs [lo, hi) of block st.cur from st.dao into st.dq, st.dk, st.dv.
// Tasks are per key/value head because the query heads that share one all
// add into its dk and dv; each task owns its rows of dq, dk and dv.
//
// With P = softmax(S), S = q·kᵀ·scale and O = P·v:
//
//	dv_s += P_ts·dO_t,  dP_ts = dO_t·v_s,  dS_ts = P_ts·(dP_ts − Σ_s' P_ts'·dP_ts')
//	dq_t += scale·dS_ts·k_s,  dk_s += scale·dS_ts·q_t
func (st *trainState) attentionBackward(lo, hi int) {
	a, T, hs, dim, kv := st.cur, st.T, st.hs, st.dim, st.kvDim
	for task := lo; task < hi; task++ {
		b, kvh := task/st.nKV, task%st.nKV
		kh := kvh * hs
		dp := st.dp[task*T : (task+1)*T]
		for t := 0; t < T; t++ {
			r := (b*T + t) * kv
			clear(st.dk[r+kh : r+kh+hs])
			clear(st.dv[r+kh : r+kh+hs])
		}
		for h := kvh * st.rep; h < (kvh+1)*st.rep; h++ {
			for t := 0; t < T; t++ {
				row := b*T + t
				qh := row*dim + h*hs
				q, dq, dout := a.q[qh:qh+hs], st.dq[qh:qh+hs], st.dao[qh:qh+hs]
				att := a.att[((b*st.nHeads+h)*T+t)*T : ((b*st.nHeads+h)*T+t)*T+t+1]
				var sum float32
				for s, w := range att {
					r := (b*T+s)*kv + kh
					dp[s] = kernels.Dot(dout, a.v[r:r+hs])
					kernels.Axpy(w, dout, st.dv[r:r+hs])
					sum += w * dp[s]
				}
				clear(dq)
				for s, w := range att {
					r := (b*T+s)*kv + kh
					ds := w * (dp[s] - sum) * st.scale
					kernels.Axpy(ds, a.k[r:r+hs], dq)
					kernels.Axpy(ds, q, st.dk[r:r+hs])
				}
			}
		}
	}
}
