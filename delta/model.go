// Package delta is a small Llama-architecture language model written in Go:
// the "delta" of Cross-model Control, whose raw logits are added to a frozen
// LLM's log-probabilities and which is the only model trained.
//
// The architecture is llama2.c's: token embedding, then per layer
// RMSNorm → multi-head attention with rotary position embeddings (RoPE on
// adjacent pairs) and grouped key/value heads → residual add → RMSNorm →
// SwiGLU feed-forward → residual add, then a final RMSNorm and the
// classifier (tied to the embedding or separate). There are no biases.
//
// All parameters live in one flat []float32 (Model.Params) and the gradients
// in a parallel one (Model.Grads), so the optimiser, clipping, checkpointing
// and export are plain loops; Model.W and Model.G are named views into them
// that the forward and backward passes read like the paper.
//
// Training, one optimiser step of k micro-batches:
//
//	for each micro-batch {
//		logits := m.Forward(ids, B, T) // [B·T × vocab]
//		loss := CrossEntropy(m.Pool, logits, targets, vocab)
//		// (or any loss: write d(loss)/d(logits) into logits)
//		m.Backward(logits) // adds into m.Grads
//	}
//	opt.Update(m, 1/float32(k)) // AdamW; clears m.Grads
//
// Inference: s := m.NewSession(n); logits := s.Decode(tokens); s.Trim(pos).
package delta

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cmc-dev/cmc/delta/kernels"
)

// Config holds a model's shape and the constants of its numerics.
type Config struct {
	Dim              int     // width of the residual stream (d_model)
	HiddenDim        int     // inner width of the SwiGLU feed-forward
	NLayers          int     // transformer blocks
	NHeads           int     // query heads
	NKVHeads         int     // key/value heads; NHeads is a multiple (grouped-query attention)
	VocabSize        int     // rows of the embedding and of the classifier
	SeqLen           int     // context the model was trained with; positions beyond it still work
	SharedClassifier bool    // the classifier wcls is the token embedding (tied)
	RopeTheta        float64 // RoPE base; 0 means 10000
	NormEps          float64 // RMSNorm epsilon; 0 means 1e-5
}

// HeadSize is the width of one attention head.
func (c Config) HeadSize() int { return c.Dim / c.NHeads }

// KVDim is the width of the keys (and values) of all key/value heads together.
func (c Config) KVDim() int { return c.NKVHeads * c.HeadSize() }

func (c Config) theta() float64 {
	if c.RopeTheta == 0 {
		return 10000
	}
	return c.RopeTheta
}

func (c Config) eps() float32 {
	if c.NormEps == 0 {
		return 1e-5
	}
	return float32(c.NormEps)
}

// The largest shapes Validate accepts. Far beyond any delta model, they
// keep every parameter count below 2^50, so that the sizes computed from a
// header (ParamCount, a file's expected length) cannot overflow before they
// are compared with the file.
const (
	maxDim       = 1 << 16
	maxHiddenDim = 1 << 18
	maxLayers    = 1 << 10
	maxVocab     = 1 << 22
	maxSeqLen    = 1 << 24
)

// Validate reports the first inconsistency in c.
func (c Config) Validate() error {
	switch {
	case c.Dim <= 0 || c.HiddenDim <= 0 || c.NLayers <= 0 || c.NHeads <= 0 || c.NKVHeads <= 0 || c.VocabSize <= 0:
		return fmt.Errorf("model config %+v: every size must be positive", c)
	case c.Dim > maxDim:
		return fmt.Errorf("model config: dim %d, want at most %d", c.Dim, maxDim)
	case c.HiddenDim > maxHiddenDim:
		return fmt.Errorf("model config: hidden_dim %d, want at most %d", c.HiddenDim, maxHiddenDim)
	case c.NLayers > maxLayers:
		return fmt.Errorf("model config: n_layers %d, want at most %d", c.NLayers, maxLayers)
	case c.VocabSize > maxVocab:
		return fmt.Errorf("model config: vocab_size %d, want at most %d", c.VocabSize, maxVocab)
	case c.SeqLen < 0 || c.SeqLen > maxSeqLen:
		return fmt.Errorf("model config: seq_len %d, want 0 to %d", c.SeqLen, maxSeqLen)
	case c.Dim%c.NHeads != 0:
		return fmt.Errorf("model config: dim %d is not a multiple of n_heads %d", c.Dim, c.NHeads)
	case c.NHeads%c.NKVHeads != 0:
		return fmt.Errorf("model config: n_heads %d is not a multiple of n_kv_heads %d", c.NHeads, c.NKVHeads)
	case c.HeadSize()%2 != 0:
		return fmt.Errorf("model config: head size %d is odd; RoPE rotates pairs", c.HeadSize())
	case math.IsNaN(c.RopeTheta) || math.IsInf(c.RopeTheta, 0) || c.RopeTheta < 0:
		return fmt.Errorf("model config: rope theta %g, want a finite positive number (0 for the default)", c.RopeTheta)
	case math.IsNaN(c.NormEps) || math.IsInf(c.NormEps, 0) || c.NormEps < 0:
		return fmt.Errorf("model config: RMSNorm epsilon %g, want a finite positive number (0 for the default)", c.NormEps)
	}
	return nil
}

