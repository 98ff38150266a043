package control

import (
	"context"
	"math"
	"slices"
	"testing"
)

// historyLM is a fake model whose logits depend on every token of its
// context and on their positions, so that decoding from a wrong position,
// a missed trim or a misaligned row changes them. It counts its decodes.
type historyLM struct {
	vocab   int
	seed    uint64
	ctx     []int32
	logits  []float32
	appends int // Append calls
	batches int // AppendAll calls
	decoded int // tokens decoded
}

func newHistoryLM(vocab int, seed uint64) *historyLM {
	return &historyLM{vocab: vocab, seed: seed, logits: make([]float32, vocab)}
}

// logitsAfter writes the logits that follow the context's first n tokens.
func (h *historyLM) logitsAfter(n int, dst []float32) {
	x := h.seed
	for i, t := range h.ctx[:n] {
		x = (x^uint64(t+1)*0x9e3779b97f4a7c15)*0xbf58476d1ce4e5b9 + uint64(i)
	}
	for v := range dst {
		z := x + uint64(v+1)*0x94d049bb133111eb
		z = (z ^ z>>31) * 0xd6e9f8c2a5b7e3a1
		dst[v] = float32(z>>40%1000)/150 - 3
	}
}

func (h *historyLM) VocabSize() int { return h.vocab }
func (h *historyLM) Len() int       { return len(h.ctx) }
func (h *historyLM) Append(tokens []int32) ([]float32, error) {
	h.appends++
	h.decoded += len(tokens)
	h.ctx = append(h.ctx, tokens...)
	h.logitsAfter(len(h.ctx), h.logits)
	return h.logits, nil
}
func (h *historyLM) Trim(pos int) error { h.ctx = h.ctx[:pos]; return nil }

// batchLM adds the all-positions decode.
type batchLM struct{ *historyLM }

func (b batchLM) AppendAll(tokens []int32, rows []float32) error {
	b.batches++
	b.decoded += len(tokens)
	start := len(b.ctx)
	b.ctx = append(b.ctx, tokens...)
	for i := range tokens {
		b.logitsAfter(start+i+1, rows[i*b.vocab:(i+1)*b.vocab])
	}
	return nil
}

// alphabet spells token i as the i-th lower-case letter.
type alphabet struct{}

func (alphabet) Tokenize(text string, _, _ bool) ([]int32, error) {
	ids := make([]int32, len(text))
	for i := range len(text) {
		ids[i] = int32(text[i] - 'a')
	}
	return ids, nil
}
func (alphabet) AppendPiece(dst []byte, id int32, _ bool) []byte { return append(dst, byte('a'+id)) }

// referenceScores computes what Score must return from scratch: the user's
// log-softmax after userPrompt + target[:i], and with the delta (same
// vocabulary) log_softmax(that + alpha · delta after deltaPrompt + target[:i]).
func referenceScores(vocab int, userSeed, deltaSeed uint64, alpha float32, userPrompt, deltaPrompt, target []int32) (alone, controlled []float64) {
	u, d := newHistoryLM(vocab, userSeed), newHistoryLM(vocab, deltaSeed)
	ul, dl := make([]float32, vocab), make([]float32, vocab)
	for i, t := range target {
		u.ctx = append(slices.Clone(userPrompt), target[:i]...)
		d.ctx = append(slices.Clone(deltaPrompt), target[:i]...)
		u.logitsAfter(len(u.ctx), ul)
		d.logitsAfter(len(d.ctx), dl)
		mixed := make([]float64, vocab)
		for v := range mixed {
			mixed[v] = float64(ul[v])
		}
		logZ := logSumExp64(mixed)
		alone = append(alone, mixed[t]-logZ)
		for v := range mixed {
			mixed[v] += -logZ + float64(alpha)*float64(dl[v])
		}
		controlled = append(controlled, mixed[t]-logSumExp64(mixed))
	}
	return alone, controlled
}

func logSumExp64(x []float64) float64 {
	best := slices.Max(x)
	sum := 0.0
	for _, v := range x {
		sum += math.Exp(v - best)
	}
	return best + math.Log(sum)
}

func closeTo(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-4 {
			return false
		}
	}
	return true
}

