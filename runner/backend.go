package runner

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/server"
)

// Backend serves cmc serve's HTTP requests (server.Backend) with a Runner,
// one request at a time.
type Backend struct {
	mu        sync.Mutex
	r         *Runner
	name      string
	deltaName string
}

// NewBackend serves r under the model name name, with its delta (if any)
// named deltaName.
func NewBackend(r *Runner, name, deltaName string) *Backend {
	return &Backend{r: r, name: name, deltaName: deltaName}
}

// Models lists the one model served.
func (b *Backend) Models() []string { return []string{b.name} }

// Generate answers one request: the delta's strength and the request's
// sampling, penalty and log-prob fields applied, the prompt decoded only
// where the KV caches do not hold it already.
func (b *Backend) Generate(ctx context.Context, req server.Request, emit func(string) error) (server.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	alpha := b.r.Alpha
	if req.Alpha != nil {
		// The server checked the range already; a backend used on its own
		// must not trust it.
		if err := control.CheckAlpha(*req.Alpha); err != nil {
			return server.Result{}, &server.RequestError{Param: "alpha", Message: err.Error()}
		}
		alpha = float32(*req.Alpha)
	}
	switch req.Delta {
	case "", b.deltaName:
	case "none":
		alpha = 0
	default:
		return server.Result{}, &server.RequestError{Param: "delta", Message: fmt.Sprintf("unknown delta %q: this server has %q (or \"none\")", req.Delta, b.deltaName)}
	}
	if b.r.Delta == nil && alpha != 0 && req.Alpha != nil {
		return server.Result{}, &server.RequestError{Param: "alpha", Message: "this server runs without a delta; alpha has no effect"}
	}
	if b.r.Remote != nil {
		if param := remoteUnsupported(req); param != "" {
			return server.Result{}, &server.RequestError{Param: param, Message: fmt.Sprintf("%s is not supported when the user model is served by another engine (--model URL)", param)}
		}
		return b.r.serveRemote(ctx, req, alpha, emit)
	}

	p, err := b.prompt(req)
	if err != nil {
		return server.Result{}, err
	}
	if len(p.user) >= b.r.UserCtx.Size() {
		return server.Result{}, &server.RequestError{Param: p.param, Message: fmt.Sprintf("the prompt has %d tokens; the context holds %d", len(p.user), b.r.UserCtx.Size())}
	}
	opt, err := b.options(req, len(p.user))
	if err != nil {
		return server.Result{}, err
	}
	if opt.ScorePrompt && b.r.Delta != nil {
		// Every prompt token is scored, so the delta reads the prompt as
		// plain text, token by token as it reads generated text, after the
		// first token's own text (its BOS).
		first := b.r.User.Vocab().Piece(p.user[0], false)
		if p.delta, err = b.r.DeltaVocab.Vocab().Tokenize(first, true, false); err != nil || len(p.delta) == 0 {
			return server.Result{}, &server.RequestError{Param: "echo", Message: fmt.Sprintf("the delta's tokenizer gives no prompt for the text %q of the first prompt token (%v)", first, err)}
		}
	}
	res, err := b.r.GenerateIDs(ctx, p.user, p.delta, alpha, opt, emit)
	out := server.Result{Text: res.Text, FinishReason: res.FinishReason, PromptTokens: len(p.user), CompletionTokens: len(res.Tokens), CachedTokens: res.CachedTokens}
	if err != nil {
		return out, err
	}
	if req.Echo {
		out.PromptText = p.text
	}
	b.logprobs(&out, req, p, res)
	return out, nil
}

// servedPrompt is one request's prompt, rendered and tokenised for both
// models.
type servedPrompt struct {
	user, delta []int32
	text        string // the prompt's text: what an echo returns
	param       string // the request field it came from, for errors
}

func (b *Backend) prompt(req server.Request) (servedPrompt, error) {
	p := servedPrompt{param: "prompt"}
	var err error
	switch {
	case req.Messages != nil:
		// Every message keeps its role: a last assistant message is a
		// prefill the model continues, a trailing system message stays one.
		msgs := make([]llama.Message, len(req.Messages))
		for i, m := range req.Messages {
			msgs[i] = llama.Message{Role: m.Role, Content: m.Content}
		}
		p.param = "messages"
		p.user, p.delta, p.text, err = b.r.ChatPrompts(msgs)
	case req.PromptTokens != nil:
		v := b.r.User.Vocab()
		for i, id := range req.PromptTokens {
			if id < 0 || int(id) >= v.Size() {
				return p, &server.RequestError{Param: "prompt", Message: fmt.Sprintf("prompt token %d at index %d is outside the vocabulary of %d tokens", id, i, v.Size())}
			}
		}
		p.user = req.PromptTokens
		if p.text, err = v.Detokenize(p.user, false, false); err == nil {
			p.delta, err = b.r.DeltaPrompt(p.text)
		}
	default:
		p.text = req.Prompt
		p.user, p.delta, err = b.r.CompletionPrompts(req.Prompt)
	}
	if err != nil {
		return p, &server.RequestError{Param: p.param, Message: err.Error()}
	}
	return p, nil
}

// heals says whether a request's prompt is healed (control.Options.Heal):
// a chat's, which a template rendered, is; a completion's is the client's,
// continued as sent, since its text_offset log-probs count the tokens' text
// from it and a client that appends the tokens' texts must get the text.
func heals(req server.Request) bool { return req.Messages != nil }

