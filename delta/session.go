package delta

import (
	"fmt"
	"math"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// Session is incremental inference with a key/value cache: Decode appends
// tokens and returns the logits after the last one; Trim drops the tail of
// the context so that a generation loop can re-decode from an earlier
// position. The cache grows when the context outgrows it, so positions are
// not capped. A Session only reads its model's parameters and uses its
// Pool; a Session itself is not safe for concurrent use.
type Session struct {
	m    *Model
	rope rope
	pos  int // tokens in the cache

	// keys (after RoPE) and values of every cached position, per layer:
	// [capacity, kv_dim]
	keys, values [][]float32
	capacity     int

	// activations of the chunk being decoded, [n, ·], reused while n fits
	// and by every block: x is the residual stream (xmid is the same
	// slice, updated in place), k and v point into the cache
	acts       layerActs
	scores     []float32 // [n_heads, causalBlock·capacity] attention scratch
	xn, logits []float32 // [dim], [vocab] of the last position

	// the chunk being processed, read by the per-head attention workers
	layer, n int
	attend   func(lo, hi int)
}

// NewSession returns an empty session whose cache holds maxPos positions
// before it first grows.
func (m *Model) NewSession(maxPos int) *Session {
	c := m.Config
	s := &Session{
		m:      m,
		rope:   newRope(c),
		keys:   make([][]float32, c.NLayers),
		values: make([][]float32, c.NLayers),
		xn:     make([]float32, c.Dim),
		logits: make([]float32, c.VocabSize),
	}
	s.attend = s.attention
	s.grow(max(maxPos, 1))
	return s
}

// Len is the number of tokens in the context.
func (s *Session) Len() int { return s.pos }

// Trim cuts the context back to its first pos tokens. The logits of the
// last Decode are stale afterwards; decode at least one token to get new ones.
func (s *Session) Trim(pos int) {
	if pos < 0 || pos > s.pos {
		panic(fmt.Sprintf("delta: Trim(%d) of a session of %d tokens", pos, s.pos))
	}
	s.pos = pos
}

// grow makes room for n positions, at least doubling the capacity.
func (s *Session) grow(n int) {
	if n <= s.capacity {
		return
	}
	n = max(n, 2*s.capacity)
	kv := s.m.Config.KVDim()
	for l := range s.keys {
		k, v := make([]float32, n*kv), make([]float32, n*kv)
		copy(k, s.keys[l][:s.pos*kv])
		copy(v, s.values[l][:s.pos*kv])
		s.keys[l], s.values[l] = k, v
	}
	s.scores = make([]float32, s.m.Config.NHeads*causalBlock*n)
	s.capacity = n
	s.rope.grow(n)
}

// Decode appends tokens to the context, runs them through the model (all
// at once, with matrix-matrix products) and returns the logits predicting
// the token after the last one. The slice belongs to the session and is
// overwritten by the next Decode. It panics on an empty tokens or an id
// outside the vocabulary.
func (s *Session) Decode(tokens []int32) []float32 {
	m, c := s.m, s.m.Config
	n := len(tokens)
	if n == 0 {
		panic("delta: Decode of no tokens")
	}
	s.grow(s.pos + n)
	dim, kv, hid := c.Dim, c.KVDim(), c.HiddenDim
	a := &s.acts
	a.x, a.xb, a.q, a.ao, a.xb2 = fit(a.x, n*dim), fit(a.xb, n*dim), fit(a.q, n*dim), fit(a.ao, n*dim), fit(a.xb2, n*dim)
	a.inv1, a.inv2 = fit(a.inv1, n), fit(a.inv2, n)
	a.h1, a.h3, a.hh = fit(a.h1, n*hid), fit(a.h3, n*hid), fit(a.hh, n*hid)
	a.xmid = a.x

	m.embed(a.x, tokens)
	for l := range m.W.Layers {
		w := &m.W.Layers[l]
		// the new keys and values go straight into the cache
		a.k = s.keys[l][s.pos*kv : (s.pos+n)*kv]
		a.v = s.values[l][s.pos*kv : (s.pos+n)*kv]
		m.attentionIn(w, a, n, s.pos, n, &s.rope)
		s.layer, s.n = l, n
		m.Pool.For(c.NHeads, s.attend)
		m.attentionOut(w, a, n)
		m.feedForward(w, a, a.x, n)
	}

	rmsnorm(s.xn, a.x[(n-1)*dim:], m.W.RMSFinal, c.eps())
	m.Pool.MatMulNT(s.logits, s.xn, m.W.Wcls, 1, c.VocabSize, dim, false)
	s.pos += n
	return s.logits
}

// attention runs causal attention for heads [lo, hi) of every token of the
// chunk in layer s.layer: token i sits at position s.pos+i and attends to
// the cached positions 0 … s.pos+i. Like the training pass, it works in
// blocks of query rows with matrix products on the head's strided columns,
// so a long prompt is decoded with matrix-matrix products.
func (s *Session) attention(lo, hi int) {
	var serial *kernels.Pool // already inside the pool's For
	c := s.m.Config
	dim, kv, hs := c.Dim, c.KVDim(), c.HeadSize()
	rep := c.NHeads / c.NKVHeads
	scale := float32(1 / math.Sqrt(float64(hs)))
	for h := lo; h < hi; h++ {
		kh := (h / rep) * hs
		keys, values, q, ao := s.keys[s.layer][kh:], s.values[s.layer][kh:], s.acts.q, s.acts.ao
		scores := s.scores[h*causalBlock*s.capacity : (h+1)*causalBlock*s.capacity]
		for r0 := 0; r0 < s.n; r0 += causalBlock {
			r1 := min(s.n, r0+causalBlock)
			ctx := s.pos + r1 // positions the block's last row sees
			serial.MatMulNTStrided(scores, ctx, q[r0*dim+h*hs:], dim, keys, kv, r1-r0, ctx, hs, false)
			for i := r0; i < r1; i++ {
				row := scores[(i-r0)*ctx : (i-r0+1)*ctx]
				seen := s.pos + i + 1
				kernels.Scale(scale, row[:seen])
				softmax(row[:seen])
				clear(row[seen:])
			}
			serial.MatMulNNStrided(ao[r0*dim+h*hs:], dim, scores, ctx, values, kv, r1-r0, hs, ctx, false)
		}
	}
}