// TestScorerMatchesReference: scores agree with log-probabilities computed
// from scratch, for answers scored one after another on the same and on
// different prompts (every answer rewinds to its prompt), with the user
// model batched or stepped token by token.
func TestScorerMatchesReference(t *testing.T) {
	const vocab, alpha = 7, 1.5
	prompts := [][]int32{{0, 3, 1, 4}, {0, 3, 1, 4}, {0, 3, 2}, {0, 3, 2, 5, 6}}
	deltaPrompts := [][]int32{{0, 5}, {0, 5}, {0, 6, 6}, {0, 6}}
	targets := [][]int32{{2, 2, 6, 1}, {5}, {1, 0, 4}, {3, 3}}
	for _, batched := range []bool{true, false} {
		user, delta := newHistoryLM(vocab, 11), newHistoryLM(vocab, 29)
		userLM := Track(user)
		if batched {
			userLM = Track(batchLM{user})
		}
		s := &Scorer{G: &Generator{User: userLM, UserTok: alphabet{}, Delta: Track(delta), DeltaTok: alphabet{}, Alpha: alpha}}
		for i := range prompts {
			alone, ctl, err := s.Score(context.Background(), prompts[i], deltaPrompts[i], targets[i])
			if err != nil {
				t.Fatal(err)
			}
			wantA, wantC := referenceScores(vocab, 11, 29, alpha, prompts[i], deltaPrompts[i], targets[i])
			if !closeTo(alone, wantA) || !closeTo(ctl, wantC) {
				t.Fatalf("batched=%v, answer %d: got %v / %v, want %v / %v", batched, i, alone, ctl, wantA, wantC)
			}
		}
		if batched && user.appends != 2 {
			// The first prompt and the third (a new one) need a prefill of
			// all but their last token; every answer is one batch.
			t.Errorf("%d token-wise decodes of the user model, want 2 prompt prefills", user.appends)
		}
		if batched && user.batches != len(prompts) {
			t.Errorf("%d batched decodes for %d answers, want one each", user.batches, len(prompts))
		}
	}
}

// TestScorerRewinds: a second answer to the same prompt decodes only its
// own tokens (and the prompt's last one), in one batch.
func TestScorerRewinds(t *testing.T) {
	user := newHistoryLM(7, 3)
	s := &Scorer{G: &Generator{User: Track(batchLM{user}), UserTok: alphabet{}}}
	prompt := []int32{0, 1, 2, 3, 4, 5}
	if _, _, err := s.Score(context.Background(), prompt, nil, []int32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	user.decoded, user.appends, user.batches = 0, 0, 0
	alone, controlled, err := s.Score(context.Background(), prompt, nil, []int32{6, 6})
	if err != nil {
		t.Fatal(err)
	}
	if user.decoded != 2 || user.appends != 0 || user.batches != 1 {
		t.Errorf("second answer: %d tokens in %d batches and %d single decodes; want 2 (the prompt's last token and the answer's first) in 1 batch",
			user.decoded, user.batches, user.appends)
	}
	want, _ := referenceScores(7, 3, 0, 0, prompt, nil, []int32{6, 6})
	if !closeTo(alone, want) || !slices.Equal(alone, controlled) {
		t.Errorf("got %v / %v, want %v for both (no delta)", alone, controlled, want)
	}
}

// TestScorerGenerate: a generation through the Scorer equals one on fresh
// contexts, and answers scored after it still rewind to the right place.
func TestScorerGenerate(t *testing.T) {
	const vocab, alpha = 7, 2
	prompt, deltaPrompt := []int32{0, 4, 4, 1}, []int32{0, 2}
	opt := Options{MaxTokens: 6}
	fresh := &Generator{User: newHistoryLM(vocab, 5), UserTok: alphabet{}, Delta: newHistoryLM(vocab, 8), DeltaTok: alphabet{}, Alpha: alpha}
	want, err := fresh.Generate(context.Background(), prompt, deltaPrompt, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	user, delta := newHistoryLM(vocab, 5), newHistoryLM(vocab, 8)
	s := &Scorer{G: &Generator{User: Track(batchLM{user}), UserTok: alphabet{}, Delta: Track(delta), DeltaTok: alphabet{}, Alpha: alpha}}
	for round := range 2 {
		if _, err := s.Generate(context.Background(), prompt, deltaPrompt, opt, true); err != nil {
			t.Fatal(err)
		}
		got, err := s.Generate(context.Background(), prompt, deltaPrompt, opt, false)
		if err != nil {
			t.Fatal(err)
		}
		if got.Text != want.Text || got.PromptTokens != len(prompt) {
			t.Fatalf("round %d: generated %q (%d prompt tokens), want %q (%d)", round, got.Text, got.PromptTokens, want.Text, len(prompt))
		}
		target := got.Tokens[:3]
		alone, ctl, err := s.Score(context.Background(), prompt, deltaPrompt, target)
		if err != nil {
			t.Fatal(err)
		}
		wantA, wantC := referenceScores(vocab, 5, 8, alpha, prompt, deltaPrompt, target)
		if !closeTo(alone, wantA) || !closeTo(ctl, wantC) {
			t.Fatalf("round %d: scores after a generation %v / %v, want %v / %v", round, alone, ctl, wantA, wantC)
		}
	}
}

func TestScorerErrors(t *testing.T) {
	s := &Scorer{G: &Generator{User: newHistoryLM(4, 1), UserTok: alphabet{}, Delta: newHistoryLM(4, 2), Alpha: 1}}
	for _, tc := range []struct {
		name                       string
		prompt, deltaPrompt, token []int32
	}{
		{"empty prompt", nil, []int32{0}, []int32{1}},
		{"empty delta prompt", []int32{0}, nil, []int32{1}},
		{"token outside the vocabulary", []int32{0}, []int32{0}, []int32{1, 4}},
	} {
		if _, _, err := s.Score(context.Background(), tc.prompt, tc.deltaPrompt, tc.token); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Score(ctx, []int32{0}, []int32{0}, []int32{1}); err != context.Canceled {
		t.Errorf("cancelled: got %v", err)
	}
}
