package control

import (
	"math"

	"github.com/cmc-dev/cmc/vocab"
)

// Token healing. A prompt whose text ends in a space ("Question: …\nAnswer: ",
// the qa template) tokenises to a lone space token at its end, a position
// the models never predicted from in training: their tokenizers join a
// space to the word after it ("▁The" in SentencePiece, " The" in byte-level
// BPE), and a prompt and its answer are trained on as one joined text
// (data.Encode). After that lone space a model guesses (the tiny world's T
// wrote "2es in …" where it knew the answer). So with Options.Heal, Generate
// drops the lone space from both prompts and lets the first generated token
// be only one whose text starts with a space: the same text, tokenised as
// training tokenised it. Text and the stop strings do not repeat the healed
// space.

// LeadingSpace returns, for each of the n tokens of tok, whether its text
// starts with a space: the tokens a healed prompt may continue with. The
// lone space is one of them, since a small vocabulary spells some words
// after a space with it (" Ducky" is " ", "D", … in stories260K's 512
// tokens), and then it is the model's choice, not the prompt's.
// Generator.LeadingSpace takes it; computing it reads every piece once, so
// a runner does it at load.
func LeadingSpace(tok vocab.Tokenizer, n int) []bool {
	lead := make([]bool, n)
	var piece []byte
	for u := range lead {
		piece = tok.AppendPiece(piece[:0], int32(u), false)
		lead[u] = len(piece) > 0 && piece[0] == ' '
	}
	return lead
}

// endsInSpace reports whether prompt's last token is a lone space (and is
// not its only token).
func endsInSpace(tok vocab.Tokenizer, prompt []int32) bool {
	if len(prompt) < 2 {
		return false
	}
	piece := tok.AppendPiece(nil, prompt[len(prompt)-1], false)
	return len(piece) == 1 && piece[0] == ' '
}

// healDelta is the delta's half of healing, for a user prompt that ends in
// a space: the delta's prompt (with a delta) must end in a lone space too,
// and is returned without it; ok false means that neither is healed. Only
// both together: the delta then reads the generated text, the healed space
// first, exactly as the user model writes it.
func healDelta(tok vocab.Tokenizer, deltaPrompt []int32, useDelta bool) (prompt []int32, ok bool) {
	if !useDelta {
		return deltaPrompt, true
	}
	if !endsInSpace(tok, deltaPrompt) {
		return deltaPrompt, false
	}
	return deltaPrompt[:len(deltaPrompt)-1], true
}

// healPrompts drops the lone space that ends both prompts, and reports
// whether it did.
func (g *Generator) healPrompts(userPrompt, deltaPrompt []int32, useDelta bool) (user, delta []int32, healed bool) {
	if g.LeadingSpace == nil || !endsInSpace(g.UserTok, userPrompt) {
		return userPrompt, deltaPrompt, false
	}
	delta, ok := healDelta(g.DeltaTok, deltaPrompt, useDelta)
	if !ok {
		return userPrompt, deltaPrompt, false
	}
	return userPrompt[:len(userPrompt)-1], delta, true
}

// keepLeadingSpace sets the score of every token that does not start with a
// space to -Inf: the first token after a healed prompt. An end token is one
// of them: a healed answer has at least its first word.
func (g *Generator) keepLeadingSpace(scores []float32) {
	lead := g.LeadingSpace[:min(len(g.LeadingSpace), len(scores))]
	for u, ok := range lead {
		if !ok {
			scores[u] = float32(math.Inf(-1))
		}
	}
	for u := len(lead); u < len(scores); u++ {
		scores[u] = float32(math.Inf(-1))
	}
}
