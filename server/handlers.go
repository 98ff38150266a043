package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// retryAfterSeconds is what a 429 asks clients to wait: long enough for a
// short generation to free a slot, short enough not to idle a free server.
const retryAfterSeconds = 2

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/health", allow(http.MethodGet, s.health))
	mux.Handle("/v1/models", s.requireKey(allow(http.MethodGet, s.listModels)))
	mux.Handle("/v1/models/{model...}", s.requireKey(allow(http.MethodGet, s.getModel)))
	mux.Handle("/v1/completions", s.requireKey(allow(http.MethodPost, s.completions)))
	mux.Handle("/v1/chat/completions", s.requireKey(allow(http.MethodPost, s.chatCompletions)))
	mux.Handle("/v1/", s.requireKey(http.HandlerFunc(notFound)))
	mux.Handle("/", http.HandlerFunc(notFound))
	return s.logRequests(mux)
}

// allow answers 405 in OpenAI's error shape for any method but the one given;
// the mux's own method patterns would answer in plain text.
func allow(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, newAPIError(http.StatusMethodNotAllowed, typeInvalidRequest, "method_not_allowed",
				"%s %s is not supported; use %s", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, newAPIError(http.StatusNotFound, typeInvalidRequest, "not_found", "no endpoint at %s", r.URL.Path))
}

