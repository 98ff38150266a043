package delta

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cmc-dev/cmc/delta/kernels"
)

func TestLearningRate(t *testing.T) {
	c := AdamWConfig{LR: 1e-3, MinLR: 1e-4, WarmupSteps: 10, DecaySteps: 110}
	for _, tc := range []struct {
		step int
		want float64
	}{
		{0, 1e-4},               // warm-up starts at LR/WarmupSteps
		{4, 5e-4},               //
		{9, 1e-3},               // last warm-up step reaches LR
		{10, 1e-3},              // cosine starts at LR
		{60, (1e-3 + 1e-4) / 2}, // half way down
		{110, 1e-4},             // bottom
		{1000, 1e-4},            // held at MinLR
	} {
		if got := c.LearningRate(tc.step); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("LearningRate(%d) = %g, want %g", tc.step, got, tc.want)
		}
	}
}

// Adam's first update is lr·sign(g) whatever |g| (m̂ = g, v̂ = g²), so a
// first step checks the moments, the bias correction and the decoupled
// decay (matrices only) against the formula; clipping shows in v.
func TestAdamWFirstStep(t *testing.T) {
	m, err := New(Config{Dim: 4, HiddenDim: 4, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 3, SharedClassifier: true}, 1)
	if err != nil {
		t.Fatal(err)
	}
	m.ZeroGrad()
	before := slices.Clone(m.Params)
	for i := range m.Grads {
		m.Grads[i] = float32(i%5) - 2 // some zero, some negative
	}
	const lr, wd, clipNorm = 0.01, 0.1, 1.0
	o := NewAdamW(m, AdamWConfig{LR: lr, WeightDecay: wd, ClipNorm: clipNorm})
	var ss float64
	for _, g := range m.Grads {
		ss += float64(g) * float64(g) / 4 // gradScale 0.5
	}
	norm := o.Update(m, 0.5)
	if math.Abs(norm-math.Sqrt(ss)) > 1e-9*norm {
		t.Fatalf("gradient norm %v, want %v", norm, math.Sqrt(ss))
	}
	for _, ts := range m.Tensors {
		for i := ts.Offset; i < ts.Offset+ts.Size(); i++ {
			g := (float64(i%5) - 2) / 2
			clipped := g * clipNorm / norm
			decay := 1.0
			if ts.Matrix {
				decay = 1 - lr*wd
			}
			// sign(g)·lr, softened by eps = 1e-8 relative to |g|
			step := 0.0
			if g != 0 {
				step = lr * clipped / (math.Abs(clipped) + 1e-8)
			}
			want := float64(before[i])*decay - step
			if math.Abs(float64(m.Params[i])-want) > 1e-6 { // a few float32 ulp of 1
				t.Fatalf("%s element %d: %v, want %v", ts.Name, i-ts.Offset, m.Params[i], want)
			}
			if m.Grads[i] != 0 {
				t.Fatalf("%s element %d: gradient %v left after the update", ts.Name, i-ts.Offset, m.Grads[i])
			}
			// 1−β2 rounds to float32 with a relative error of 1.3e-5
			if wantV := 0.001 * clipped * clipped; math.Abs(float64(o.V[i])-wantV) > 1e-4*wantV+1e-12 {
				t.Fatalf("%s element %d: second moment %v, want %v", ts.Name, i-ts.Offset, o.V[i], wantV)
			}
		}
	}
}

func randomIDs(rng *rand.Rand, n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
	}
	return ids
}

// trainSteps runs steps of two micro-batches each on data drawn from seed
// and the step number, so that a resumed run sees the same batches.
func trainSteps(m *Model, o *AdamW, from, to int) {
	const B, T = 2, 6
	V := m.Config.VocabSize
	for step := from; step < to; step++ {
		m.ZeroGrad()
		for micro := range 2 {
			rng := rand.New(rand.NewPCG(uint64(step), uint64(micro)))
			ids := randomIDs(rng, B*T+1, V)
			targets := slices.Clone(ids[1:])
			targets[3] = Ignore
			logits := m.Forward(ids[:B*T], B, T)
			CrossEntropy(m.Pool, logits, targets, V)
			m.Backward(logits)
		}
		o.Update(m, 0.5)
	}
}