// options turns a request's sampling, penalty and log-prob fields into the
// generator's, for a prompt of n tokens.
func (b *Backend) options(req server.Request, n int) (control.Options, error) {
	seed := uint64(time.Now().UnixNano())
	if req.Seed != nil {
		seed = uint64(*req.Seed)
	}
	opt := control.Options{
		MaxTokens: min(req.MaxTokens, b.r.UserCtx.Size()-n),
		Stop:      req.Stop,
		Sample:    control.SampleOptions{Temperature: req.Temperature, TopK: req.TopK, TopP: req.TopP, Seed: seed},
		Penalties: control.Penalties{
			Frequency:   float32(req.FrequencyPenalty),
			Presence:    float32(req.PresencePenalty),
			Repeat:      float32(req.RepeatPenalty),
			RepeatLastN: req.RepeatLastN,
		},
		Logprobs:    req.Logprobs,
		TopLogprobs: req.TopLogprobs,
		ScorePrompt: req.Echo && req.Logprobs,
		Heal:        heals(req),
	}
	if req.MaxTokens == 0 {
		opt.MaxTokens = -1 // echo only: score the prompt, generate nothing
	}
	if len(req.LogitBias) > 0 {
		size := b.r.User.Vocab().Size()
		opt.Penalties.LogitBias = make(map[int32]float32, len(req.LogitBias))
		for id, bias := range req.LogitBias {
			if int(id) >= size {
				return opt, &server.RequestError{Param: "logit_bias", Message: fmt.Sprintf("logit_bias names token %d; the vocabulary has %d tokens", id, size)}
			}
			opt.Penalties.LogitBias[id] = float32(bias)
		}
	}
	return opt, nil
}

// logprobs fills out's log-probs from the generator's, with each token's
// text and where it starts in the returned text.
func (b *Backend) logprobs(out *server.Result, req server.Request, p servedPrompt, res control.Result) {
	if !req.Logprobs {
		return
	}
	v := b.r.User.Vocab()
	token := func(id int32) string { return v.Piece(id, true) }
	tops := func(l *control.Logprobs, i int) []server.TopLogprob {
		ids, lps := l.Top(i)
		top := make([]server.TopLogprob, len(ids))
		for j, id := range ids {
			top[j] = server.TopLogprob{Token: token(id), Logprob: float64(lps[j])}
		}
		return top
	}
	offset := 0
	if req.Echo {
		// Offsets count the tokens' text; a SentencePiece tokenizer spells
		// a space before the first word that the prompt does not have.
		var spelled []byte
		for _, id := range p.user {
			spelled = v.AppendPiece(spelled, id, false)
		}
		shift := 0
		if len(spelled) > 0 && spelled[0] == ' ' && !strings.HasPrefix(p.text, " ") {
			shift = 1
		}
		at := 0
		for i, id := range p.user {
			t := server.TokenLogprob{Token: token(id), Logprob: math.NaN(), Offset: min(max(at-shift, 0), len(p.text))}
			if i > 0 && i-1 < res.PromptLogprobs.Len() {
				t.Logprob, t.Top = float64(res.PromptLogprobs.Logprob[i-1]), tops(&res.PromptLogprobs, i-1)
			}
			out.PromptLogprobs = append(out.PromptLogprobs, t)
			at += len(v.AppendPiece(nil, id, false))
		}
		offset = len(p.text)
	}
	for i, id := range res.Logprobs.IDs {
		end := i >= len(res.Tokens) // the end token, which added no text
		out.Logprobs = append(out.Logprobs, server.TokenLogprob{Token: token(id), Logprob: float64(res.Logprobs.Logprob[i]),
			Top: tops(&res.Logprobs, i), Offset: min(offset, len(out.PromptText)+len(out.Text)), End: end})
		if !end {
			offset += len(v.AppendPiece(nil, id, false))
		}
	}
	// OpenAI's text_offset counts characters; the offsets above count bytes.
	chars := charOffsets(out.PromptText + out.Text)
	for i := range out.PromptLogprobs {
		out.PromptLogprobs[i].Offset = chars[out.PromptLogprobs[i].Offset]
	}
	for i := range out.Logprobs {
		out.Logprobs[i].Offset = chars[out.Logprobs[i].Offset]
	}
}

// charOffsets maps each byte offset of text (0 to len(text)) to the number
// of characters that start before it: a token that starts inside a
// character (byte-level BPE splits them) is placed after that character's
// start.
func charOffsets(text string) []int {
	chars := make([]int, len(text)+1)
	n := 0
	for i := range len(text) {
		chars[i] = n
		if utf8.RuneStart(text[i]) {
			n++
		}
	}
	chars[len(text)] = n
	return chars
}

// remoteUnsupported names a field of req that the top-k loop over a served
// user model cannot honour, or returns "".
func remoteUnsupported(req server.Request) string {
	switch {
	case req.Logprobs:
		return "logprobs"
	case req.Echo:
		return "echo"
	case req.PromptTokens != nil:
		return "prompt"
	case len(req.LogitBias) > 0:
		return "logit_bias"
	case req.FrequencyPenalty != 0:
		return "frequency_penalty"
	case req.PresencePenalty != 0:
		return "presence_penalty"
	case req.RepeatPenalty != 0 && req.RepeatPenalty != 1:
		return "repeat_penalty"
	}
	return ""
}
