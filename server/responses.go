package server

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
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
	// response is the whole answer of a request that did not stream.
	response(res Result) any
	// chunk carries one streamed piece, or, when finish is set, ends the choice.
	chunk(piece, finish string) any
	// usageChunk reports token counts after the last chunk, when asked for.
	usageChunk(res Result) any
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(res Result) usage {
	return usage{res.PromptTokens, res.CompletionTokens, res.PromptTokens + res.CompletionTokens}
}

// usageResponse is the usage-only chunk; OpenAI sends it with no choices.
type usageResponse struct {
	header
	Choices []struct{} `json:"choices"`
	Usage   usage      `json:"usage"`
}

type completionFormat struct{ header }

type completionChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     *int    `json:"logprobs"` // always null: cmc does not report them
	FinishReason *string `json:"finish_reason"`
}

type completionResponse struct {
	header
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

func (f *completionFormat) response(res Result) any {
	h := f.header
	h.Object = "text_completion"
	u := usageOf(res)
	return completionResponse{h, []completionChoice{{Text: res.Text, FinishReason: &res.FinishReason}}, &u}
}

func (f *completionFormat) chunk(piece, finish string) any {
	h := f.header
	h.Object = "text_completion"
	return completionResponse{header: h, Choices: []completionChoice{{Text: piece, FinishReason: nullable(finish)}}}
}

func (f *completionFormat) usageChunk(res Result) any {
	h := f.header
	h.Object = "text_completion"
	return usageResponse{h, []struct{}{}, usageOf(res)}
}

type chatFormat struct {
	header
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
	Logprobs     *int            `json:"logprobs"` // always null: cmc does not report them
	FinishReason *string         `json:"finish_reason"`
}

type chatResponse struct {
	header
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

func (f *chatFormat) response(res Result) any {
	h := f.header
	h.Object = "chat.completion"
	u := usageOf(res)
	choice := chatChoice{Message: &chatMessageOut{Role: "assistant", Content: res.Text}, FinishReason: &res.FinishReason}
	return chatResponse{h, []chatChoice{choice}, &u}
}

func (f *chatFormat) chunk(piece, finish string) any {
	h := f.header
	h.Object = "chat.completion.chunk"
	delta := &chatDelta{}
	if piece != "" {
		delta.Content = &piece
	}
	if !f.sentRole {
		delta.Role = "assistant"
		f.sentRole = true
	}
	return chatResponse{header: h, Choices: []chatChoice{{Delta: delta, FinishReason: nullable(finish)}}}
}

func (f *chatFormat) usageChunk(res Result) any {
	h := f.header
	h.Object = "chat.completion.chunk"
	return usageResponse{h, []struct{}{}, usageOf(res)}
}

// nullable turns "" into JSON null, as OpenAI sends finish_reason mid-stream.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
