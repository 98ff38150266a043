package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cmc-dev/cmc/vocab"
)

// Candidate is one token a remote engine offers for the next position. It is
// known by its text: the engine's vocabulary is not at hand.
type Candidate struct {
	Text    string  // the bytes the token stands for
	LogProb float64 // log-probability under the user model alone (over its whole vocabulary)
	End     bool    // the token ends the text (end of sequence or of a turn)
}

// RemoteLM is a user model served by another engine. TopK returns the k
// most likely next tokens after text (a few more are allowed), most likely
// first.
type RemoteLM interface {
	TopK(ctx context.Context, text string, k int) ([]Candidate, error)
}

// TextMap maps the text of a user token onto the delta's vocabulary
// (PM-MinED on text: pmmined.TextMapper). exact reports that the delta
// token stands for exactly that text, so the delta's context can be
// extended with it instead of re-tokenising.
type TextMap func(text string) (d int32, exact bool)

// RemoteGenerator steers a remote user model with a local delta. The engine
// gives log-probabilities only for its top K tokens, so only those can be
// chosen:
//
//	score[i] = logprob_user(c_i) + Alpha · delta[map(c_i)]   for the K candidates c_i
//
// where map(c_i) is the delta token PM-MinED picks for the candidate's text
// (its end-of-sequence token for an end candidate; no shift when unmapped).
// With Alpha 0 and greedy sampling it picks the engine's own greedy token.
type RemoteGenerator struct {
	User RemoteLM
	K    int // candidates asked for per token

	// Delta is nil to run the user model alone.
	Delta    LM
	DeltaTok vocab.Tokenizer
	DeltaEOS int32 // the delta token an end candidate maps to (-1: none)
	Map      TextMap
	Alpha    float32

	// step carries the delta bookkeeping of the local path: each step, the
	// candidates are a vocabulary of their own, and step.Map maps them.
	step    Generator
	stepMap TokenMap
	cache   map[string]mappedText
}

type mappedText struct {
	d     int32
	exact bool
}

// RemoteResult summarises one remote generation.
type RemoteResult struct {
	// Result.Tokens stays empty: the engine's tokens are known by text only.
	Result
	// Pieces holds the text of each generated token; Ranks its rank among
	// the engine's candidates (0: the engine's own first choice), so a rank
	// above 0 is a token the delta (or sampling) chose instead.
	Pieces []string
	Ranks  []int
}

