package server

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"
)

// eventStream writes Server-Sent Events. The status line goes out with the
// first event, so that errors found before any text (a full queue, an
// unknown delta) still get their own status code.
type eventStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration // for each event; see Server.eventWriteTimeout
	started bool
	err     error // the first write failure: the client is gone
}

func (s *eventStream) send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	return s.write(append(append([]byte("data: "), data...), '\n', '\n'))
}

func (s *eventStream) write(b []byte) error {
	if s.err != nil {
		return s.err
	}
	if !s.started {
		h := s.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // keeps nginx-style proxies from holding pieces back
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		s.err = fmt.Errorf("set write deadline: %w", err)
		return s.err
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = fmt.Errorf("write event: %w", err)
		return s.err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = fmt.Errorf("flush event: %w", err)
	}
	return s.err
}

// header is what every response and chunk of one request starts with.
type header struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
}

func newHeader(prefix, model string) header {
	return header{ID: prefix + rand.Text(), Created: time.Now().Unix(), Model: model}
}

func (h header) id() string { return h.ID }

// format shapes one endpoint's responses.
type format interface {
	id() string
	// response is the whole answer of a request that did not stream: one
	// choice per prompt.
	response(results []Result) any
	// chunk carries one streamed piece of text.
	chunk(piece string) any
	// finish ends the streamed choice, with its log-probs when asked for:
	// a stream carries them all in this last chunk.
	finish(res Result) any
	// usageChunk reports token counts after the last chunk, when asked for.
	usageChunk(res Result) any
}

type usage struct {
	PromptTokens        int                 `json:"prompt_tokens"`
	CompletionTokens    int                 `json:"completion_tokens"`
	TotalTokens         int                 `json:"total_tokens"`
	PromptTokensDetails promptTokensDetails `json:"prompt_tokens_details"`
}

// promptTokensDetails is OpenAI's breakdown of the prompt tokens: how many
// came from the cache of earlier requests' prompts.
type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

