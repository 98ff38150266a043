package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/cmc-dev/cmc/delta/kernels"
	"github.com/cmc-dev/cmc/vocab"
)

// TokenMap sends user token ids to delta token ids (METHOD.md, PM-MinED).
type TokenMap struct {
	// ToDelta[u] is the delta token of user token u, or -1 when unmapped.
	ToDelta []int32
	// Exact[u] says that ToDelta[u] stands for exactly the same text (or
	// the same byte, or the same special role: pmmined's Map.Exact), so the
	// delta's context can be extended with it instead of re-tokenising the
	// text.
	Exact []bool
}

// Generator runs a user LLM with a delta's logits added to its
// log-probabilities:
//
//	score[u] = log_softmax(user)[u] + Alpha · delta[ToDelta[u]]   (0 when unmapped)
type Generator struct {
	User    LM
	UserTok vocab.Tokenizer
	// EndOfGeneration reports the user's end-of-generation tokens.
	EndOfGeneration func(id int32) bool

	// Delta is nil to run the user model alone.
	Delta    LM
	DeltaTok vocab.Tokenizer
	// Map is nil when both models share one vocabulary (the identity map).
	Map   *TokenMap
	Alpha float32
	// LeadingSpace[u] says that user token u's text starts with a space
	// (LeadingSpace): Options.Heal needs it; nil leaves prompts as they are.
	LeadingSpace []bool

	scores, scratch []float32
	steered         []float32 // the scores before penalties, for log-probs
	rows            []float32 // a chunk of a scored prompt's user logits
	lp              logprobState
	penalties       penaltyState
	deltaPromptLast [1]int32
	// deltaEnds, anchorIDs and piece: advanceDelta's bookkeeping.
	deltaEnds []int
	anchorIDs []int32
	piece     []byte
}

// AbortableLM is an LM whose decode in progress can be abandoned: when the
// context given is done, Append returns an error wrapping its error soon
// after (llama.cpp's abort callback), so that a long prefill answers Ctrl-C,
// a server's timeout or its shutdown. Generate watches its own context so.
type AbortableLM interface {
	LM
	// SetAbortContext watches ctx; nil stops watching.
	SetAbortContext(ctx context.Context)
}

// promptChunk is how many prompt positions a BatchLM user model decodes at
// once when the prompt is scored: few enough that their rows of logits stay
// small (32 × a 128k vocabulary is 16 MB).
const promptChunk = 32

// Options bound one generation.
type Options struct {
	// MaxTokens is the most tokens to generate: 0 means no limit, a
	// negative value none at all (to score a prompt only, with ScorePrompt).
	MaxTokens int
	Stop      []string // generation ends before the earliest of these strings in the text
	Sample    SampleOptions
	// Penalties shift the scores before each choice.
	Penalties Penalties
	// Heal drops a lone space that ends both prompts and starts the text
	// with a token that begins with a space (heal.go): for prompts that a
	// template rendered ("Answer: "), whose space no one meant as a token.
	// A plain completion continues its text exactly as given, so that a
	// client that appends the log-probs' token texts gets the text back.
	Heal bool

	// Logprobs records every generated token's log-probability
	// (Result.Logprobs), with the TopLogprobs most likely tokens of its step
	// (at most MaxTopLogprobs). The end-of-generation token that ends the
	// text is recorded too, though it is not in Result.Tokens.
	Logprobs    bool
	TopLogprobs int
	// ScorePrompt records the log-probability of every prompt token after
	// the first (Result.PromptLogprobs), decoding the prompt token by token.
	// The delta then follows the prompt's text as it follows generated
	// text: deltaPrompt must be the delta's tokens of the first prompt
	// token's text (its BOS).
	ScorePrompt bool
}