// A run split in two by SaveCheckpoint/LoadCheckpoint must end with the same
// bits as the uninterrupted run: everything that influences an update is in
// the checkpoint.
func TestResumeBitExact(t *testing.T) {
	cfg := Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 32, SeqLen: 8, SharedClassifier: true}
	opt := AdamWConfig{LR: 3e-3, MinLR: 3e-4, WarmupSteps: 3, DecaySteps: 20, WeightDecay: 0.1, ClipNorm: 0.5}
	pool := kernels.NewPool(2)
	defer pool.Close()

	whole, err := New(cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	whole.Pool = pool
	initial := slices.Clone(whole.Params)
	trainSteps(whole, NewAdamW(whole, opt), 0, 20)

	first, _ := New(cfg, 42)
	first.Pool = pool
	o := NewAdamW(first, opt)
	trainSteps(first, o, 0, 9)
	path := filepath.Join(t.TempDir(), "run.ckpt")
	if err := SaveCheckpoint(path, first, o, nil); err != nil {
		t.Fatal(err)
	}
	second, o2, _, err := LoadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	if o2 == nil || o2.Step != 9 || o2.Config != opt || second.Config != cfg {
		t.Fatalf("checkpoint restored step %v config %+v model %+v", o2, o2.Config, second.Config)
	}
	second.Pool = pool
	trainSteps(second, o2, 9, 20)

	if slices.Equal(whole.Params, initial) {
		t.Fatal("training did not change the parameters")
	}
	for i := range whole.Params {
		if math.Float32bits(whole.Params[i]) != math.Float32bits(second.Params[i]) {
			t.Fatalf("parameter %d: resumed %v, uninterrupted %v", i, second.Params[i], whole.Params[i])
		}
	}
}

// Summing the gradients of two micro-batches and scaling by 1/2 gives the
// gradient of the whole batch (equal numbers of counted positions).
func TestGradientAccumulation(t *testing.T) {
	cfg := Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 32, SharedClassifier: false}
	m, _ := New(cfg, 5)
	rng := rand.New(rand.NewPCG(5, 5))
	const T = 7
	ids, targets := randomIDs(rng, 2*T, 32), randomIDs(rng, 2*T, 32)

	m.ZeroGrad()
	logits := m.Forward(ids, 2, T)
	CrossEntropy(nil, logits, targets, 32)
	m.Backward(logits)
	whole := slices.Clone(m.Grads)

	m.ZeroGrad()
	for b := range 2 {
		logits := m.Forward(ids[b*T:(b+1)*T], 1, T)
		CrossEntropy(nil, logits, targets[b*T:(b+1)*T], 32)
		m.Backward(logits)
	}
	kernels.Scale(0.5, m.Grads)
	for i := range whole {
		if d := math.Abs(float64(whole[i] - m.Grads[i])); d > 1e-6+1e-4*math.Abs(float64(whole[i])) {
			t.Fatalf("gradient %d: accumulated %v, whole batch %v", i, m.Grads[i], whole[i])
		}
	}
}

// ForwardAt's logits are those rows of Forward's, and a loss on them alone
// gives the gradients of the same loss with the other positions ignored.
func TestForwardAt(t *testing.T) {
	cfg := Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 32, SharedClassifier: true}
	m, _ := New(cfg, 9)
	rng := rand.New(rand.NewPCG(9, 1))
	const B, T, V = 2, 9, 32
	ids, targets := randomIDs(rng, B*T, V), randomIDs(rng, B*T, V)
	rows := []int32{17, 3, 4, 10}

	m.ZeroGrad()
	all := m.Forward(ids, B, T)
	want := make([]float32, 0, len(rows)*V)
	for _, r := range rows {
		want = append(want, all[int(r)*V:(int(r)+1)*V]...)
	}
	masked := slices.Repeat([]int32{Ignore}, B*T)
	for _, r := range rows {
		masked[r] = targets[r]
	}
	wantLoss := CrossEntropy(nil, all, masked, V)
	m.Backward(all)
	wantGrads := slices.Clone(m.Grads)

	m.ZeroGrad()
	sel := m.ForwardAt(ids, B, T, rows)
	if d := maxAbsDiff(sel, want); d > 1e-6 {
		t.Fatalf("ForwardAt logits differ from Forward's rows by %g", d)
	}
	selTargets := make([]int32, len(rows))
	for j, r := range rows {
		selTargets[j] = targets[r]
	}
	if loss := CrossEntropy(nil, sel, selTargets, V); math.Abs(loss-wantLoss) > 1e-6 {
		t.Fatalf("loss %v, want %v", loss, wantLoss)
	}
	m.Backward(sel)
	for i := range wantGrads {
		if d := math.Abs(float64(m.Grads[i] - wantGrads[i])); d > 1e-6+1e-4*math.Abs(float64(wantGrads[i])) {
			t.Fatalf("gradient %d: %v via ForwardAt, %v via Forward", i, m.Grads[i], wantGrads[i])
		}
	}
}
