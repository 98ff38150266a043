package control

import (
	"math"
	"slices"
	"testing"
)

// steeredRef computes, from scratch, the steered log-probs after the given
// contexts: log_softmax(log_softmax(user) + alpha · delta), in float64.
func steeredRef(user, delta *fakeLM, userCtx, deltaCtx []int32, alpha float64) []float64 {
	ul := user.logits(userCtx)
	var dl []float32
	if delta != nil {
		dl = delta.logits(deltaCtx)
	}
	out := make([]float64, len(ul))
	norm := func(x []float64) {
		best := math.Inf(-1)
		for _, v := range x {
			best = math.Max(best, v)
		}
		var sum float64
		for _, v := range x {
			sum += math.Exp(v - best)
		}
		for i := range x {
			x[i] -= best + math.Log(sum)
		}
	}
	for i, v := range ul {
		out[i] = float64(v)
	}
	norm(out)
	for i := range out {
		if dl != nil {
			out[i] += alpha * float64(dl[i])
		}
	}
	norm(out)
	return out
}

// bestK is the reference top k: a full sort, ties to the lower id.
func bestK(lp []float64, k int) []int32 {
	ids := make([]int32, len(lp))
	for i := range ids {
		ids[i] = int32(i)
	}
	slices.SortStableFunc(ids, func(a, b int32) int {
		switch {
		case lp[a] > lp[b]:
			return -1
		case lp[a] < lp[b]:
			return 1
		}
		return 0
	})
	return ids[:k]
}

func checkLogprobs(t *testing.T, what string, l *Logprobs, i int, ref []float64, id int32) {
	t.Helper()
	if l.IDs[i] != id {
		t.Fatalf("%s %d: recorded token %d, want %d", what, i, l.IDs[i], id)
	}
	if got := float64(l.Logprob[i]); math.Abs(got-ref[id]) > 1e-4 {
		t.Fatalf("%s %d: log-prob %g, reference %g", what, i, got, ref[id])
	}
	ids, lps := l.Top(i)
	if want := bestK(ref, l.K); !slices.Equal(ids, want) {
		t.Fatalf("%s %d: top %v, reference %v", what, i, ids, want)
	}
	for j, t2 := range ids {
		if math.Abs(float64(lps[j])-ref[t2]) > 1e-4 {
			t.Fatalf("%s %d: top log-prob %g of %d, reference %g", what, i, lps[j], t2, ref[t2])
		}
	}
}

// TestLogprobsAreSteered: each generated token's log-prob and its top-k are
// those of the steered distribution, checked against a from-scratch
// computation on the whole context.
func TestLogprobsAreSteered(t *testing.T) {
	user, delta := newFakeLM(8, 11, 1.5), newFakeLM(8, 12, 1)
	g := &Generator{User: user.clone(), UserTok: letters, Delta: delta.clone(), DeltaTok: letters, Alpha: 0.7}
	prompt, dprompt := []int32{0, 3}, []int32{0, 5, 3}
	res := generate(t, g, prompt, dprompt, Options{MaxTokens: 12, Logprobs: true, TopLogprobs: 3, Sample: SampleOptions{Temperature: 1, Seed: 5}})
	if res.Logprobs.Len() != len(res.Tokens) || res.Logprobs.K != 3 {
		t.Fatalf("%d log-probs (k %d) for %d tokens", res.Logprobs.Len(), res.Logprobs.K, len(res.Tokens))
	}
	for i, u := range res.Tokens {
		ref := steeredRef(user, delta, append(slices.Clone(prompt), res.Tokens[:i]...), append(slices.Clone(dprompt), res.Tokens[:i]...), 0.7)
		checkLogprobs(t, "token", &res.Logprobs, i, ref, u)
	}
}