// Result summarises one generation.
type Result struct {
	Text         string
	Tokens       []int32 // the user tokens generated
	FinishReason string  // "stop" (end token or stop string), "length" (MaxTokens) or "cancelled"
	PromptTokens int
	// CachedTokens is how many prompt tokens the user model's KV cache
	// held already (the OpenAI API's prompt_tokens_details.cached_tokens).
	CachedTokens int
	// Logprobs and PromptLogprobs are recorded when Options ask for them.
	Logprobs, PromptLogprobs Logprobs
	// Healed says that the prompts ended in a lone space, which was dropped
	// and which the first generated token carries (heal.go): Text does not
	// repeat it.
	Healed bool
	// DeltaRetokenised counts the tokens after which the delta's context had
	// to be rebuilt from the text (inexact map entries); DeltaRedecoded the
	// delta tokens decoded again because of it.
	DeltaRetokenised, DeltaRedecoded int
}

// Generate continues userPrompt (user token ids, BOS included) and, when a
// delta is set, deltaPrompt (the delta's own prompt ids). Each model's
// context keeps the longest prefix it shares with its prompt when the model
// knows what it holds (a TokenLM: Tracked, DeltaLM), and starts empty
// otherwise. It calls emit with
// each new piece of text, in whole UTF-8 characters, holding back what could
// be the start of a stop string.
func (g *Generator) Generate(ctx context.Context, userPrompt, deltaPrompt []int32, opt Options, emit func(piece string) error) (Result, error) {
	res := Result{PromptTokens: len(userPrompt)}
	if len(userPrompt) == 0 {
		return res, errors.New("generate: empty prompt")
	}
	useDelta := g.Delta != nil && g.Alpha != 0
	if useDelta && len(deltaPrompt) == 0 {
		return res, errors.New("generate: empty delta prompt")
	}
	nU := g.User.VocabSize()
	if useDelta && g.Map == nil && g.Delta.VocabSize() != nU {
		return res, fmt.Errorf("generate: user vocabulary has %d tokens, delta %d: a token map is needed", nU, g.Delta.VocabSize())
	}
	if opt.TopLogprobs < 0 || opt.TopLogprobs > MaxTopLogprobs {
		return res, fmt.Errorf("generate: %d top log-probs asked for; at most %d", opt.TopLogprobs, MaxTopLogprobs)
	}
	scores := g.buffers(nU)
	sampler := NewSampler(opt.Sample, nU)
	out := newStopWriter(opt.Stop, emit)
	penalise := opt.Penalties.active()
	if penalise {
		g.penalties.reset(nU)
	}
	if opt.Logprobs || opt.ScorePrompt {
		if cap(g.lp.heap) < opt.TopLogprobs {
			g.lp.heap = make([]int32, 0, opt.TopLogprobs)
		}
		res.Logprobs.K, res.PromptLogprobs.K = opt.TopLogprobs, opt.TopLogprobs
	}
	if opt.Logprobs && opt.MaxTokens > 0 {
		res.Logprobs.reserve(opt.MaxTokens + 1)
	}

	// Both contexts keep what they share with the new prompts (a chat's
	// earlier turns, a completion that extends an earlier one): only the
	// rest is decoded. With ScorePrompt the prompt after its first token is
	// forced, one token per step, instead of sampled, from an empty context,
	// and is not healed: each of its tokens is scored as it is.
	if opt.Heal && !opt.ScorePrompt {
		userPrompt, deltaPrompt, res.Healed = g.healPrompts(userPrompt, deltaPrompt, useDelta)
	}
	userNext := userPrompt
	var forced []int32
	if opt.ScorePrompt {
		if err := g.User.Trim(0); err != nil {
			return res, fmt.Errorf("generate: user model: %w", err)
		}
		userNext, forced = userPrompt[:1], userPrompt[1:]
		res.PromptLogprobs.reserve(len(forced))
	} else {
		keep, err := reusePrefix(g.User, userPrompt)
		if err != nil {
			return res, fmt.Errorf("generate: user model: %w", err)
		}
		res.CachedTokens, userNext = keep, userPrompt[keep:]
	}
	var deltaNext []int32
	var deltaGen []int32 // delta tokens of the generated text, as in its context
	if useDelta {
		keep, err := 0, error(nil)
		if opt.ScorePrompt {
			if err := g.Delta.Trim(0); err != nil {
				return res, fmt.Errorf("generate: delta model: %w", err)
			}
		} else if keep, err = reusePrefix(g.Delta, deltaPrompt); err != nil {
			return res, fmt.Errorf("generate: delta model: %w", err)
		}
		deltaNext = deltaPrompt[keep:]
		if err := g.beginDelta(deltaPrompt); err != nil {
			return res, err
		}
	}
	deltaBase := len(deltaPrompt) // delta context length before the generated part
	if a, ok := g.User.(AbortableLM); ok {
		a.SetAbortContext(ctx)
		defer a.SetAbortContext(nil)
	}
	// A user model that returns every position's logits decodes a scored
	// prompt in chunks rather than token by token.
	batch, _ := g.User.(BatchLM)
	if batch != nil && len(forced) > 0 && len(g.rows) < promptChunk*nU {
		g.rows = make([]float32, promptChunk*nU)
	}
	// The delta decodes on its own goroutine while the user model decodes:
	// both need only the token chosen last.
	var bg *backgroundDecoder
	if useDelta {
		bg = startBackground(g.Delta)
		defer bg.stop()
	}
	// text is what the delta's context spells after its prompt: the forced
	// prompt tokens, then the generated ones.
	var text []byte
	for step := 0; ; step++ {
		forcing := step < len(forced)
		if !forcing && (opt.MaxTokens < 0 || opt.MaxTokens > 0 && len(res.Tokens) >= opt.MaxTokens) {
			break
		}
		if err := ctx.Err(); err != nil {
			res.FinishReason = "cancelled"
			res.Text = out.kept()
			return res, err
		}
		if useDelta {
			bg.decode(deltaNext)
		}
		var rows []float32 // this step's user logits, when decoded already
		if forcing && batch != nil {
			i := step % promptChunk
			if i == 0 {
				chunk := userPrompt[step:min(step+promptChunk, len(forced))]
				if err := batch.AppendAll(chunk, g.rows[:len(chunk)*nU]); err != nil {
					return res, fmt.Errorf("generate: user model: %w", err)
				}
			}
			rows = g.rows[i*nU : (i+1)*nU]
		}
		if err := g.step(scores, userNext, rows, bg, step == 0); err != nil {
			return res, err
		}
		if res.Healed && step == 0 {
			g.keepLeadingSpace(scores)
		}
		var u int32
		if forcing {
			u = forced[step]
			if u < 0 || int(u) >= nU {
				return res, fmt.Errorf("generate: prompt token %d at index %d is outside the vocabulary (size %d)", u, step+1, nU)
			}
			g.lp.normalise(scores, g.scratch)
			g.lp.record(&res.PromptLogprobs, scores, u)
			userNext = forced[step : step+1]
		} else {
			if opt.Logprobs {
				g.lp.normalise(scores, g.scratch)
				if penalise {
					// The log-probs are the models' own: keep the scores
					// as they were before the penalties shift them.
					copy(g.steered[:nU], scores)
				}
			}
			if penalise {
				g.penalties.apply(opt.Penalties, scores, userPrompt, res.Tokens)
			}
			u = sampler.Sample(scores)
			if opt.Logprobs {
				steered := scores
				if penalise {
					steered = g.steered[:nU]
				}
				g.lp.record(&res.Logprobs, steered, u)
			}
			if g.EndOfGeneration != nil && g.EndOfGeneration(u) {
				res.FinishReason = "stop"
				break
			}
			res.Tokens = append(res.Tokens, u)
			if penalise {
				g.penalties.generated(u)
			}
			userNext = res.Tokens[len(res.Tokens)-1:]
		}
		start := len(text)
		text = g.UserTok.AppendPiece(text, u, false)
		if res.Healed && step == 0 {
			start++ // the prompt's space, which the delta reads and the caller wrote
		}
		if !forcing {
			if stopped, err := out.write(text[start:]); err != nil || stopped {
				res.FinishReason = "stop"
				res.Text = out.kept()
				return res, err
			}
		}
		if useDelta {
			var err error
			if deltaNext, deltaGen, err = g.advanceDelta(u, text, deltaBase, deltaGen, &res); err != nil {
				return res, err
			}
		}
	}
	if res.FinishReason == "" {
		res.FinishReason = "length"
	}
	if err := out.flush(); err != nil {
		return res, err
	}
	res.Text = out.kept()
	return res, nil
}