func usageOf(results ...Result) usage {
	var u usage
	for _, r := range results {
		u.PromptTokens += r.PromptTokens
		u.CompletionTokens += r.CompletionTokens
		u.PromptTokensDetails.CachedTokens += r.CachedTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// usageResponse is the usage-only chunk; OpenAI sends it with no choices.
type usageResponse struct {
	header
	Choices []struct{} `json:"choices"`
	Usage   usage      `json:"usage"`
}

// jsonLogprob keeps a log-probability encodable: JSON has no infinities,
// and -9999 is what vLLM reports for an impossible token.
func jsonLogprob(lp float64) float64 {
	if math.IsInf(lp, -1) || math.IsNaN(lp) {
		return -9999
	}
	return lp
}

// completionFormat is the legacy completions API's.
type completionFormat struct {
	header
	echo     bool
	logprobs bool
}

type completionChoice struct {
	Text         string          `json:"text"`
	Index        int             `json:"index"`
	Logprobs     *legacyLogprobs `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

// legacyLogprobs is the completions API's log-prob shape: parallel arrays,
// null for the first prompt token, which nothing predicts.
type legacyLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type completionResponse struct {
	header
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

func (f *completionFormat) legacy(res Result) *legacyLogprobs {
	if !f.logprobs {
		return nil
	}
	lp := &legacyLogprobs{Tokens: []string{}, TokenLogprobs: []*float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	add := func(t TokenLogprob) {
		lp.Tokens = append(lp.Tokens, t.Token)
		lp.TextOffset = append(lp.TextOffset, t.Offset)
		if math.IsNaN(t.Logprob) {
			lp.TokenLogprobs = append(lp.TokenLogprobs, nil)
			lp.TopLogprobs = append(lp.TopLogprobs, nil)
			return
		}
		v := jsonLogprob(t.Logprob)
		lp.TokenLogprobs = append(lp.TokenLogprobs, &v)
		// As OpenAI's and vLLM's: the most likely tokens, and the chosen one.
		top := make(map[string]float64, len(t.Top)+1)
		for _, c := range t.Top {
			if _, dup := top[c.Token]; !dup {
				top[c.Token] = jsonLogprob(c.Logprob)
			}
		}
		if _, in := top[t.Token]; !in {
			top[t.Token] = v
		}
		lp.TopLogprobs = append(lp.TopLogprobs, top)
	}
	if f.echo {
		for _, t := range res.PromptLogprobs {
			add(t)
		}
	}
	for _, t := range res.Logprobs {
		add(t)
	}
	return lp
}

func (f *completionFormat) text(res Result) string {
	if f.echo {
		return res.PromptText + res.Text
	}
	return res.Text
}

func (f *completionFormat) response(results []Result) any {
	h := f.header
	h.Object = "text_completion"
	choices := make([]completionChoice, len(results))
	for i, res := range results {
		choices[i] = completionChoice{Text: f.text(res), Index: i, Logprobs: f.legacy(res), FinishReason: &res.FinishReason}
	}
	u := usageOf(results...)
	return completionResponse{h, choices, &u}
}

func (f *completionFormat) chunk(piece string) any {
	h := f.header
	h.Object = "text_completion"
	return completionResponse{header: h, Choices: []completionChoice{{Text: piece}}}
}

func (f *completionFormat) finish(res Result) any {
	h := f.header
	h.Object = "text_completion"
	return completionResponse{header: h, Choices: []completionChoice{{Logprobs: f.legacy(res), FinishReason: &res.FinishReason}}}
}

func (f *completionFormat) usageChunk(res Result) any {
	h := f.header
	h.Object = "text_completion"
	return usageResponse{h, []struct{}{}, usageOf(res)}
}

type chatFormat struct {
	header
	logprobs bool
	sentRole bool // the first chunk names the speaker, as OpenAI's does
}

type chatMessageOut struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      *chatMessageOut `json:"message,omitempty"`
	Delta        *chatDelta      `json:"delta,omitempty"`
	Logprobs     *chatLogprobs   `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

// chatLogprobs is the chat API's log-prob shape.
type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
	Refusal []chatTokenLogprob `json:"refusal"` // always null
}

type chatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// tokenBytes is a token's bytes as the chat API lists them: a token may
// hold part of a UTF-8 character, which its "token" string cannot show.
func tokenBytes(token string) []int {
	b := make([]int, len(token))
	for i := range len(token) {
		b[i] = int(token[i])
	}
	return b
}

func (f *chatFormat) chatLogprobs(res Result) *chatLogprobs {
	if !f.logprobs {
		return nil
	}
	lp := &chatLogprobs{Content: []chatTokenLogprob{}}
	for _, t := range res.Logprobs {
		if t.End {
			continue // OpenAI's chat log-probs stop at the text
		}
		c := chatTokenLogprob{Token: t.Token, Logprob: jsonLogprob(t.Logprob), Bytes: tokenBytes(t.Token), TopLogprobs: []chatTopLogprob{}}
		for _, top := range t.Top {
			c.TopLogprobs = append(c.TopLogprobs, chatTopLogprob{top.Token, jsonLogprob(top.Logprob), tokenBytes(top.Token)})
		}
		lp.Content = append(lp.Content, c)
	}
	return lp
}

func (f *chatFormat) response(results []Result) any {
	h := f.header
	h.Object = "chat.completion"
	choices := make([]chatChoice, len(results))
	for i, res := range results {
		choices[i] = chatChoice{Index: i, Message: &chatMessageOut{Role: "assistant", Content: res.Text},
			Logprobs: f.chatLogprobs(res), FinishReason: &res.FinishReason}
	}
	u := usageOf(results...)
	return chatResponse{h, choices, &u}
}

type chatResponse struct {
	header
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

func (f *chatFormat) delta(piece string) *chatDelta {
	delta := &chatDelta{}
	if piece != "" {
		delta.Content = &piece
	}
	if !f.sentRole {
		delta.Role = "assistant"
		f.sentRole = true
	}
	return delta
}

func (f *chatFormat) chunk(piece string) any {
	h := f.header
	h.Object = "chat.completion.chunk"
	return chatResponse{header: h, Choices: []chatChoice{{Delta: f.delta(piece)}}}
}

func (f *chatFormat) finish(res Result) any {
	h := f.header
	h.Object = "chat.completion.chunk"
	return chatResponse{header: h, Choices: []chatChoice{{Delta: f.delta(""), Logprobs: f.chatLogprobs(res), FinishReason: &res.FinishReason}}}
}

func (f *chatFormat) usageChunk(res Result) any {
	h := f.header
	h.Object = "chat.completion.chunk"
	return usageResponse{h, []struct{}{}, usageOf(res)}
}