// ParamCount is the number of parameters of a model of shape c, which must
// be valid. Loaders compare it with the file before allocating anything.
func (c Config) ParamCount() int64 {
	dim, hidden, kv, vocab := int64(c.Dim), int64(c.HiddenDim), int64(c.KVDim()), int64(c.VocabSize)
	perLayer := 2*dim + 2*dim*dim + 2*kv*dim + 3*hidden*dim
	n := vocab*dim + int64(c.NLayers)*perLayer + dim
	if !c.SharedClassifier {
		n += vocab * dim
	}
	return n
}

// checkFinite reports the first NaN or infinity among m's parameters,
// naming the tensor (by name(t), the file format's name) and the element:
// such a model can only produce NaN logits.
func (m *Model) checkFinite(name func(Tensor) string) error {
	for _, t := range m.Tensors {
		for i, x := range m.TensorData(t) {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("tensor %s holds %g at element %d, want finite weights", name(t), x, i)
			}
		}
	}
	return nil
}

// Tensor describes one named parameter tensor inside the flat parameter slice.
type Tensor struct {
	Name   string // llama2.c name: token_embedding, rms_att, wq, ..., rms_final, wcls
	Layer  int    // block index, or -1 for tensors outside the blocks
	Shape  []int  // row-major, PyTorch layout: [out, in] for matrices, [n] for norm weights
	Offset int    // first element in Model.Params
	Matrix bool   // a weight matrix (decayed by AdamW); false for RMSNorm gains
}

// Size is the number of elements of t.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Layer holds the views of one transformer block's weights.
type Layer struct {
	RMSAtt []float32 // [dim] gain of the attention RMSNorm
	Wq     []float32 // [dim, dim]
	Wk     []float32 // [kv_dim, dim]
	Wv     []float32 // [kv_dim, dim]
	Wo     []float32 // [dim, dim]
	RMSFFN []float32 // [dim] gain of the feed-forward RMSNorm
	W1     []float32 // [hidden, dim] gate
	W2     []float32 // [dim, hidden] down
	W3     []float32 // [hidden, dim] up
}

// Weights are named views into a flat parameter (or gradient) slice.
type Weights struct {
	TokenEmbedding []float32 // [vocab, dim]
	Layers         []Layer
	RMSFinal       []float32 // [dim]
	Wcls           []float32 // [vocab, dim]; the same slice as TokenEmbedding when shared
}

// Model is a Llama-architecture transformer with its parameters, gradients
// and the buffers of its training pass. Forward, Backward and the
// optimiser are not safe for concurrent use. Sessions only read the
// parameters, so several may decode concurrently, also on one Pool (it runs
// one parallel call at a time and the others on their callers'
// goroutines), but not while an optimiser step changes the parameters.
type Model struct {
	Config  Config
	Tensors []Tensor  // the parameter tensors, in llama2.c checkpoint order
	Params  []float32 // every parameter, laid out as Tensors says
	Grads   []float32 // d(loss)/d(Params), allocated by the first Forward
	W       Weights   // views into Params
	G       Weights   // views into Grads (empty until the first Forward)

	// Pool runs the matrix kernels and per-head loops on several threads;
	// nil runs everything on the calling goroutine. The caller owns it.
	Pool *kernels.Pool

	train *trainState // activations kept for Backward, sized at first use
}