// step decodes the user's next tokens, unless decoded holds their logits
// already (the delta's are on their way through work), and writes the
// steered scores. On the first step both
// models' logits must be finite.
func (g *Generator) step(scores []float32, userNext []int32, decoded []float32, bg *backgroundDecoder, first bool) error {
	logits, userErr := decoded, error(nil)
	if logits == nil {
		logits, userErr = g.User.Append(userNext)
	}
	if userErr == nil && first {
		userErr = checkFinite("the user model", logits)
	}
	if userErr == nil {
		logSoftmax(scores, logits, g.scratch)
	}
	if bg != nil {
		// Always wait for the delta, so that it is idle when we return.
		d := bg.wait()
		if userErr != nil {
			return fmt.Errorf("generate: user model: %w", userErr)
		}
		if d.err == nil && first {
			d.err = checkFinite("the delta model", d.logits)
		}
		if d.err != nil {
			return fmt.Errorf("generate: delta model: %w", d.err)
		}
		g.addDelta(scores, d.logits)
	}
	if userErr != nil {
		return fmt.Errorf("generate: user model: %w", userErr)
	}
	return nil
}

// backgroundDecoder runs a model's decodes on a goroutine of its own, one
// at a time, so that the delta decodes while the user model (local or
// served) computes the same step: both need only the token chosen last.
type backgroundDecoder struct {
	work chan []int32
	done chan deltaResult
}

