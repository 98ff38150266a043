package control

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/delta/kernels"
)

// bigramTemplate is a frozen fake LLM: the logits at each position depend
// only on the token there.
type bigramTemplate struct{ table [][]float32 }

func (b bigramTemplate) VocabSize() int { return len(b.table) }
func (b bigramTemplate) SequenceLogits(tokens []int32, dst []float32) error {
	v := len(b.table)
	for i, t := range tokens {
		copy(dst[i*v:(i+1)*v], b.table[t])
	}
	return nil
}

func tinyDelta(t testing.TB, vocab int, seed uint64) *delta.Model {
	t.Helper()
	m, err := delta.New(delta.Config{Dim: 16, HiddenDim: 32, NLayers: 2, NHeads: 2, NKVHeads: 1, VocabSize: vocab, SeqLen: 32, SharedClassifier: true}, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randomTemplate(vocab int, seed uint64) bigramTemplate {
	r := rand.New(rand.NewPCG(seed, 2))
	tab := make([][]float32, vocab)
	for i := range tab {
		tab[i] = make([]float32, vocab)
		for j := range tab[i] {
			tab[i][j] = 2 * float32(r.NormFloat64())
		}
	}
	return bigramTemplate{tab}
}

// sequences draws n token sequences from a noisy bigram chain (fixed by
// seed) that the template does not know, labelled after a 2-token prompt.
func sequences(n, length, vocab int, seed uint64) []data.Sequence {
	r := rand.New(rand.NewPCG(seed, 3))
	next := make([]int32, vocab)
	for i := range next {
		next[i] = int32(r.IntN(vocab))
	}
	out := make([]data.Sequence, n)
	for i := range out {
		toks := make([]int32, length)
		labels := make([]int32, length)
		toks[0] = int32(r.IntN(vocab))
		for j := 1; j < length; j++ {
			toks[j] = next[toks[j-1]]
			if r.IntN(5) == 0 {
				toks[j] = int32(r.IntN(vocab))
			}
		}
		for j := range labels {
			labels[j] = delta.Ignore
			if j >= 2 && j+1 < length {
				labels[j] = toks[j+1]
			}
		}
		out[i] = data.Sequence{Tokens: toks, Labels: labels, Source: "synthetic"}
	}
	return out
}

// TestControlledCEGradient checks the loss's gradient with respect to the
// delta's logits against finite differences, its invariance to a constant
// shift of the template's logits, and the forget set's sign.
func TestControlledCEGradient(t *testing.T) {
	const vocab, R = 7, 3
	m := tinyDelta(t, vocab, 1)
	r := rand.New(rand.NewPCG(5, 5))
	// three labelled rows of a step that holds 5 labelled tokens in all
	mb := &microBatch{B: 1, T: 4, sign: 1, scale: 1.0 / 5, rows: []int32{0, 2, 3}, targets: []int32{3, 0, 6}}
	logT := make([]float32, R*vocab)
	delt := make([]float32, R*vocab)
	for i := range delt {
		logT[i] = float32(r.NormFloat64())
		delt[i] = float32(r.NormFloat64())
	}
	loss := func(d []float32) float64 {
		buf := slices.Clone(d)
		l, _ := controlledCE(m, buf, logT, mb, 0, R, 0)
		return l
	}
	grad := slices.Clone(delt)
	base, count := controlledCE(m, grad, logT, mb, 0, R, 0)
	if count != R {
		t.Fatalf("counted %d positions, want %d", count, R)
	}
	for i := range delt {
		const h = 1e-2
		plus, minus := slices.Clone(delt), slices.Clone(delt)
		plus[i] += h
		minus[i] -= h
		// the gradient is that of the step's mean: the sum over 5 tokens
		num := (loss(plus) - loss(minus)) / (2 * h) / 5
		if math.Abs(num-float64(grad[i])) > 1e-3 {
			t.Errorf("d loss/d delta[%d] = %g, finite difference %g", i, grad[i], num)
		}
	}
	// log_softmax is a per-row shift: shifting the template's logits of a
	// row by a constant changes nothing.
	for i := range logT {
		logT[i] += float32(i / vocab)
	}
	if shifted := loss(delt); math.Abs(shifted-base) > 1e-5 {
		t.Errorf("loss %g after shifting template rows, want %g", shifted, base)
	}
	// The forget set's sign flips the gradient.
	mb.sign, mb.scale = -1, -mb.scale
	neg := slices.Clone(delt)
	controlledCE(m, neg, logT, mb, 0, R, 0)
	for i := range neg {
		if math.Abs(float64(neg[i]+grad[i])) > 1e-6 {
			t.Fatalf("forget gradient %g is not the negated %g", neg[i], grad[i])
		}
	}
}

// TestPadKeepsOnlyLabelledRows: a micro-batch's vocabulary-wide rows are
// its labelled positions, and its gradient scale is 1 over the step's
// labelled tokens.
func TestPadKeepsOnlyLabelledRows(t *testing.T) {
	seqs := []data.Sequence{
		{Tokens: []int32{1, 2, 3}, Labels: []int32{-1, 3, 4}},
		{Tokens: []int32{5, 6}, Labels: []int32{6, -1}},
	}
	tr := &Trainer{PadToken: 0}
	mb, err := tr.pad(plannedBatch{from: seqs, idx: []int{0, 1}, sign: -1, stepTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	if mb.T != 3 || !slices.Equal(mb.rows, []int32{1, 2, 3}) || !slices.Equal(mb.targets, []int32{3, 4, 6}) {
		t.Fatalf("T %d, rows %v, targets %v; want 3, [1 2 3], [3 4 6]", mb.T, mb.rows, mb.targets)
	}
	if mb.scale != -1.0/8 {
		t.Fatalf("scale %g, want -1/8", mb.scale)
	}
}

// TestStepLossIsTokenMean: a step's loss and update are those of the mean
// over all its labelled tokens, however its sequences of different lengths
// are split into micro-batches (a mean of micro-batch means would weigh a
// short sequence's tokens more).
func TestStepLossIsTokenMean(t *testing.T) {
	const vocab = 16
	tmpl := randomTemplate(vocab, 4)
	seqs := sequences(8, 12, vocab, 3)
	for i := range seqs {
		n := 5 + 7*(i%2) // lengths 5 and 12 alternate
		seqs[i].Tokens, seqs[i].Labels = seqs[i].Tokens[:n], seqs[i].Labels[:n]
	}
	run := func(batch, accumulate int) ([]float64, []float32) {
		tr := newTrainer(t, tmpl, tinyDelta(t, vocab, 3), seqs, TrainConfig{Objective: SFT, BatchSize: batch, Accumulate: accumulate, Epochs: 1, Seed: 2})
		var losses []float64
		tr.OnStep = func(s Step) error { losses = append(losses, s.Loss); return nil }
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return losses, tr.Model.Params
	}
	oneBatch, p1 := run(4, 1)
	split, p2 := run(1, 4)
	if len(oneBatch) != 2 || len(split) != 2 {
		t.Fatalf("%d and %d steps, want 2", len(oneBatch), len(split))
	}
	for i := range oneBatch {
		if math.Abs(oneBatch[i]-split[i]) > 1e-5*oneBatch[i] {
			t.Errorf("step %d: loss %.7f in one micro-batch, %.7f in four", i+1, oneBatch[i], split[i])
		}
	}
	for i := range p1 {
		if math.Abs(float64(p1[i]-p2[i])) > 1e-5 {
			t.Fatalf("parameter %d: %g in one micro-batch, %g in four", i, p1[i], p2[i])
		}
	}
}

func newTrainer(t testing.TB, tmpl Template, m *delta.Model, train []data.Sequence, cfg TrainConfig) *Trainer {
	t.Helper()
	total := cfg.Epochs * cfg.StepsPerEpoch(len(train))
	opt := delta.NewAdamW(m, delta.AdamWConfig{LR: 1e-2, MinLR: 1e-3, WarmupSteps: 2, DecaySteps: total, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1})
	return &Trainer{Template: tmpl, Model: m, Opt: opt, Config: cfg, Train: train}
}

// heldOutLoss is the mean CMC loss of the template + delta on seqs.
func heldOutLoss(t testing.TB, tmpl Template, m *delta.Model, seqs []data.Sequence) float64 {
	t.Helper()
	tr := &Trainer{Template: tmpl, Model: m}
	v := tmpl.VocabSize()
	var sum float64
	for i, s := range seqs {
		mb, err := tr.pad(plannedBatch{from: seqs, idx: []int{i}, sign: 1})
		if err != nil {
			t.Fatal(err)
		}
		whole := make([]float32, mb.T*v)
		if err := tmpl.SequenceLogits(s.Tokens, whole); err != nil {
			t.Fatal(err)
		}
		var logT []float32
		for _, r := range mb.rows {
			logT = append(logT, whole[int(r)*v:int(r+1)*v]...)
		}
		mb.scale = 1
		logits := m.ForwardAt(mb.ids, 1, mb.T, mb.rows)
		l, n := controlledCE(m, logits, logT, mb, 0, len(mb.rows), 0)
		sum += l / float64(n)
	}
	return sum / float64(len(seqs))
}

func TestTrainingLowersHeldOutLoss(t *testing.T) {
	const vocab = 24
	tmpl := randomTemplate(vocab, 9)
	m := tinyDelta(t, vocab, 2)
	m.Pool = kernels.NewPool(2)
	defer m.Pool.Close()
	all := sequences(80, 16, vocab, 11)
	train, held := all[:64], all[64:]
	// A zero delta leaves the template alone: that is the baseline.
	before := heldOutLoss(t, tmpl, m, held)
	tr := newTrainer(t, tmpl, m, train, TrainConfig{Objective: SFT, BatchSize: 8, Accumulate: 1, Epochs: 6, Seed: 1})
	var losses []float64
	tr.OnStep = func(s Step) error { losses = append(losses, s.Loss); return nil }
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := heldOutLoss(t, tmpl, m, held)
	if len(losses) != tr.TotalSteps() {
		t.Fatalf("%d steps reported, want %d", len(losses), tr.TotalSteps())
	}
	if after > before*0.8 {
		t.Fatalf("held-out loss %.3f -> %.3f: training did not help", before, after)
	}
}

// TestResumeIsExact trains in two halves with a checkpoint in between and
// compares with an uninterrupted run, parameter for parameter.
func TestResumeIsExact(t *testing.T) {
	const vocab = 16
	tmpl := randomTemplate(vocab, 4)
	forget, retain := sequences(12, 10, vocab, 1), sequences(20, 10, vocab, 2)
	// With jitter on, the template's factors must follow the run across the break too.
	cfg := TrainConfig{Objective: GradDiff, BatchSize: 3, Accumulate: 2, Epochs: 3, Seed: 5, TemplateJitter: 0.5}

	whole := newTrainer(t, tmpl, tinyDelta(t, vocab, 3), forget, cfg)
	whole.Retain = retain
	if err := whole.Run(context.Background()); err != nil {
		t.Fatal(err)
	}

	first := newTrainer(t, tmpl, tinyDelta(t, vocab, 3), forget, cfg)
	first.Retain = retain
	ckpt := filepath.Join(t.TempDir(), "delta.ckpt")
	ctx, cancel := context.WithCancel(context.Background())
	first.OnStep = func(s Step) error {
		if s.Step == 3 {
			if err := delta.SaveCheckpoint(ckpt, first.Model, first.Opt, nil); err != nil {
				return err
			}
			cancel()
		}
		return nil
	}
	if err := first.Run(ctx); err == nil {
		t.Fatal("cancelled run returned no error")
	}
	m, opt, _, err := delta.LoadCheckpoint(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	second := &Trainer{Template: tmpl, Model: m, Opt: opt, Config: cfg, Train: forget, Retain: retain}
	if err := second.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if opt.Step != whole.Opt.Step {
		t.Fatalf("resumed run ended at step %d, uninterrupted at %d", opt.Step, whole.Opt.Step)
	}
	if !slices.Equal(m.Params, whole.Model.Params) {
		t.Fatal("resumed weights differ from the uninterrupted run")
	}
}

// TestPretrainWithoutTemplate: with no template the trainer is a plain
// language-model trainer, and it learns the synthetic chain.
func TestPretrainWithoutTemplate(t *testing.T) {
	const vocab = 24
	m := tinyDelta(t, vocab, 2)
	all := sequences(80, 16, vocab, 11)
	tr := newTrainer(t, nil, m, all[:64], TrainConfig{Objective: SFT, BatchSize: 8, Accumulate: 1, Epochs: 6, Seed: 1})
	tr.Template = nil
	var first, last float64
	tr.OnStep = func(s Step) error {
		if s.Step == 1 {
			first = s.Loss
		}
		last = s.Loss
		if s.TemplateTime != 0 {
			t.Errorf("step %d spent %v on a template that does not exist", s.Step, s.TemplateTime)
		}
		return nil
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last > first*0.7 {
		t.Fatalf("loss %.3f -> %.3f: plain pretraining did not learn", first, last)
	}
}

// streamingTemplate answers only at the positions asked for, two rows at a
// time, and refuses to compute whole sequences.
type streamingTemplate struct {
	bigramTemplate
	t *testing.T
}

func (p streamingTemplate) SequenceLogits([]int32, []float32) error {
	p.t.Error("a StreamingTemplate was asked for every position")
	return nil
}

func (p streamingTemplate) SequenceLogitsEach(tokens, positions []int32, emit func([]float32) error) error {
	v := len(p.table)
	for len(positions) > 0 {
		n := min(2, len(positions))
		rows := make([]float32, n*v)
		for j, pos := range positions[:n] {
			copy(rows[j*v:(j+1)*v], p.table[tokens[pos]])
		}
		if err := emit(rows); err != nil {
			return err
		}
		positions = positions[n:]
	}
	return nil
}

// TestStreamingTemplateTrainsAlike: a template that streams the labelled
// positions only, in pieces that do not match the loss's chunks, gives
// exactly the training of one that computes every position at once.
func TestStreamingTemplateTrainsAlike(t *testing.T) {
	const vocab = 16
	tmpl := randomTemplate(vocab, 4)
	seqs := sequences(12, 10, vocab, 3)
	cfg := TrainConfig{Objective: SFT, BatchSize: 3, Accumulate: 2, Epochs: 2, Seed: 2}
	whole := newTrainer(t, tmpl, tinyDelta(t, vocab, 3), seqs, cfg)
	whole.chunkRows = 3
	if err := whole.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	streamed := newTrainer(t, streamingTemplate{tmpl, t}, tinyDelta(t, vocab, 3), seqs, cfg)
	streamed.chunkRows = 3
	if err := streamed.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(whole.Model.Params, streamed.Model.Params) {
		t.Fatal("training with a streaming template differs")
	}
}

// TestLossChunksTrainAlike: the delta's logits computed a few rows at a
// time give the training of all rows at once (up to rounding), the
// template's rows and the labels going with their chunk.
func TestLossChunksTrainAlike(t *testing.T) {
	const vocab = 16
	tmpl := randomTemplate(vocab, 4)
	seqs := sequences(12, 10, vocab, 3)
	cfg := TrainConfig{Objective: GradDiff, BatchSize: 3, Accumulate: 2, Epochs: 2, Seed: 2}
	run := func(chunkRows int) ([]float64, []float32) {
		tr := newTrainer(t, tmpl, tinyDelta(t, vocab, 3), seqs[:6], cfg)
		tr.Retain, tr.chunkRows = seqs[6:], chunkRows
		var losses []float64
		tr.OnStep = func(s Step) error { losses = append(losses, s.Loss); return nil }
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return losses, tr.Model.Params
	}
	l1, p1 := run(0)
	l2, p2 := run(5)
	for i := range l1 {
		if math.Abs(l1[i]-l2[i]) > 1e-5 {
			t.Fatalf("step %d: loss %.7f at once, %.7f in chunks of 5 rows", i+1, l1[i], l2[i])
		}
	}
	for i := range p1 {
		if math.Abs(float64(p1[i]-p2[i])) > 1e-5 {
			t.Fatalf("parameter %d: %g at once, %g in chunks", i, p1[i], p2[i])
		}
	}
}

// TestAnchorLeavesPositionsToTheTemplate trains on sequences whose token at
// one position is a "name" drawn from a few tokens after a marker token
// (what an instruction's pairs substitute after "named"), labelled once with
// the name itself and once with data.Anchor. Trained on the names, the delta learns to raise them there
// (its output moves far from the template's); anchored, it stays within a
// small KL of the template there, while it still learns the other
// positions, whose held-out loss falls as much as without the anchor. Left
// without a loss there (data.NoToken, the first form of from_template), the
// delta drifts as far as when trained on the names: the failure the anchor
// was made for.
func TestAnchorLeavesPositionsToTheTemplate(t *testing.T) {
	const vocab, length, at = 16, 12, 6
	tmpl := randomTemplate(vocab, 21)
	names := []int32{3, 7, 11}
	all := sequences(80, length, vocab, 31)
	r := rand.New(rand.NewPCG(31, 5))
	const marker = 15 // "named": the name follows it
	for i := range all {
		all[i].Tokens[at-1], all[i].Labels[at-2] = marker, marker
		all[i].Tokens[at] = names[r.IntN(len(names))]
		all[i].Labels[at-1] = all[i].Tokens[at]
	}
	// relabel gives the name's position the label y.
	relabel := func(seqs []data.Sequence, y int32) []data.Sequence {
		out := make([]data.Sequence, len(seqs))
		for i, s := range seqs {
			s.Labels = slices.Clone(s.Labels)
			s.Labels[at-1] = y
			out[i] = s
		}
		return out
	}
	train, held := all[:64], all[64:]
	// klAt is the mean KL(softmax(template) ‖ softmax(template + delta)) at
	// the row that predicts the name.
	klAt := func(m *delta.Model) float64 {
		var sum float64
		for _, s := range held {
			logits := m.Forward(s.Tokens, 1, length)
			p := softmax(tmpl.table[s.Tokens[at-1]])
			z := slices.Clone(tmpl.table[s.Tokens[at-1]])
			for j := range z {
				z[j] += logits[(at-1)*vocab+j]
			}
			q := softmax(z)
			for j := range p {
				sum += p[j] * math.Log(p[j]/q[j])
			}
		}
		return sum / float64(len(held))
	}
	fit := func(seqs []data.Sequence) (kl, heldLoss float64) {
		m := tinyDelta(t, vocab, 2)
		tr := newTrainer(t, tmpl, m, seqs, TrainConfig{Objective: SFT, BatchSize: 8, Accumulate: 1, Epochs: 16, Seed: 1})
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return klAt(m), heldOutLoss(t, tmpl, m, relabel(held, data.NoToken))
	}
	before := heldOutLoss(t, tmpl, tinyDelta(t, vocab, 2), relabel(held, data.NoToken))
	klNamed, lossNamed := fit(train)
	klAnchored, lossAnchored := fit(relabel(train, data.Anchor))
	klFree, _ := fit(relabel(train, data.NoToken))
	t.Logf("KL at the name: %.4f trained on names, %.4f anchored, %.4f with no loss there; held-out loss elsewhere %.3f -> %.3f / %.3f",
		klNamed, klAnchored, klFree, before, lossNamed, lossAnchored)
	if klNamed < 0.2 {
		t.Fatalf("trained on the names the delta moved only %.4f nats from the template at them: the test has no signal", klNamed)
	}
	if klAnchored > klNamed/10 {
		t.Errorf("anchored, the delta moved %.4f nats from the template at the name (%.4f trained on names)", klAnchored, klNamed)
	}
	if klFree < 10*klAnchored {
		t.Errorf("with no loss at the name the delta moved %.4f nats from the template there, anchored %.4f: the anchor adds nothing", klFree, klAnchored)
	}
	if lossAnchored > before*0.8 || lossAnchored > lossNamed*1.1 {
		t.Errorf("anchored, the held-out loss elsewhere went %.3f -> %.3f (%.3f trained on names): the anchor stopped the rest of training", before, lossAnchored, lossNamed)
	}
}

// TestTemplateScale: the jitter's factors lie in [1−J, 1+J], are fixed by
// the seed, differ between sequences, epochs and the two sets of grad_diff,
// and are exactly 1 with the jitter off.
func TestTemplateScale(t *testing.T) {
	off := TrainConfig{Seed: 3}
	if s := off.templateScale(2, 1, 7); s != 1 {
		t.Fatalf("jitter off: factor %v, want 1", s)
	}
	c := TrainConfig{Seed: 3, TemplateJitter: 0.8}
	seen := map[float32]bool{}
	var sum float64
	n := 0
	for epoch := range 3 {
		for _, sign := range []float32{1, -1} {
			for idx := range 200 {
				s := c.templateScale(epoch, sign, idx)
				if s < 0.2 || s > 1.8 {
					t.Fatalf("epoch %d sign %v sequence %d: factor %v outside [0.2, 1.8]", epoch, sign, idx, s)
				}
				if s != c.templateScale(epoch, sign, idx) {
					t.Fatal("the factor is not a function of the seed, epoch, set and sequence")
				}
				seen[s] = true
				sum += float64(s)
				n++
			}
		}
	}
	if len(seen) < n*99/100 {
		t.Errorf("%d distinct factors among %d draws", len(seen), n)
	}
	if mean := sum / float64(n); math.Abs(mean-1) > 0.03 {
		t.Errorf("mean factor %.3f, want about 1", mean)
	}
	if other := (TrainConfig{Seed: 4, TemplateJitter: 0.8}); other.templateScale(0, 1, 0) == c.templateScale(0, 1, 0) {
		t.Error("another seed drew the same factor")
	}
	// Drawn once per sequence of every micro-batch: no allocation.
	if n := testing.AllocsPerRun(100, func() { c.templateScale(1, -1, 9) }); n != 0 {
		t.Errorf("a factor allocates %v times", n)
	}
	// The draw is rand.Rand's Float64 of the same PCG, as it was before the
	// generator moved to the stack: the committed deltas' factors stay.
	if s, want := c.templateScale(0, 1, 0), float32(1+0.8*(2*rand.New(rand.NewPCG(3, 0)).Float64()-1)); s != want {
		t.Errorf("factor %v, want %v", s, want)
	}
	// A factor of 0 or below would flip or flatten the template: refused.
	for _, j := range []float64{-0.1, 1, math.NaN()} {
		tr := newTrainer(t, randomTemplate(8, 1), tinyDelta(t, 8, 1), sequences(4, 6, 8, 1), TrainConfig{Objective: SFT, BatchSize: 2, Accumulate: 1, Epochs: 1, Seed: 1, TemplateJitter: j})
		if err := tr.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "jitter") {
			t.Errorf("jitter %v: %v, want an error that names the jitter", j, err)
		}
	}
}

// TestJitterCarriesToSurerUsers trains the same delta twice against one
// template, without and with jitter, and applies each to two users that are
// the template at other temperatures (its logits times 2.5 and 0.4). Fitted
// to the template's exact confidence, the plain delta's shift overshoots on
// the surer user; jittered, it carries: that user's held-out loss falls, at
// little cost on the template and the less sure user. (With the template
// and data seeds 14-19 and 18-23 in place of 13 and 17, run by hand, the
// surer user's loss fell 6-20%, the template's rose 0-8%, and the less
// sure user's changed by -4% to +15%.)
func TestJitterCarriesToSurerUsers(t *testing.T) {
	const vocab = 16
	tmpl := randomTemplate(vocab, 13)
	scaled := func(f float32) bigramTemplate {
		tab := make([][]float32, vocab)
		for i, row := range tmpl.table {
			tab[i] = slices.Clone(row)
			kernels.Scale(f, tab[i])
		}
		return bigramTemplate{tab}
	}
	sharp, flat := scaled(2.5), scaled(0.4)
	all := sequences(96, 14, vocab, 17)
	train, held := all[:80], all[80:]
	type losses struct{ template, sharp, flat float64 }
	fit := func(jitter float64) losses {
		m := tinyDelta(t, vocab, 2)
		tr := newTrainer(t, tmpl, m, train, TrainConfig{Objective: SFT, BatchSize: 8, Accumulate: 1, Epochs: 10, Seed: 1, TemplateJitter: jitter})
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return losses{heldOutLoss(t, tmpl, m, held), heldOutLoss(t, sharp, m, held), heldOutLoss(t, flat, m, held)}
	}
	plain, jit := fit(0), fit(0.8)
	t.Logf("held-out loss plain / jittered: template %.3f / %.3f, surer user %.3f / %.3f, less sure user %.3f / %.3f",
		plain.template, jit.template, plain.sharp, jit.sharp, plain.flat, jit.flat)
	if jit.sharp > plain.sharp*0.95 {
		t.Errorf("on the surer user the jittered delta's loss is %.3f, the plain one's %.3f: the jitter did not carry the shift", jit.sharp, plain.sharp)
	}
	if jit.template > plain.template*1.1 || jit.flat > plain.flat*1.15 {
		t.Errorf("jittered, the loss on the template went %.3f -> %.3f and on the less sure user %.3f -> %.3f", plain.template, jit.template, plain.flat, jit.flat)
	}
}

func softmax(x []float32) []float64 {
	mx := slices.Max(x)
	p := make([]float64, len(x))
	var sum float64
	for i, v := range x {
		p[i] = math.Exp(float64(v - mx))
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// TestAnchorFlatnessKeepsUsersOwnWord: the data raise a token u that the
// template never expects (it is the target at other positions), and the
// name after a marker is anchored. The anchor's KL weighs u by the
// template's tiny probability, so the raise learnt elsewhere leaks into the
// anchored row almost for free; on a user LLM that likes u there as much
// as the names, u then takes the slot. With TrainConfig.AnchorFlatness the
// row stays flat and the user keeps its names, while the rest is learnt as
// well as without it. (With template and data seeds 29/43 and 31/47, run by
// hand, the name mass went 0.131 -> 0.000 / 0.113 and 0.132 -> 0.000 / 0.137.)
func TestAnchorFlatnessKeepsUsersOwnWord(t *testing.T) {
	const vocab, length, at, marker, u = 16, 12, 6, 15, 5
	tmpl := randomTemplate(vocab, 23)
	for _, row := range tmpl.table {
		row[u] = -12
	}
	names := []int32{3, 7, 11}
	all := sequences(80, length, vocab, 41)
	r := rand.New(rand.NewPCG(41, 5))
	for i := range all {
		s := &all[i]
		s.Tokens[at-1], s.Labels[at-2] = marker, marker
		s.Tokens[at] = names[r.IntN(len(names))]
		s.Labels[at-1] = data.Anchor
		for _, j := range []int{3, 8, 10} {
			s.Tokens[j], s.Labels[j-1] = u, u
		}
	}
	train, held := all[:64], all[64:]
	// The user: the template, but at the marker it likes u as the names.
	user := slices.Clone(tmpl.table[marker])
	for _, n := range names {
		user[u] = max(user[u], user[n])
	}
	// nameMass is the user's probability of the names at the marker with
	// the delta added, and raise the delta's u there over its row's mean.
	nameMass := func(m *delta.Model) (mass, raise float64) {
		for _, s := range held {
			d := m.Forward(s.Tokens, 1, length)[(at-1)*vocab : at*vocab]
			z := slices.Clone(user)
			var mean float64
			for j := range z {
				z[j] += d[j]
				mean += float64(d[j]) / vocab
			}
			q := softmax(z)
			for _, n := range names {
				mass += q[n]
			}
			raise += float64(d[u]) - mean
		}
		return mass / float64(len(held)), raise / float64(len(held))
	}
	fit := func(flatness float64) (mass, raise, heldLoss float64) {
		m := tinyDelta(t, vocab, 2)
		tr := newTrainer(t, tmpl, m, train, TrainConfig{Objective: SFT, BatchSize: 8, Accumulate: 1, Epochs: 16, Seed: 1, AnchorFlatness: flatness})
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		mass, raise = nameMass(m)
		return mass, raise, heldOutLoss(t, tmpl, m, held)
	}
	alone, p := 0.0, softmax(user)
	for _, n := range names {
		alone += p[n]
	}
	klMass, klRaise, klLoss := fit(0)
	flatMass, flatRaise, flatLoss := fit(1)
	t.Logf("user's name mass at the anchor: alone %.3f, KL anchor %.3f (u raised %.2f), flat anchor %.3f (u raised %.2f); held-out loss %.3f / %.3f",
		alone, klMass, klRaise, flatMass, flatRaise, klLoss, flatLoss)
	if klMass > alone/4 {
		t.Fatalf("with the KL anchor the user kept %.3f of its %.3f name mass: the test has no signal", klMass, alone)
	}
	if flatMass < 0.8*alone || flatRaise > klRaise/5 {
		t.Errorf("with the flat anchor the user's name mass is %.3f (alone %.3f) and u is raised %.2f (KL anchor %.2f)", flatMass, alone, flatRaise, klRaise)
	}
	if flatLoss > klLoss*1.1 {
		t.Errorf("the flat anchor's held-out loss is %.3f, the KL anchor's %.3f: it stopped the rest of training", flatLoss, klLoss)
	}
	for _, f := range []float64{-1, math.NaN(), math.Inf(1)} {
		tr := newTrainer(t, tmpl, tinyDelta(t, vocab, 1), train[:4], TrainConfig{Objective: SFT, BatchSize: 2, Accumulate: 1, Epochs: 1, Seed: 1, AnchorFlatness: f})
		if err := tr.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "anchor flatness") {
			t.Errorf("anchor flatness %v: %v, want an error that names it", f, err)
		}
	}
	tr := newTrainer(t, nil, tinyDelta(t, vocab, 1), train[:4], TrainConfig{Objective: SFT, BatchSize: 2, Accumulate: 1, Epochs: 1, Seed: 1, AnchorFlatness: 1})
	if err := tr.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "without a template") {
		t.Errorf("anchor flatness with no template: %v, want a refusal", err)
	}
}