// requireKey lets a request through only with the configured bearer key.
func (s *Server) requireKey(next http.Handler) http.Handler {
	if s.cfg.APIKey == "" {
		return next
	}
	want := []byte(s.cfg.APIKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		scheme, key, _ := strings.Cut(header, " ")
		var e *apiError
		switch {
		case header == "":
			e = newAPIError(http.StatusUnauthorized, typeInvalidRequest, "invalid_api_key",
				"missing API key: send the header \"Authorization: Bearer KEY\"")
		case !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(key), want) != 1:
			e = newAPIError(http.StatusUnauthorized, typeInvalidRequest, "invalid_api_key", "invalid API key")
		default:
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="cmc"`)
		writeError(w, e)
	})
}

// statusRecorder remembers the status a handler wrote, and why a client
// got no (whole) answer, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	gone   error // the client went away: how the server noticed
}

// clientGone notes on the access-log line of w's request that its client
// went away, so that the one line says so instead of a second one.
func clientGone(w http.ResponseWriter, err error) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.gone = err
	}
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection to flush streams.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests writes one access-log line per request. A client that went
// away is told by that line, with client_went_away naming how the server
// noticed; status 0 then means no answer was written at all.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration", time.Since(start), "remote", r.RemoteAddr, "id", w.Header().Get("X-Request-Id")}
		if rec.gone != nil {
			attrs = append(attrs, "client_went_away", rec.gone.Error())
		}
		s.log.Info("request", attrs...)
	})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

func (s *Server) model(id string) modelObject {
	return modelObject{ID: id, Object: "model", Created: s.started.Unix(), OwnedBy: "cmc"}
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	list := modelList{Object: "list", Data: []modelObject{}}
	for _, id := range s.backend.Models() {
		list.Data = append(list.Data, s.model(id))
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("model")
	if !slices.Contains(s.backend.Models(), id) {
		writeError(w, modelNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, s.model(id))
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var (
		common commonFields
		own    completionFields
	)
	if e := decodeBody(w, r, s.cfg.MaxBodyBytes, &common, &own); e != nil {
		writeError(w, e)
		return
	}
	minTokens := 1
	if own.Echo {
		minTokens = 0
	}
	req, e := s.toRequest(common, common.MaxTokens, minTokens)
	var prompts []prompt
	if e == nil {
		prompts, e = parsePrompts(own.Prompt)
	}
	if e == nil && own.Logprobs != nil {
		e = topLogprobs("logprobs", *own.Logprobs)
		req.Logprobs, req.TopLogprobs = true, *own.Logprobs
	}
	if e == nil && common.Stream {
		switch {
		case len(prompts) > 1:
			e = invalidParam("prompt", "a stream carries one completion: send %d prompts without \"stream\": true, or one at a time", len(prompts))
		case own.Echo && prompts[0].tokens != nil:
			e = invalidParam("echo", "echo of a token-id prompt is not supported in a stream; send it without \"stream\": true")
		}
	}
	if e != nil {
		writeError(w, e)
		return
	}
	req.Echo = own.Echo
	reqs := make([]Request, len(prompts))
	for i, p := range prompts {
		reqs[i] = req
		reqs[i].Prompt, reqs[i].PromptTokens = p.text, p.tokens
	}
	f := &completionFormat{header: newHeader("cmpl-", req.Model), echo: req.Echo, logprobs: req.Logprobs}
	s.generate(w, r, reqs, common, f)
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var (
		common commonFields
		own    chatFields
	)
	if e := decodeBody(w, r, s.cfg.MaxBodyBytes, &common, &own); e != nil {
		writeError(w, e)
		return
	}
	maxTokens := common.MaxTokens
	if own.MaxCompletionTokens != nil {
		maxTokens = own.MaxCompletionTokens
	}
	req, e := s.toRequest(common, maxTokens, 1)
	if e == nil {
		req.Messages, e = parseMessages(own.Messages)
	}
	if e == nil && own.Logprobs != nil {
		req.Logprobs = *own.Logprobs
	}
	if e == nil && own.TopLogprobs != nil {
		if e = topLogprobs("top_logprobs", *own.TopLogprobs); e == nil && !req.Logprobs {
			e = invalidParam("top_logprobs", "top_logprobs needs \"logprobs\": true")
		}
		req.TopLogprobs = *own.TopLogprobs
	}
	if e != nil {
		writeError(w, e)
		return
	}
	f := &chatFormat{header: newHeader("chatcmpl-", req.Model), logprobs: req.Logprobs}
	s.generate(w, r, []Request{req}, common, f)
}

// generate runs reqs (one per prompt) once a slot is free and answers in f's
// format, whole or as a stream (of one request) as the body asked.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, reqs []Request, body commonFields, f format) {
	// The id in a header too, so that clients and the access log can name
	// requests that never got a body: a 429, a 500, a dropped stream.
	w.Header().Set("X-Request-Id", f.id())
	ctx := r.Context()
	if s.cfg.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, s.cfg.RequestTimeout, errRequestTimeout)
		defer cancel()
	}
	if body.Stream {
		s.stream(ctx, w, reqs[0], body.StreamOptions != nil && body.StreamOptions.IncludeUsage, f)
	} else {
		s.whole(ctx, w, reqs, f)
	}
}

// whole answers with the finished completions in one JSON body.
func (s *Server) whole(ctx context.Context, w http.ResponseWriter, reqs []Request, f format) {
	results, err := s.run(ctx, reqs, func(string) error { return ctx.Err() })
	if err != nil {
		if e := s.failure(ctx, f.id(), err); e != nil {
			writeError(w, e)
		} else {
			clientGone(w, err)
		}
		return
	}
	writeJSON(w, http.StatusOK, f.response(results))
}

// stream answers with one event per piece as the backend produces it, a
// closing event with the finish reason (and the log-probs, if asked for),
// optionally the usage, then [DONE].
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, req Request, includeUsage bool, f format) {
	events := &eventStream{w: w, rc: http.NewResponseController(w), timeout: s.eventWriteTimeout}
	// A token may end inside a multi-byte character, which JSON would turn
	// into U+FFFD; such a tail waits for the piece that completes it.
	var tail string
	// An echoed prompt is the stream's first piece, sent with the first
	// generated one so that errors before it keep their status code.
	echo := ""
	if req.Echo {
		echo = req.Prompt
	}
	results, err := s.run(ctx, []Request{req}, func(piece string) error {
		var text string
		text, tail = splitIncomplete(echo + tail + piece)
		echo = ""
		if text == "" {
			return nil
		}
		return events.send(f.chunk(text))
	})
	switch {
	case events.err != nil:
		clientGone(w, events.err)
	case err != nil:
		e := s.failure(ctx, f.id(), err)
		switch {
		case e == nil:
			clientGone(w, err)
		case events.started:
			// The status line is gone; an error event is how OpenAI's
			// clients learn that a stream failed.
			events.send(errorBody{e})
		default:
			writeError(w, e)
		}
	default:
		if tail += echo; tail != "" {
			// Never completed (or nothing was generated after the echo):
			// send it for what it is.
			events.send(f.chunk(tail))
		}
		events.send(f.finish(results[0]))
		if includeUsage {
			events.send(f.usageChunk(results[0]))
		}
		events.write([]byte("data: [DONE]\n\n"))
	}
}

// run generates reqs one after another in one gate slot, waiting for one
// if need be.
func (s *Server) run(ctx context.Context, reqs []Request, emit func(string) error) ([]Result, error) {
	if err := s.gate.enter(ctx); err != nil {
		return nil, err
	}
	defer s.gate.leave()
	results := make([]Result, len(reqs))
	for i, req := range reqs {
		res, err := s.backend.Generate(ctx, req, emit)
		if err != nil {
			return nil, err
		}
		results[i] = res
	}
	return results, nil
}

// failure turns a failed generation into the error the client should see,
// or nil when the client went away and there is no one to tell.
func (s *Server) failure(ctx context.Context, id string, err error) *apiError {
	var reqErr *RequestError
	switch cause := context.Cause(ctx); {
	case errors.Is(err, errQueueFull):
		e := newAPIError(http.StatusTooManyRequests, typeRateLimit, "queue_full",
			"the server is busy: %d generations are running and %d waiting; retry later", s.cfg.Concurrency, s.cfg.QueueSize)
		e.retryAfter = retryAfterSeconds
		return e
	case errors.Is(err, errShuttingDown) || errors.Is(cause, errShuttingDown):
		e := newAPIError(http.StatusServiceUnavailable, typeServer, "shutting_down", "the server is shutting down; retry on another instance or later")
		e.closeConn = true
		return e
	case errors.Is(cause, errRequestTimeout):
		return newAPIError(http.StatusGatewayTimeout, typeServer, "timeout",
			"the request took longer than the server's limit of %s (waiting plus generating)", s.cfg.RequestTimeout)
	case errors.As(err, &reqErr):
		e := newAPIError(http.StatusBadRequest, typeInvalidRequest, "invalid_value", "%s", reqErr.Message)
		if reqErr.Param != "" {
			e.Param = &reqErr.Param
		}
		return e
	case ctx.Err() != nil:
		return nil // the client went away: the access log says so
	default:
		s.log.Error("generation failed", "id", id, "err", err)
		return newAPIError(http.StatusInternalServerError, typeServer, "generation_failed",
			"generation failed; the server log has the details under id %s", id)
	}
}

// splitIncomplete splits s before a multi-byte character that it starts but
// does not finish; rest is empty when s ends on a whole character.
func splitIncomplete(s string) (whole, rest string) {
	// The last character starts at most utf8.UTFMax-1 bytes from the end.
	for i := len(s) - 1; i >= 0 && i > len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i], s[i:]
			}
			break
		}
	}
	return s, ""
}