// layout lists the parameter tensors in the order of a llama2.c checkpoint
// (all layers' rms_att, then all wq, ...), so that loading and saving that
// format is a straight copy.
func layout(c Config) []Tensor {
	dim, hidden, kv, vocab := c.Dim, c.HiddenDim, c.KVDim(), c.VocabSize
	var ts []Tensor
	off := 0
	add := func(name string, layer int, matrix bool, shape ...int) {
		t := Tensor{Name: name, Layer: layer, Shape: shape, Offset: off, Matrix: matrix}
		ts = append(ts, t)
		off += t.Size()
	}
	perLayer := func(name string, matrix bool, shape ...int) {
		for l := 0; l < c.NLayers; l++ {
			add(name, l, matrix, shape...)
		}
	}
	add("token_embedding", -1, true, vocab, dim)
	perLayer("rms_att", false, dim)
	perLayer("wq", true, dim, dim)
	perLayer("wk", true, kv, dim)
	perLayer("wv", true, kv, dim)
	perLayer("wo", true, dim, dim)
	perLayer("rms_ffn", false, dim)
	perLayer("w1", true, hidden, dim)
	perLayer("w2", true, dim, hidden)
	perLayer("w3", true, hidden, dim)
	add("rms_final", -1, false, dim)
	if !c.SharedClassifier {
		add("wcls", -1, true, vocab, dim)
	}
	return ts
}

// views builds the named views of flat, which is laid out as ts says.
func views(c Config, ts []Tensor, flat []float32) Weights {
	w := Weights{Layers: make([]Layer, c.NLayers)}
	for _, t := range ts {
		s := flat[t.Offset : t.Offset+t.Size() : t.Offset+t.Size()]
		var l *Layer
		if t.Layer >= 0 {
			l = &w.Layers[t.Layer]
		}
		switch t.Name {
		case "token_embedding":
			w.TokenEmbedding = s
		case "rms_att":
			l.RMSAtt = s
		case "wq":
			l.Wq = s
		case "wk":
			l.Wk = s
		case "wv":
			l.Wv = s
		case "wo":
			l.Wo = s
		case "rms_ffn":
			l.RMSFFN = s
		case "w1":
			l.W1 = s
		case "w2":
			l.W2 = s
		case "w3":
			l.W3 = s
		case "rms_final":
			w.RMSFinal = s
		case "wcls":
			w.Wcls = s
		}
	}
	if c.SharedClassifier {
		w.Wcls = w.TokenEmbedding
	}
	return w
}

// newModel allocates a zeroed model of shape c.
func newModel(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ts := layout(c)
	last := ts[len(ts)-1]
	m := &Model{Config: c, Tensors: ts, Params: make([]float32, last.Offset+last.Size())}
	m.W = views(c, ts, m.Params)
	return m, nil
}

// New returns a randomly initialised model of shape c, reproducible from
// seed. Like llama2.c's training script (after nanoGPT), matrices are drawn
// from N(0, 0.02²), except the projections that write into the residual
// stream (wo, w2), whose std is scaled by 1/√(2·n_layers) so that the
// stream's variance does not grow with depth; RMSNorm gains start at 1.
func New(c Config, seed uint64) (*Model, error) {
	m, err := newModel(c)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for _, t := range m.Tensors {
		p := m.Params[t.Offset : t.Offset+t.Size()]
		if !t.Matrix {
			for i := range p {
				p[i] = 1
			}
			continue
		}
		std := 0.02
		if t.Name == "wo" || t.Name == "w2" {
			std /= math.Sqrt(2 * float64(c.NLayers))
		}
		for i := range p {
			p[i] = float32(rng.NormFloat64() * std)
		}
	}
	return m, nil
}

// ensureGrads allocates the gradient slice the first time it is needed, so
// that inference-only models do not pay for it.
func (m *Model) ensureGrads() {
	if m.Grads == nil {
		m.Grads = make([]float32, len(m.Params))
		m.G = views(m.Config, m.Tensors, m.Grads)
	}
}

// ZeroGrad clears the accumulated gradients.
func (m *Model) ZeroGrad() {
	m.ensureGrads()
	clear(m.Grads)
}

// TensorData returns the parameter values of t.
func (m *Model) TensorData(t Tensor) []float32 {
	return m.Params[t.Offset : t.Offset+t.Size()]
}