type deltaResult struct {
	logits []float32
	err    error
}

func startBackground(lm LM) *backgroundDecoder {
	b := &backgroundDecoder{work: make(chan []int32), done: make(chan deltaResult, 1)}
	go func() {
		for tokens := range b.work {
			logits, err := lm.Append(tokens)
			b.done <- deltaResult{logits, err}
		}
	}()
	return b
}

// decode starts decoding tokens; wait returns its logits.
func (b *backgroundDecoder) decode(tokens []int32) { b.work <- tokens }
func (b *backgroundDecoder) wait() deltaResult     { return <-b.done }

// stop ends the goroutine once it has finished its decode.
func (b *backgroundDecoder) stop() { close(b.work) }

// buffers returns the score buffer for a vocabulary of n tokens, reusing
// the previous generation's.
func (g *Generator) buffers(n int) []float32 {
	if cap(g.scores) < n {
		g.scores, g.scratch, g.steered = make([]float32, n), make([]float32, n), make([]float32, n)
	}
	return g.scores[:n]
}

// addDelta adds Alpha × the delta's logits to the user's log-probs.
func (g *Generator) addDelta(scores, dl []float32) {
	a := g.Alpha
	if g.Map == nil {
		for u := range scores {
			scores[u] += a * dl[u]
		}
		return
	}
	for u, d := range g.Map.ToDelta[:len(scores)] {
		if d >= 0 {
			scores[u] += a * dl[d]
		}
	}
}

// deltaTail is where a re-tokenisation for the delta starts reading the
// generated text: at the token boundary at least this many bytes before its
// end. Tokenizers look a word or so around a change, and re-reading the
// whole text at every inexact token would cost a long generation O(n²).
const deltaTail = 32

// deltaAnchor goes before a re-tokenised text so that the delta's
// tokenizer reads it as the continuation it is, not as the start of a text
// (SentencePiece would give it a space it does not have). The delta was
// trained on responses tokenised after their prompt (data.TokenizeJoined):
// "Once" after a newline is "Once", " Once" is "▁Once". Exactly mapped
// tokens follow that rule by construction; with the anchor the
// re-tokenised ones do too, so the delta's context for a text does not
// depend on which path ran first.
const deltaAnchor = "\n"

