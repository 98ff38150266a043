package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoBackend answers with the prompt (or the last chat message) word by
// word, one word per token, and remembers the last request it saw.
type echoBackend struct {
	delay time.Duration // between words

	mu   sync.Mutex
	last Request
}

func (b *echoBackend) Models() []string { return []string{"echo", "org/echo-7b.Q4_K_M.gguf"} }

func (b *echoBackend) Generate(ctx context.Context, req Request, emit func(string) error) (Result, error) {
	b.mu.Lock()
	b.last = req
	b.mu.Unlock()
	text := req.Prompt
	if len(req.Messages) > 0 {
		text = req.Messages[len(req.Messages)-1].Content
	}
	words := strings.Fields(text)
	res := Result{FinishReason: "stop", PromptTokens: len(words)}
	var out strings.Builder
	for i, word := range words {
		if i == req.MaxTokens {
			res.FinishReason = "length"
			break
		}
		if b.delay > 0 {
			select {
			case <-ctx.Done():
				return res, context.Cause(ctx)
			case <-time.After(b.delay):
			}
		}
		piece := word
		if i > 0 {
			piece = " " + word
		}
		if err := emit(piece); err != nil {
			return res, err
		}
		out.WriteString(piece)
		res.CompletionTokens++
	}
	res.Text = out.String()
	return res, nil
}

func (b *echoBackend) lastRequest() Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// blockingBackend emits its prompt as one piece, then holds each generation
// until the test releases it or its context ends, so tests can fill the
// slots and the queue deterministically.
type blockingBackend struct {
	started chan string   // the prompt of each generation, as it starts
	release chan struct{} // one receive lets one generation finish
	ended   chan error    // nil for a released generation, else its context's cause
}

func newBlockingBackend() *blockingBackend {
	return &blockingBackend{
		started: make(chan string, 16),
		release: make(chan struct{}),
		ended:   make(chan error, 16),
	}
}

func (b *blockingBackend) Models() []string { return []string{"echo"} }

func (b *blockingBackend) Generate(ctx context.Context, req Request, emit func(string) error) (Result, error) {
	b.started <- req.Prompt
	if err := emit(req.Prompt); err != nil {
		b.ended <- err
		return Result{}, err
	}
	select {
	case <-b.release:
		b.ended <- nil
		return Result{Text: req.Prompt, FinishReason: "stop", PromptTokens: 1, CompletionTokens: 1}, nil
	case <-ctx.Done():
		b.ended <- context.Cause(ctx)
		return Result{}, context.Cause(ctx)
	}
}

// scriptedBackend emits its pieces, then fails with err or, when err is
// nil, finishes with their concatenation.
type scriptedBackend struct {
	pieces []string
	err    error
}

func (b scriptedBackend) Models() []string { return []string{"echo"} }

func (b scriptedBackend) Generate(ctx context.Context, req Request, emit func(string) error) (Result, error) {
	for _, p := range b.pieces {
		if err := emit(p); err != nil {
			return Result{}, err
		}
	}
	if b.err != nil {
		return Result{}, b.err
	}
	text := strings.Join(b.pieces, "")
	return Result{Text: text, FinishReason: "stop", PromptTokens: 1, CompletionTokens: len(b.pieces)}, nil
}

// start serves b over loopback for the length of the test.
func start(t testing.TB, b Backend, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	s := New(b, cfg, slog.New(slog.DiscardHandler))
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		// Cutting the connections cancels generations a failed test left
		// blocked, which Close alone would wait for forever.
		ts.CloseClientConnections()
		ts.Close()
	})
	return s, ts
}

// do sends one request and returns the response with its whole body.
func do(t *testing.T, method, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", method, url, err)
	}
	return resp, data
}

// wireError is an error response as a client decodes it.
type wireError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// expectError checks that a response is an OpenAI-style error with this
// status and code, and returns it.
func expectError(t *testing.T, resp *http.Response, body []byte, status int, code string) wireError {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e wireError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v; body %s", err, body)
	}
	if e.Error.Code != code || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("error %+v, want code %q with a message and a type", e.Error, code)
	}
	return e
}

// readEvents reads a Server-Sent Events body and returns each event's data.
func readEvents(t *testing.T, body io.Reader) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("stream line %q is not a data line", line)
		}
		events = append(events, data)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return events
}

// waitFor polls cond until it holds, failing the test after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// receive waits a few seconds for a value from ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
