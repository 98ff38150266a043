package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// reply is the outcome of a request sent in the background.
type reply struct {
	status int
	header http.Header
	body   string
	err    error
}

// send posts a completion for prompt in the background; ctx lets the test
// play a client that hangs up.
func send(ctx context.Context, client *http.Client, url, prompt string, stream bool) <-chan reply {
	out := make(chan reply, 1)
	go func() {
		body := `{"model":"echo","prompt":"` + prompt + `","stream":` + strconv.FormatBool(stream) + `}`
		req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/completions", strings.NewReader(body))
		if err != nil {
			out <- reply{err: err}
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			out <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		out <- reply{status: resp.StatusCode, header: resp.Header, body: string(data), err: err}
	}()
	return out
}

// admitted counts the requests running or waiting in s.
func admitted(s *Server) int { return len(s.gate.admitted) }

func TestQueueFull(t *testing.T) {
	b := newBlockingBackend()
	s, ts := start(t, b, Config{Concurrency: 1, QueueSize: 1})
	ctx := context.Background()

	running := send(ctx, ts.Client(), ts.URL, "first", false)
	receive(t, b.started, "the first generation")
	waiting := send(ctx, ts.Client(), ts.URL, "second", true)
	waitFor(t, "the second request to wait", func() bool { return admitted(s) == 2 })

	resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"third"}`)
	expectError(t, resp, body, http.StatusTooManyRequests, "queue_full")
	if resp.Header.Get("Retry-After") == "" || !strings.HasPrefix(resp.Header.Get("X-Request-Id"), "cmpl-") {
		t.Errorf("429 headers %v, want Retry-After and X-Request-Id", resp.Header)
	}

	b.release <- struct{}{}
	if r := receive(t, running, "the first reply"); r.status != http.StatusOK || !strings.Contains(r.body, `"text":"first"`) {
		t.Errorf("first request: %+v", r)
	}
	if p := receive(t, b.started, "the second generation"); p != "second" {
		t.Errorf("second generation got prompt %q", p)
	}
	b.release <- struct{}{}
	if r := receive(t, waiting, "the second reply"); r.status != http.StatusOK || !strings.HasSuffix(r.body, "data: [DONE]\n\n") {
		t.Errorf("second request: %+v", r)
	}
	if n := admitted(s); n != 0 {
		t.Errorf("%d requests still admitted after all replied", n)
	}
}

func TestNoWaitingRoom(t *testing.T) {
	b := newBlockingBackend()
	_, ts := start(t, b, Config{Concurrency: 1, QueueSize: -1})
	running := send(context.Background(), ts.Client(), ts.URL, "first", false)
	receive(t, b.started, "the first generation")
	resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"second"}`)
	expectError(t, resp, body, http.StatusTooManyRequests, "queue_full")
	b.release <- struct{}{}
	receive(t, running, "the first reply")
}

func TestClientDisconnectCancelsGeneration(t *testing.T) {
	for _, stream := range []bool{false, true} {
		b := newBlockingBackend()
		s, ts := start(t, b, Config{})
		ctx, hangUp := context.WithCancel(context.Background())
		r := send(ctx, ts.Client(), ts.URL, "bye", stream)
		receive(t, b.started, "the generation")
		hangUp()
		if err := receive(t, b.ended, "the generation to end"); !errors.Is(err, context.Canceled) {
			t.Errorf("stream=%v: generation ended with %v, want context.Canceled", stream, err)
		}
		if reply := receive(t, r, "the client to give up"); reply.err == nil {
			t.Errorf("stream=%v: the client got a reply after hanging up: %+v", stream, reply)
		}
		waitFor(t, "the slot to be freed", func() bool { return admitted(s) == 0 })
	}
}

func TestClientDisconnectLeavesQueue(t *testing.T) {
	b := newBlockingBackend()
	s, ts := start(t, b, Config{Concurrency: 1, QueueSize: 1})
	running := send(context.Background(), ts.Client(), ts.URL, "first", false)
	receive(t, b.started, "the first generation")

	ctx, hangUp := context.WithCancel(context.Background())
	send(ctx, ts.Client(), ts.URL, "second", false)
	waitFor(t, "the second request to wait", func() bool { return admitted(s) == 2 })
	hangUp()
	waitFor(t, "the second request to leave the queue", func() bool { return admitted(s) == 1 })

	b.release <- struct{}{}
	receive(t, running, "the first reply")
	select {
	case p := <-b.started:
		t.Errorf("a generation for %q started after its client hung up", p)
	default:
	}
}