// beginDelta readies the per-generation bookkeeping of the delta's view of
// the generated text.
func (g *Generator) beginDelta(deltaPrompt []int32) error {
	g.deltaPromptLast[0] = deltaPrompt[len(deltaPrompt)-1]
	g.deltaEnds = g.deltaEnds[:0]
	if g.Map == nil || g.anchorIDs != nil {
		return nil // same vocabulary (the delta never re-tokenises), or known
	}
	ids, err := g.DeltaTok.Tokenize(deltaAnchor, false, false)
	if err != nil {
		return fmt.Errorf("generate: tokenise for the delta: %w", err)
	}
	g.anchorIDs = append(make([]int32, 0, len(ids)), ids...)
	return nil
}

// advanceDelta brings the delta's context in line with the generated text
// after user token u, returning the delta tokens still to decode. Exactly
// mapped tokens are appended; otherwise the tail of the text is tokenised
// again for the delta and its cache trimmed back to the longest still-valid
// prefix. gen is the delta tokens of the generated text so far, nil at the
// start of a generation.
func (g *Generator) advanceDelta(u int32, text []byte, base int, gen []int32, res *Result) (next, newGen []int32, err error) {
	// g.deltaEnds[i] is the byte offset in text where gen[i] ends
	// (unknown: math.MaxInt, so that no re-tokenisation starts after it).
	g.deltaEnds = g.deltaEnds[:min(len(g.deltaEnds), len(gen))]
	for len(g.deltaEnds) < len(gen) {
		g.deltaEnds = append(g.deltaEnds, math.MaxInt)
	}
	if g.Map == nil || g.Map.Exact[u] {
		d := u
		if g.Map != nil {
			d = g.Map.ToDelta[u]
		}
		gen = append(gen, d)
		g.appendEnd(d)
		return gen[len(gen)-1:], gen, nil
	}
	res.DeltaRetokenised++
	k := len(gen) // gen[:k] stays as it is
	for k > 0 && g.deltaEnds[k-1] > len(text)-deltaTail {
		k--
	}
	from := 0
	if k > 0 {
		from = g.deltaEnds[k-1]
	}
	ids, err := g.tokenizeContinuation(text[from:])
	if err != nil {
		return nil, gen, fmt.Errorf("generate: tokenise for the delta: %w", err)
	}
	keep := k + commonPrefix(gen[k:], ids)
	if keep == k+len(ids) {
		// The new text added no delta token of its own (an empty piece):
		// decode the last one again to get fresh logits.
		keep--
	}
	if keep < 0 {
		// The text so far yields no delta token at all: go back to the
		// logits after the prompt by decoding its last token again.
		if err := g.Delta.Trim(base - 1); err != nil {
			return nil, gen, fmt.Errorf("generate: trim delta cache: %w", err)
		}
		res.DeltaRedecoded += len(gen) + 1
		g.deltaEnds = g.deltaEnds[:0]
		return g.deltaPromptLast[:], gen[:0], nil
	}
	if err := g.Delta.Trim(base + keep); err != nil {
		return nil, gen, fmt.Errorf("generate: trim delta cache: %w", err)
	}
	res.DeltaRedecoded += len(gen) - keep
	gen = append(gen[:k], ids...)
	g.deltaEnds = g.deltaEnds[:k]
	for _, d := range ids {
		g.appendEnd(d)
	}
	if k < len(gen) && g.deltaEnds[len(gen)-1] != len(text) {
		// The pieces do not spell the text (an unknown character): no
		// later re-tokenisation may start inside them.
		for i := k; i < len(gen); i++ {
			g.deltaEnds[i] = math.MaxInt
		}
	}
	return gen[keep:], gen, nil
}

// appendEnd records where delta token d, just appended, ends in the text.
func (g *Generator) appendEnd(d int32) {
	end := 0
	if n := len(g.deltaEnds); n > 0 {
		end = g.deltaEnds[n-1]
	}
	if end != math.MaxInt {
		g.piece = g.DeltaTok.AppendPiece(g.piece[:0], d, false)
		end += len(g.piece)
	}
	g.deltaEnds = append(g.deltaEnds, end)
}

