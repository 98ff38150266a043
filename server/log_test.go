package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// recorder is a slog.Handler that keeps every record, for tests to inspect.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

// find returns the first record with this message and attribute values.
func (r *recorder) find(msg string, attrs map[string]string) (slog.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if rec.Message != msg {
			continue
		}
		matched := 0
		rec.Attrs(func(a slog.Attr) bool {
			if want, ok := attrs[a.Key]; ok && a.Value.String() == want {
				matched++
			}
			return true
		})
		if matched == len(attrs) {
			return rec, true
		}
	}
	return slog.Record{}, false
}

func TestLogging(t *testing.T) {
	logs := &recorder{}
	s := New(scriptedBackend{err: errors.New("llama_decode returned -1")}, Config{}, slog.New(logs))
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	resp, body := do(t, "POST", ts.URL+"/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"x"}]}`)
	expectError(t, resp, body, http.StatusInternalServerError, "generation_failed")
	id := resp.Header.Get("X-Request-Id")
	if !strings.Contains(string(body), id) {
		t.Errorf("the 500 body does not name the request id %q: %s", id, body)
	}
	var failure slog.Record
	waitFor(t, "the failure and the access log lines", func() bool {
		var ok bool
		failure, ok = logs.find("generation failed", map[string]string{"id": id, "err": "llama_decode returned -1"})
		_, logged := logs.find("request", map[string]string{"id": id, "status": "500", "path": "/v1/chat/completions"})
		return ok && logged
	})
	if failure.Level != slog.LevelError {
		t.Errorf("generation failure logged at %v, want ERROR", failure.Level)
	}
}

// TestClientGoneLoggedOnce: a client that hangs up mid-generation is
// reported once, on its access-log line, whether it streamed or not.
func TestClientGoneLoggedOnce(t *testing.T) {
	for _, stream := range []string{"false", "true"} {
		logs := &recorder{}
		b := newBlockingBackend()
		s := New(b, Config{}, slog.New(logs))
		ts := httptest.NewServer(s.Handler())
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/completions",
			strings.NewReader(`{"model":"echo","prompt":"x","stream":`+stream+`}`))
		go func() {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		receive(t, b.started, "the generation to start")
		cancel()
		if err := receive(t, b.ended, "the generation to end"); err == nil {
			t.Fatalf("stream %s: the generation was not cancelled", stream)
		}
		waitFor(t, "the access-log line", func() bool {
			_, ok := logs.find("request", map[string]string{"path": "/v1/completions"})
			return ok
		})
		ts.Close()
		logs.mu.Lock()
		mentions := 0
		for _, rec := range logs.records {
			said := strings.Contains(rec.Message, "went away")
			rec.Attrs(func(a slog.Attr) bool {
				said = said || strings.Contains(a.Key, "went_away")
				return true
			})
			if said {
				mentions++
			}
		}
		logs.mu.Unlock()
		if mentions != 1 {
			t.Errorf("stream %s: the client going away is logged %d times, want once", stream, mentions)
		}
	}
}
