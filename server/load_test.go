package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestLoad sends two thousand requests, sequential and concurrent, more
// than the slots and queue hold, and checks that every answer is a whole 200
// or a 429, and that neither goroutines nor the heap grow with the number of
// requests served.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	baseGoroutines := runtime.NumGoroutine()
	s := New(&echoBackend{}, Config{Concurrency: 2, QueueSize: 4}, slog.New(slog.DiscardHandler))
	ts := httptest.NewServer(s.Handler())
	const workers = 24
	transport := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Transport: transport}

	var ok, busy atomic.Int64
	round := func(requests int) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < requests; i += workers {
					if err := loadRequest(client, ts.URL, i); errors.Is(err, errBusy) {
						busy.Add(1)
					} else if err != nil {
						t.Error(err)
						return
					} else {
						ok.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}
	heapInuse := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}

	// A warm-up round opens the connections and fills the pools, so that
	// the heap is measured in steady state.
	round(300)
	before := heapInuse()
	for i := range 200 {
		if err := loadRequest(client, ts.URL, i); err != nil {
			t.Fatalf("sequential request %d: %v", i, err)
		}
	}
	round(1500)
	after := heapInuse()
	t.Logf("%d answered 200, %d answered 429; heap in use %d KiB before, %d KiB after", ok.Load(), busy.Load(), before>>10, after>>10)
	if ok.Load() == 0 {
		t.Error("no request succeeded")
	}
	// 1700 requests: a leak of even 1.2 KiB each would exceed this.
	if after > before+2<<20 {
		t.Errorf("heap in use grew from %d KiB to %d KiB over the run", before>>10, after>>10)
	}
	if n := admitted(s); n != 0 {
		t.Errorf("%d requests still admitted after all replied", n)
	}

	transport.CloseIdleConnections()
	ts.Close()
	waitFor(t, fmt.Sprintf("goroutines to return to %d", baseGoroutines), func() bool {
		return runtime.NumGoroutine() <= baseGoroutines
	})
}

var errBusy = errors.New("429")

// loadRequest sends request i of a load test, cycling through both
// endpoints, streamed and whole, and checks the answer. It returns errBusy
// for a well-formed 429.
func loadRequest(client *http.Client, url string, i int) error {
	path, body := "/v1/completions", `{"model":"echo","prompt":"one two three four"`
	if i%2 == 1 {
		path, body = "/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"one two three four"}]`
	}
	stream := i%4 >= 2
	if stream {
		body += `,"stream":true}`
	} else {
		body += `}`
	}
	resp, err := client.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("request %d: %w", i, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("request %d: read body: %w", i, err)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		var e wireError
		if json.Unmarshal(data, &e) != nil || e.Error.Code != "queue_full" || resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("request %d: malformed 429: %s", i, data)
		}
		return errBusy
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("request %d: status %d: %s", i, resp.StatusCode, data)
	case stream && !strings.HasSuffix(string(data), "data: [DONE]\n\n"):
		return fmt.Errorf("request %d: stream not finished: %q", i, data)
	case !stream && !strings.Contains(string(data), "one two three four"):
		return fmt.Errorf("request %d: answer lacks the echo: %s", i, data)
	}
	return nil
}