// tokenizeContinuation tokenises text for the delta as text that follows
// other text (after deltaAnchor, whose tokens are then dropped).
func (g *Generator) tokenizeContinuation(text []byte) ([]int32, error) {
	ids, err := g.DeltaTok.Tokenize(deltaAnchor+string(text), false, false)
	if err != nil {
		return nil, err
	}
	if len(ids) >= len(g.anchorIDs) && commonPrefix(ids, g.anchorIDs) == len(g.anchorIDs) {
		return ids[len(g.anchorIDs):], nil
	}
	// The anchor merged with the text: tokenise the text on its own.
	return g.DeltaTok.Tokenize(string(text), false, false)
}

// checkFinite fails when logits hold a NaN or an infinity: a model with
// corrupt (NaN) weights would otherwise "choose" token 0 or nothing at all
// and end with empty text and no error. It runs once, on the first step:
// such weights poison every row.
func checkFinite(who string, logits []float32) error {
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%s's logits at the first step are not finite (logit %d is %g): are its weights corrupt (NaN)?", who, i, v)
		}
	}
	return nil
}

func commonPrefix(a, b []int32) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// logSoftmax writes log_softmax(logits) into dst (which may be logits
// itself), using scratch, as long as logits, for the exponentials.
func logSoftmax(dst, logits, scratch []float32) {
	best := float32(math.Inf(-1))
	for _, v := range logits {
		best = max(best, v)
	}
	scratch = scratch[:len(logits)]
	copy(scratch, logits)
	sum := kernels.ExpShifted(scratch, best)
	shift := best + float32(math.Log(float64(sum)))
	for i, v := range logits {
		dst[i] = v - shift
	}
}

// stopWriter passes text on in whole UTF-8 characters and holds back any
// tail that could still grow into a stop string.
type stopWriter struct {
	stops   []string
	emit    func(string) error
	pending []byte // received but not yet emitted
	emitted []byte // everything emitted, for Result.Text
}

func newStopWriter(stops []string, emit func(string) error) *stopWriter {
	var keep []string
	for _, s := range stops {
		if s != "" {
			keep = append(keep, s)
		}
	}
	return &stopWriter{stops: keep, emit: emit}
}

// write takes new bytes; it reports true when a stop string appeared (the
// text before it has then been emitted).
func (w *stopWriter) write(p []byte) (bool, error) {
	w.pending = append(w.pending, p...)
	// The stop string that starts earliest in the text wins, whatever its
	// place in the list: the text before it is the text before any stop.
	first := -1
	for _, s := range w.stops {
		if i := bytes.Index(w.pending, []byte(s)); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		w.pending = w.pending[:first]
		return true, w.flush()
	}
	hold := 0
	for _, s := range w.stops {
		for n := min(len(s)-1, len(w.pending)); n > hold; n-- {
			if bytes.HasSuffix(w.pending, []byte(s[:n])) {
				hold = n
				break
			}
		}
	}
	// Never split a UTF-8 character.
	cut := len(w.pending) - hold
	for cut > 0 && !utf8.FullRune(w.pending[lastRuneStart(w.pending[:cut]):cut]) {
		cut = lastRuneStart(w.pending[:cut])
	}
	return false, w.send(cut)
}

func (w *stopWriter) flush() error { return w.send(len(w.pending)) }

func (w *stopWriter) send(n int) error {
	if n <= 0 {
		return nil
	}
	piece := string(w.pending[:n])
	w.emitted = append(w.emitted, w.pending[:n]...)
	w.pending = append(w.pending[:0], w.pending[n:]...)
	if w.emit == nil {
		return nil
	}
	return w.emit(piece)
}

func (w *stopWriter) kept() string { return string(w.emitted) }

// lastRuneStart is the index where the last (possibly partial) UTF-8
// character of p starts.
func lastRuneStart(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			return i
		}
	}
	return max(0, len(p)-1)
}