// TestScorePrompt: with ScorePrompt every prompt token after the first gets
// its steered log-prob (the delta reading the prompt's text), the
// continuation is the one a delta prompt spelling the same text gives, and
// MaxTokens -1 scores the prompt only.
func TestScorePrompt(t *testing.T) {
	user, delta := newFakeLM(8, 21, 1.5), newFakeLM(8, 22, 1)
	prompt := []int32{0, 3, 1, 5, 2, 2}
	mk := func() *Generator {
		return &Generator{User: user.clone(), UserTok: letters, Delta: delta.clone(), DeltaTok: letters, Alpha: 1.2}
	}
	res := generate(t, mk(), prompt, prompt[:1], Options{MaxTokens: 5, ScorePrompt: true, Logprobs: true, TopLogprobs: 2})
	if res.PromptLogprobs.Len() != len(prompt)-1 {
		t.Fatalf("%d prompt log-probs for %d prompt tokens", res.PromptLogprobs.Len(), len(prompt))
	}
	for i := 1; i < len(prompt); i++ {
		ref := steeredRef(user, delta, prompt[:i], prompt[:i], 1.2)
		checkLogprobs(t, "prompt token", &res.PromptLogprobs, i-1, ref, prompt[i])
	}
	plain := generate(t, mk(), prompt, prompt, Options{MaxTokens: 5})
	if !slices.Equal(res.Tokens, plain.Tokens) || res.Text != plain.Text {
		t.Fatalf("after scoring the prompt: %v %q; plain generation %v %q", res.Tokens, res.Text, plain.Tokens, plain.Text)
	}
	only := generate(t, mk(), prompt, prompt[:1], Options{MaxTokens: -1, ScorePrompt: true})
	if len(only.Tokens) != 0 || only.Text != "" || only.PromptLogprobs.Len() != len(prompt)-1 {
		t.Fatalf("MaxTokens -1: %d tokens %q, %d prompt log-probs", len(only.Tokens), only.Text, only.PromptLogprobs.Len())
	}
	for i := range only.PromptLogprobs.Logprob {
		if only.PromptLogprobs.Logprob[i] != res.PromptLogprobs.Logprob[i] {
			t.Fatalf("prompt log-prob %d differs between MaxTokens -1 and 5", i)
		}
	}
}

// TestPenalties: logit bias bans or forces a token; a frequency penalty
// stops repeats; repeat_penalty keeps the prompt's tokens out; none of
// them changes the reported log-probs.
func TestPenalties(t *testing.T) {
	user := newFakeLM(8, 31, 1)
	gen := func(p Penalties) Result {
		return generate(t, &Generator{User: user.clone(), UserTok: letters}, []int32{0, 1, 2}, nil, Options{MaxTokens: 8, Penalties: p, Logprobs: true})
	}
	free := gen(Penalties{})
	banned := free.Tokens[0]
	res := gen(Penalties{LogitBias: map[int32]float32{banned: -100}})
	if slices.Contains(res.Tokens, banned) {
		t.Errorf("logit_bias -100 on %d: still generated in %v", banned, res.Tokens)
	}
	res = gen(Penalties{LogitBias: map[int32]float32{6: 100}})
	if want := slices.Repeat([]int32{6}, 8); !slices.Equal(res.Tokens, want) {
		t.Errorf("logit_bias +100 on 6: %v", res.Tokens)
	}
	for i, u := range res.Tokens {
		ref := steeredRef(user, nil, append([]int32{0, 1, 2}, res.Tokens[:i]...), nil, 0)
		if math.Abs(float64(res.Logprobs.Logprob[i])-ref[u]) > 1e-4 {
			t.Fatalf("token %d: log-prob %g under a logit bias, want the model's own %g", i, res.Logprobs.Logprob[i], ref[u])
		}
	}
	res = gen(Penalties{Frequency: 100})
	seen := map[int32]bool{}
	for _, u := range res.Tokens {
		if seen[u] {
			t.Errorf("frequency_penalty 100: %d repeated in %v", u, res.Tokens)
		}
		seen[u] = true
	}
	res = gen(Penalties{Presence: 100})
	if len(res.Tokens) != 8 || len(seen) != 8 {
		t.Errorf("presence_penalty 100: %v", res.Tokens)
	}
	res = gen(Penalties{Repeat: 1000, RepeatLastN: 3})
	if slices.ContainsFunc(res.Tokens[:1], func(u int32) bool { return u <= 2 }) {
		t.Errorf("repeat_penalty 1000 over the last 3: first token %d is one of the prompt's", res.Tokens[0])
	}
}