// Generate continues prompt, the user model's prompt as text, and, when a
// delta is set, deltaPrompt (the delta's own prompt ids). It calls emit with
// each new piece of text as Generator.Generate does. Candidates that hold
// part of a character (invalid UTF-8, or U+FFFD where the engine printed
// one) are never chosen: the next request could not carry the text in JSON.
func (g *RemoteGenerator) Generate(ctx context.Context, prompt string, deltaPrompt []int32, opt Options, emit func(piece string) error) (RemoteResult, error) {
	var res RemoteResult
	if g.K < 1 {
		return res, fmt.Errorf("remote generate: top-k is %d, want at least 1", g.K)
	}
	useDelta := g.Delta != nil && g.Alpha != 0
	if useDelta && len(deltaPrompt) == 0 {
		return res, errors.New("remote generate: empty delta prompt")
	}
	if useDelta && g.Map == nil {
		return res, errors.New("remote generate: a delta needs a text map")
	}
	s := &g.step
	// Healing as Generator.Generate heals (heal.go), by text: the engine
	// is asked after the prompt without its space, and only candidates
	// that start with one may come first.
	if opt.Heal && len(prompt) > 1 && strings.HasSuffix(prompt, " ") {
		if d, ok := healDelta(g.DeltaTok, deltaPrompt, useDelta); ok {
			prompt, deltaPrompt, res.Healed = prompt[:len(prompt)-1], d, true
		}
	}
	deltaNext, deltaBase, err := g.begin(useDelta, deltaPrompt)
	if err != nil {
		return res, err
	}
	var deltaGen []int32
	sampler := NewSampler(opt.Sample, g.K+1)
	out := newStopWriter(opt.Stop, emit)
	// The delta decodes while the engine answers: both need only the text
	// chosen last.
	var bg *backgroundDecoder
	if useDelta {
		bg = startBackground(g.Delta)
		defer bg.stop()
	}
	text := []byte(prompt)
	gen := len(text) // where the generated text starts
	for opt.MaxTokens <= 0 || len(res.Pieces) < opt.MaxTokens {
		if err := ctx.Err(); err != nil {
			res.FinishReason = "cancelled"
			res.Text = out.kept()
			return res, err
		}
		if useDelta {
			bg.decode(deltaNext)
		}
		cands, err := g.User.TopK(ctx, string(text), g.K)
		var dl []float32
		if useDelta {
			d := bg.wait()
			if err == nil && d.err != nil {
				return res, fmt.Errorf("remote generate: delta model: %w", d.err)
			}
			dl = d.logits
		}
		if err != nil {
			return res, fmt.Errorf("remote generate: user model: %w", err)
		}
		if len(cands) == 0 {
			return res, errors.New("remote generate: the engine offered no candidates")
		}
		scores := g.scoreCandidates(cands, dl, true)
		first := res.Healed && len(res.Pieces) == 0
		if first {
			for j, c := range cands {
				if c.End || len(c.Text) == 0 || c.Text[0] != ' ' {
					scores[j] = float32(math.Inf(-1))
				}
			}
		}
		i := sampler.Sample(scores)
		if math.IsInf(float64(scores[i]), -1) {
			if first {
				return res, fmt.Errorf("remote generate: the prompt ends in a space and none of the engine's %d candidates after it starts with one", len(cands))
			}
			return res, fmt.Errorf("remote generate: none of the engine's %d candidates is whole UTF-8 text", len(cands))
		}
		c := cands[i]
		if c.End {
			res.FinishReason = "stop"
			break
		}
		res.Pieces = append(res.Pieces, c.Text)
		res.Ranks = append(res.Ranks, int(i))
		start := len(text)
		text = append(text, c.Text...)
		if first {
			start++ // the prompt's space
		}
		if stopped, err := out.write(text[start:]); err != nil || stopped {
			res.FinishReason = "stop"
			res.Text = out.kept()
			return res, err
		}
		if useDelta {
			deltaNext, deltaGen, err = s.advanceDelta(i, text[gen:], deltaBase, deltaGen, &res.Result)
			if err != nil {
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

// begin readies the per-step generator for a new text and returns the
// delta tokens to decode first (its prompt) and the delta's context length
// after them.
func (g *RemoteGenerator) begin(useDelta bool, deltaPrompt []int32) (deltaNext []int32, deltaBase int, err error) {
	s := &g.step
	*s = Generator{Delta: g.Delta, DeltaTok: g.DeltaTok, Alpha: g.Alpha, Map: &g.stepMap,
		scores: s.scores, scratch: s.scratch}
	if g.cache == nil {
		g.cache = make(map[string]mappedText)
	}
	if !useDelta {
		return nil, 0, nil
	}
	if err := s.beginDelta(deltaPrompt); err != nil {
		return nil, 0, err
	}
	return deltaPrompt, g.Delta.Len() + len(deltaPrompt), nil
}

// scoreCandidates returns the candidates' scores: the engine's
// log-probabilities plus Alpha × the delta's logits (dl, nil without a
// delta) through this step's map, and with wholeText -Inf for text that is
// not whole characters (wholeUTF8). It leaves this step's map in g.stepMap for advanceDelta.
func (g *RemoteGenerator) scoreCandidates(cands []Candidate, dl []float32, wholeText bool) []float32 {
	s := &g.step
	scores := s.buffers(len(cands))
	m := &g.stepMap
	m.ToDelta, m.Exact = m.ToDelta[:0], m.Exact[:0]
	for i, c := range cands {
		scores[i] = float32(c.LogProb)
		t := g.mapCandidate(c)
		m.ToDelta, m.Exact = append(m.ToDelta, t.d), append(m.Exact, t.exact)
	}
	if dl != nil {
		s.addDelta(scores, dl)
	}
	for i, c := range cands {
		if wholeText && !c.End && !wholeUTF8(c.Text) {
			scores[i] = float32(math.Inf(-1))
		}
	}
	return scores
}

// wholeUTF8 reports whether text is whole characters: valid UTF-8 without
// U+FFFD, which engines print for a token that holds part of a character.
func wholeUTF8(text string) bool {
	return utf8.ValidString(text) && !strings.ContainsRune(text, utf8.RuneError)
}

// mapCandidate is the delta token of a candidate, remembered by text: an
// engine offers the same few thousand pieces over and over.
func (g *RemoteGenerator) mapCandidate(c Candidate) mappedText {
	if c.End {
		return mappedText{g.DeltaEOS, g.DeltaEOS >= 0}
	}
	if g.Map == nil {
		return mappedText{-1, false}
	}
	t, ok := g.cache[c.Text]
	if !ok {
		t.d, t.exact = g.Map(c.Text)
		g.cache[c.Text] = t
	}
	return t
}

// EchoedToken is one token of a text as a remote engine scored it (a
// completions request with echo): where it starts in the text, its text,
// its log-probability after the text before it, and the engine's top
// candidates at that position.
type EchoedToken struct {
	Offset  int
	Text    string
	LogProb float64
	Top     []Candidate
}

// RemoteScore gives each token of response, after prompt, its
// log-probability under the engine's model alone and under the steered
// distribution, from the engine's echo of prompt+response (tokens, sorted
// by offset). The engine tokenises the joined text; its tokens that start
// inside the prompt are the prompt's. Only the top candidates and the
// token itself are known at each position, so the steered distribution is
// taken over those, shifted by Alpha × delta, plus the rest of the engine's
// mass, unshifted:
//
//	controlled = s(t) - log(Σ_{c ∈ top ∪ {t}} exp s(c) + (1 - Σ_{c ∈ top ∪ {t}} p(c)))
//	s(c) = log p(c) + Alpha · delta[map(c)]
//
// At Alpha 0 that is the engine's own log-probability exactly. The end of
// the response (an end-of-sequence token) is not scored: the engine does
// not echo one.
func (g *RemoteGenerator) RemoteScore(ctx context.Context, prompt, response string, deltaPrompt []int32, echo []EchoedToken) (alone, controlled []float64, err error) {
	useDelta := g.Delta != nil && g.Alpha != 0
	if useDelta && (len(deltaPrompt) == 0 || g.Map == nil) {
		return nil, nil, errors.New("remote score: a delta needs its prompt and a text map")
	}
	s := &g.step
	deltaNext, deltaBase, err := g.begin(useDelta, deltaPrompt)
	if err != nil {
		return nil, nil, err
	}
	var deltaGen []int32
	var res Result
	text := prompt + response
	first := true
	for _, tok := range echo {
		if err := ctx.Err(); err != nil {
			return alone, controlled, err
		}
		start := tok.Offset - len(prompt)
		if start < 0 || math.IsNaN(tok.LogProb) {
			// A prompt token, or one that nothing predicts: the first of
			// the text (BOS, or the text's own first token without one).
			continue
		}
		end := min(tok.Offset+len(tok.Text), len(text)) - len(prompt)
		if end <= start {
			break // past the response: the engine's own new token
		}
		alone = append(alone, tok.LogProb)
		if !useDelta {
			controlled = append(controlled, tok.LogProb)
			continue
		}
		if first && start > 0 {
			// The first response token starts inside the response (the
			// engine joined the prompt's end with the response's start):
			// the delta's context must first spell the part before it, after
			// its prompt.
			if _, err := g.Delta.Append(deltaNext); err != nil {
				return alone, controlled, fmt.Errorf("remote score: delta model: %w", err)
			}
			g.stepMap.ToDelta, g.stepMap.Exact = append(g.stepMap.ToDelta[:0], -1), append(g.stepMap.Exact[:0], false)
			if deltaNext, deltaGen, err = s.advanceDelta(0, []byte(response[:start]), deltaBase, deltaGen, &res); err != nil {
				return alone, controlled, err
			}
		}
		first = false
		dl, err := g.Delta.Append(deltaNext)
		if err != nil {
			return alone, controlled, fmt.Errorf("remote score: delta model: %w", err)
		}
		// This position's vocabulary: the candidates, and the token itself
		// last when it is not among them.
		cands := tok.Top
		target := slices.IndexFunc(cands, func(c Candidate) bool { return c.Text == tok.Text && !c.End })
		if target < 0 {
			cands = append(cands[:len(cands):len(cands)], Candidate{Text: tok.Text, LogProb: tok.LogProb})
			target = len(cands) - 1
		}
		scores := g.scoreCandidates(cands, dl, false)
		var mass, sum float64
		for i, c := range cands {
			mass += math.Exp(c.LogProb)
			sum += math.Exp(float64(scores[i]))
		}
		sum += max(0, 1-mass)
		controlled = append(controlled, float64(scores[target])-math.Log(sum))
		if deltaNext, deltaGen, err = s.advanceDelta(int32(target), []byte(response[:end]), deltaBase, deltaGen, &res); err != nil {
			return alone, controlled, err
		}
	}
	return alone, controlled, nil
}