func TestRequestTimeout(t *testing.T) {
	b := newBlockingBackend()
	_, ts := start(t, b, Config{RequestTimeout: 200 * time.Millisecond})
	resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"slow"}`)
	expectError(t, resp, body, http.StatusGatewayTimeout, "timeout")
	if err := receive(t, b.ended, "the generation to end"); !errors.Is(err, errRequestTimeout) {
		t.Errorf("generation ended with %v, want the request timeout", err)
	}
}

// serve runs s on a fresh loopback listener until the returned cancel is
// called; done yields what Serve returned.
func serve(t *testing.T, s *Server) (url string, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	t.Cleanup(cancel)
	return "http://" + ln.Addr().String(), cancel, errc
}

func TestShutdownLetsRunningFinishAndTurnsAwayWaiting(t *testing.T) {
	b := newBlockingBackend()
	s := New(b, Config{Concurrency: 1, QueueSize: 4, ShutdownGrace: 5 * time.Second}, slog.New(slog.DiscardHandler))
	url, stop, done := serve(t, s)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	running := send(context.Background(), client, url, "first", true)
	receive(t, b.started, "the first generation")
	waiting := send(context.Background(), client, url, "second", false)
	waitFor(t, "the second request to wait", func() bool { return admitted(s) == 2 })

	stop()
	r := receive(t, waiting, "the waiting request's reply")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"code":"shutting_down"`) {
		t.Errorf("waiting request during shutdown: %+v, want 503 shutting_down", r)
	}
	waitFor(t, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v while a generation was running", err)
	default:
	}

	b.release <- struct{}{}
	if r := receive(t, running, "the running request's reply"); r.status != http.StatusOK || !strings.HasSuffix(r.body, "data: [DONE]\n\n") {
		t.Errorf("running request during shutdown: %+v, want a whole stream", r)
	}
	if err := receive(t, done, "Serve to return"); err != nil {
		t.Errorf("Serve returned %v", err)
	}
}

func TestShutdownCancelsGenerationsAfterGrace(t *testing.T) {
	b := newBlockingBackend()
	s := New(b, Config{ShutdownGrace: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	url, stop, done := serve(t, s)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	running := send(context.Background(), client, url, "endless", false)
	receive(t, b.started, "the generation")
	stop()
	if err := receive(t, b.ended, "the generation to be cancelled"); !errors.Is(err, errShuttingDown) {
		t.Errorf("generation ended with %v, want the shutdown cause", err)
	}
	if err := receive(t, done, "Serve to return"); err != nil {
		t.Errorf("Serve returned %v", err)
	}
	if r := receive(t, running, "the client to be answered or cut off"); r.status == http.StatusOK {
		t.Errorf("a cancelled generation was answered 200: %+v", r)
	}
	if n := admitted(s); n != 0 {
		t.Errorf("%d requests still admitted after Serve returned", n)
	}
}

// floodBackend emits 1 MiB pieces until emit fails, and reports that failure.
type floodBackend struct{ failed chan error }

func (b floodBackend) Models() []string { return []string{"echo"} }

func (b floodBackend) Generate(ctx context.Context, req Request, emit func(string) error) (Result, error) {
	piece := strings.Repeat("x", 1<<20)
	for range 256 { // far beyond what loopback socket buffers hold
		if err := emit(piece); err != nil {
			b.failed <- err
			return Result{}, err
		}
	}
	b.failed <- nil
	return Result{Text: "all of it", FinishReason: "length"}, nil
}

// A client that stops reading but keeps its connection open must not hold a
// generation slot forever.
func TestStalledClientFreesSlot(t *testing.T) {
	b := floodBackend{failed: make(chan error, 1)}
	s, ts := start(t, b, Config{})
	s.eventWriteTimeout = 100 * time.Millisecond

	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	body := `{"model":"echo","prompt":"x","stream":true}`
	_, err = io.WriteString(conn, "POST /v1/completions HTTP/1.1\r\nHost: cmc\r\nContent-Type: application/json\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	if err != nil {
		t.Fatalf("send request: %v", err)
	}
	if err := receive(t, b.failed, "emit to fail"); err == nil {
		t.Fatal("256 MiB went to a client that reads nothing")
	}
	waitFor(t, "the slot to be freed", func() bool { return admitted(s) == 0 })
}

func TestListenAndServe(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer taken.Close()
	s := New(&echoBackend{}, Config{Addr: taken.Addr().String()}, nil)
	if err := s.ListenAndServe(context.Background()); err == nil || !strings.Contains(err.Error(), "listen on "+taken.Addr().String()) {
		t.Errorf("ListenAndServe on a taken port: %v, want an error naming the address", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s = New(&echoBackend{}, Config{Addr: "127.0.0.1:0"}, nil)
	if err := s.ListenAndServe(ctx); err != nil {
		t.Errorf("ListenAndServe with a cancelled context: %v, want a clean shutdown", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for _, c := range []struct {
		ip   string
		want bool
	}{{"127.0.0.1", true}, {"::1", true}, {"0.0.0.0", false}, {"192.168.1.2", false}} {
		if got := isLoopback(&net.TCPAddr{IP: net.ParseIP(c.ip)}); got != c.want {
			t.Errorf("isLoopback(%s) = %v", c.ip, got)
		}
	}
}

// Waiting requests get the slot in the order they came, so none starves.
func TestQueueIsFirstComeFirstServed(t *testing.T) {
	b := newBlockingBackend()
	s, ts := start(t, b, Config{Concurrency: 1, QueueSize: 3})
	var replies []<-chan reply
	for i, prompt := range []string{"a", "b", "c", "d"} {
		replies = append(replies, send(context.Background(), ts.Client(), ts.URL, prompt, false))
		waitFor(t, "request "+prompt+" to be admitted", func() bool { return admitted(s) == i+1 })
	}
	for _, want := range []string{"a", "b", "c", "d"} {
		if got := receive(t, b.started, "generation "+want); got != want {
			t.Fatalf("generation for %q started when %q was next in line", got, want)
		}
		b.release <- struct{}{}
	}
	for i, r := range replies {
		if got := receive(t, r, "a reply"); got.status != http.StatusOK {
			t.Errorf("request %d: %+v", i, got)
		}
	}
}