// TestTopKAllocatesNothing: the per-token selection of the top log-probs
// is a partial selection into reused storage.
func TestTopKAllocatesNothing(t *testing.T) {
	scores := make([]float32, 32000)
	for i := range scores {
		scores[i] = float32((i*7919)%32000) / 100
	}
	var st logprobState
	st.heap = make([]int32, 0, 20)
	l := Logprobs{K: 20}
	l.reserve(200)
	scratch := make([]float32, len(scores))
	if n := testing.AllocsPerRun(100, func() {
		st.normalise(scores, scratch)
		st.record(&l, scores, 5)
	}); n != 0 {
		t.Fatalf("recording a token's log-probs allocates %v times", n)
	}
	ids, _ := l.Top(0)
	want := []int32{}
	for v := 31999; len(want) < 20; v-- {
		for i := range scores {
			if int(scores[i]*100+0.5) == v {
				want = append(want, int32(i))
			}
		}
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("top 20 %v, want %v", ids, want)
	}
}

// batchFake is a fakeLM that also decodes every position at once, as
// llama.cpp does for a scored prompt.
type batchFake struct{ *fakeLM }

func (b batchFake) AppendAll(tokens []int32, rows []float32) error {
	n := b.VocabSize()
	for i := range tokens {
		logits, _ := b.Append(tokens[i : i+1])
		copy(rows[i*n:(i+1)*n], logits)
	}
	b.calls -= len(tokens) - 1 // one batched call
	return nil
}

// TestScorePromptBatched: a user model that decodes a prompt in batches
// (several chunks of it here) gives the same prompt log-probs and the same
// continuation as token by token, in fewer calls.
func TestScorePromptBatched(t *testing.T) {
	user, delta := newFakeLM(8, 41, 1.5), newFakeLM(8, 42, 1)
	prompt := []int32{0}
	for i := 0; i < 2*promptChunk+5; i++ {
		prompt = append(prompt, int32(1+(i*5)%7))
	}
	opt := Options{MaxTokens: 6, ScorePrompt: true, Logprobs: true, TopLogprobs: 3}
	plainUser := user.clone()
	plain := generate(t, &Generator{User: plainUser, UserTok: letters, Delta: delta.clone(), DeltaTok: letters, Alpha: 0.8}, prompt, prompt[:1], opt)
	batchUser := batchFake{user.clone()}
	batched := generate(t, &Generator{User: batchUser, UserTok: letters, Delta: delta.clone(), DeltaTok: letters, Alpha: 0.8}, prompt, prompt[:1], opt)
	if !slices.Equal(plain.PromptLogprobs.Logprob, batched.PromptLogprobs.Logprob) || !slices.Equal(plain.PromptLogprobs.TopIDs, batched.PromptLogprobs.TopIDs) {
		t.Fatal("batched prompt log-probs differ from token-by-token ones")
	}
	if !slices.Equal(plain.Tokens, batched.Tokens) || !slices.Equal(plain.Logprobs.Logprob, batched.Logprobs.Logprob) {
		t.Fatalf("continuation after a batched prompt %v, token by token %v", batched.Tokens, plain.Tokens)
	}
	if !slices.Equal(plainUser.ctx, batchUser.ctx) {
		t.Fatalf("user contexts differ:\n%v\n%v", batchUser.ctx, plainUser.ctx)
	}
	if batchUser.calls >= plainUser.calls-2*promptChunk {
		t.Errorf("batched: %d user calls, token by token %d", batchUser.calls, plainUser.calls)
	}
}
