package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	_, ts := start(t, &echoBackend{}, Config{APIKey: "sekret"})
	resp, body := do(t, "GET", ts.URL+"/health", "")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Fatalf("GET /health without a key: %d %s, want 200 {\"status\":\"ok\"}", resp.StatusCode, body)
	}
}

func TestModels(t *testing.T) {
	_, ts := start(t, &echoBackend{}, Config{})
	resp, body := do(t, "GET", ts.URL+"/v1/models", "")
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/models: %d %s (%v)", resp.StatusCode, body, err)
	}
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "echo" || list.Data[1].ID != "org/echo-7b.Q4_K_M.gguf" {
		t.Fatalf("model list %+v, want both echo models", list)
	}
	for _, m := range list.Data {
		if m.Object != "model" || m.Created <= 0 || m.OwnedBy == "" {
			t.Errorf("model %+v lacks object, created or owned_by", m)
		}
	}

	resp, body = do(t, "GET", ts.URL+"/v1/models/org/echo-7b.Q4_K_M.gguf", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"id":"org/echo-7b.Q4_K_M.gguf"`) {
		t.Fatalf("GET one model: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", ts.URL+"/v1/models/nope", "")
	expectError(t, resp, body, http.StatusNotFound, "model_not_found")
}

func TestCompletion(t *testing.T) {
	_, ts := start(t, &echoBackend{}, Config{})
	before := time.Now().Unix()
	resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"the cat sat"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		Model   string `json:"model"`
		Choices []struct {
			Text         string `json:"text"`
			Index        int    `json:"index"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if !strings.HasPrefix(got.ID, "cmpl-") || len(got.ID) < 15 || got.Object != "text_completion" || got.Model != "echo" || got.Created < before {
		t.Errorf("header id=%q object=%q model=%q created=%d", got.ID, got.Object, got.Model, got.Created)
	}
	if len(got.Choices) != 1 || got.Choices[0].Text != "the cat sat" || got.Choices[0].FinishReason != "stop" {
		t.Errorf("choices %+v, want one with the echoed prompt and finish_reason stop", got.Choices)
	}
	if resp.Header.Get("X-Request-Id") != got.ID {
		t.Errorf("X-Request-Id %q, want the body's id %q", resp.Header.Get("X-Request-Id"), got.ID)
	}
	if got.Usage.PromptTokens != 3 || got.Usage.CompletionTokens != 3 || got.Usage.TotalTokens != 6 {
		t.Errorf("usage %+v, want 3+3=6", got.Usage)
	}

	_, again := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"the cat sat"}`)
	var second struct{ ID string }
	json.Unmarshal(again, &second)
	if second.ID == got.ID {
		t.Errorf("two requests share the id %q", got.ID)
	}
}

func TestChatCompletion(t *testing.T) {
	b := &echoBackend{}
	_, ts := start(t, b, Config{})
	resp, body := do(t, "POST", ts.URL+"/v1/chat/completions", `{"model":"echo","messages":[
		{"role":"developer","content":"be brief"},
		{"role":"assistant","content":null},
		{"role":"user","content":[{"type":"text","text":"hello "},{"type":"text","text":"there"}]}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if !strings.HasPrefix(got.ID, "chatcmpl-") || got.Object != "chat.completion" {
		t.Errorf("id %q object %q", got.ID, got.Object)
	}
	if len(got.Choices) != 1 || got.Choices[0].Message.Role != "assistant" || got.Choices[0].Message.Content != "hello there" || got.Choices[0].FinishReason != "stop" {
		t.Errorf("choices %+v, want the assistant echoing \"hello there\"", got.Choices)
	}
	if got.Usage.TotalTokens != 4 {
		t.Errorf("total_tokens %d, want 4", got.Usage.TotalTokens)
	}
	want := []Message{{"system", "be brief"}, {"assistant", ""}, {"user", "hello there"}}
	if msgs := b.lastRequest().Messages; len(msgs) != 3 || msgs[0] != want[0] || msgs[1] != want[1] || msgs[2] != want[2] {
		t.Errorf("backend got messages %+v, want %+v", msgs, want)
	}
}

func TestRequestFields(t *testing.T) {
	b := &echoBackend{}
	_, ts := start(t, b, Config{MaxTokens: 2})

	resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":["one two three"],"max_tokens":100,
		"temperature":0,"top_p":0.5,"top_k":40,"seed":7,"stop":"\n","delta":"alpaca","alpha":0.5,"n":1,"presence_penalty":0}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	req := b.lastRequest()
	if req.Prompt != "one two three" || req.MaxTokens != 2 || req.Temperature != 0 || req.TopP != 0.5 || req.TopK != 40 ||
		req.Seed == nil || *req.Seed != 7 || len(req.Stop) != 1 || req.Stop[0] != "\n" ||
		req.Delta != "alpaca" || req.Alpha == nil || *req.Alpha != 0.5 {
		t.Errorf("backend got %+v", req)
	}
	if !strings.Contains(string(body), `"finish_reason":"length"`) || !strings.Contains(string(body), `"text":"one two"`) {
		t.Errorf("max_tokens above the server's cap should be clamped to it: %s", body)
	}

	do(t, "POST", ts.URL+"/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":1,"stop":["a","b"]}`)
	req = b.lastRequest()
	if req.MaxTokens != 1 || req.Temperature != 1 || req.TopP != 1 || req.TopK != 0 || req.Seed != nil || req.Alpha != nil || req.Delta != "" || len(req.Stop) != 2 {
		t.Errorf("defaults: backend got %+v", req)
	}
}

// chunk is a streamed event as a client decodes it, for both endpoints.
type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Text  string `json:"text"`
		Delta struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
}

// streamChunks posts a streaming request and decodes its events up to [DONE].
func streamChunks(t *testing.T, url, body string) []chunk {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readEvents(t, resp.Body)
	if len(events) == 0 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("stream %q does not end with [DONE]", events)
	}
	chunks := make([]chunk, len(events)-1)
	for i, data := range events[:len(events)-1] {
		if err := json.Unmarshal([]byte(data), &chunks[i]); err != nil {
			t.Fatalf("event %d %q: %v", i, data, err)
		}
	}
	return chunks
}

func TestCompletionStream(t *testing.T) {
	_, ts := start(t, &echoBackend{}, Config{})
	chunks := streamChunks(t, ts.URL+"/v1/completions", `{"model":"echo","prompt":"a b c","stream":true}`)
	if len(chunks) != 4 {
		t.Fatalf("%d chunks, want 3 words and a finish: %+v", len(chunks), chunks)
	}
	var text string
	for i, c := range chunks {
		if c.Object != "text_completion" || c.ID != chunks[0].ID || !strings.HasPrefix(c.ID, "cmpl-") || c.Model != "echo" || c.Created == 0 {
			t.Errorf("chunk %d header %+v", i, c)
		}
		if c.Usage != nil {
			t.Errorf("chunk %d has usage without stream_options.include_usage", i)
		}
		last := i == len(chunks)-1
		if fr := c.Choices[0].FinishReason; (fr == nil) != !last || (last && *fr != "stop") {
			t.Errorf("chunk %d finish_reason %v", i, fr)
		}
		text += c.Choices[0].Text
	}
	if text != "a b c" {
		t.Errorf("streamed text %q, want \"a b c\"", text)
	}

	chunks = streamChunks(t, ts.URL+"/v1/completions", `{"model":"echo","prompt":"a b c","stream":true,"stream_options":{"include_usage":true}}`)
	last := chunks[len(chunks)-1]
	if len(chunks) != 5 || last.Object != "text_completion" || len(last.Choices) != 0 || last.Usage == nil || last.Usage.TotalTokens != 6 {
		t.Errorf("with include_usage: %d chunks ending in %+v, want a fifth with 3+3 tokens and no choices", len(chunks), last)
	}
}

func TestChatStream(t *testing.T) {
	_, ts := start(t, &echoBackend{}, Config{})
	chunks := streamChunks(t, ts.URL+"/v1/chat/completions",
		`{"model":"echo","messages":[{"role":"user","content":"x y"}],"max_tokens":1,"stream":true,"stream_options":{"include_usage":true}}`)
	if len(chunks) != 3 {
		t.Fatalf("%d chunks, want a word, a finish and usage: %+v", len(chunks), chunks)
	}
	for i, c := range chunks {
		if c.Object != "chat.completion.chunk" || c.ID != chunks[0].ID || !strings.HasPrefix(c.ID, "chatcmpl-") {
			t.Errorf("chunk %d header %+v", i, c)
		}
	}
	if d := chunks[0].Choices[0].Delta; d.Role != "assistant" || d.Content != "x" {
		t.Errorf("first delta %+v, want the assistant role and \"x\"", d)
	}
	if fr := chunks[1].Choices[0].FinishReason; fr == nil || *fr != "length" || chunks[1].Choices[0].Delta.Role != "" {
		t.Errorf("finish chunk %+v, want finish_reason length and no role", chunks[1])
	}
	if len(chunks[2].Choices) != 0 || chunks[2].Usage == nil || chunks[2].Usage.TotalTokens != 3 {
		t.Errorf("usage chunk %+v, want no choices and 2+1 tokens", chunks[2])
	}
}

// A streamed piece must reach the client while generation is still going.
func TestStreamFlushesEachPiece(t *testing.T) {
	b := newBlockingBackend()
	_, ts := start(t, b, Config{})
	// Release the generation however the test ends, so that a missing flush
	// fails the test instead of hanging it.
	defer close(b.release)
	lines := make(chan string, 1)
	go func() {
		resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"model":"echo","prompt":"early","stream":true}`))
		if err != nil {
			lines <- err.Error()
			return
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil {
			line = err.Error()
		}
		lines <- line
	}()
	if line := receive(t, lines, "the first piece while generating"); !strings.Contains(line, `"text":"early"`) {
		t.Fatalf("first line %q, want the first piece", line)
	}
}

func TestBadRequests(t *testing.T) {
	_, ts := start(t, &echoBackend{}, Config{})
	cases := []struct {
		name, path, body string
		status           int
		code, mention    string // mention: a word the message must contain
		param            string // the field blamed; "" for none
	}{
		{"broken JSON", "/v1/completions", `{"model":"echo",`, 400, "invalid_json", "not valid JSON", ""},
		{"trailing data", "/v1/completions", `{"model":"echo","prompt":"x"} {}`, 400, "invalid_json", "not valid JSON", ""},
		{"empty body", "/v1/chat/completions", ``, 400, "invalid_json", "empty", ""},
		{"array body", "/v1/completions", `[1]`, 400, "invalid_json", "JSON object", ""},
		{"wrong type", "/v1/completions", `{"model":"echo","prompt":"x","max_tokens":"ten"}`, 400, "invalid_value", "max_tokens must be an integer, not string", "max_tokens"},
		{"wrong chat type", "/v1/chat/completions", `{"model":"echo","messages":[],"max_completion_tokens":"x"}`, 400, "invalid_value", "max_completion_tokens must be an integer", "max_completion_tokens"},
		{"fractional max_tokens", "/v1/completions", `{"model":"echo","prompt":"x","max_tokens":1.5}`, 400, "invalid_value", "max_tokens: 1.5 is not an integer in range", "max_tokens"},
		{"bad stop", "/v1/completions", `{"model":"echo","prompt":"x","stop":3}`, 400, "invalid_value", "stop", "stop"},
		{"empty stop", "/v1/completions", `{"model":"echo","prompt":"x","stop":[""]}`, 400, "invalid_value", "stop[0]", "stop"},
		{"no model", "/v1/completions", `{"prompt":"x"}`, 400, "invalid_value", "model is required", "model"},
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}`, 404, "model_not_found", "gpt-4", "model"},
		{"no prompt", "/v1/completions", `{"model":"echo"}`, 400, "invalid_value", "prompt is required", "prompt"},
		{"empty token prompt", "/v1/completions", `{"model":"echo","prompt":[[1],[]]}`, 400, "invalid_value", "prompt[1]", "prompt"},
		{"mixed prompt", "/v1/completions", `{"model":"echo","prompt":[1,"a"]}`, 400, "invalid_value", "token ids", "prompt"},
		{"two prompts streamed", "/v1/completions", `{"model":"echo","prompt":["a","b"],"stream":true}`, 400, "invalid_value", "one completion", "prompt"},
		{"no messages", "/v1/chat/completions", `{"model":"echo","messages":[]}`, 400, "invalid_value", "messages is required", "messages"},
		{"bad role", "/v1/chat/completions", `{"model":"echo","messages":[{"role":"robot","content":"x"}]}`, 400, "invalid_value", "messages[0].role", "messages"},
		{"image part", "/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`, 400, "invalid_value", "messages[0].content[1] is a \"image_url\" part", "messages[0].content[1]"},
		{"top_logprobs alone", "/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"x"}],"top_logprobs":2}`, 400, "invalid_value", "logprobs", "top_logprobs"},
		{"too many top_logprobs", "/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}`, 400, "invalid_value", "between 0 and 20", "top_logprobs"},
		{"too many legacy logprobs", "/v1/completions", `{"model":"echo","prompt":"x","logprobs":30}`, 400, "invalid_value", "between 0 and 20", "logprobs"},
		{"zero max_tokens without echo", "/v1/completions", `{"model":"echo","prompt":"x","max_tokens":0}`, 400, "invalid_value", "only with echo", "max_tokens"},
		{"bad logit_bias key", "/v1/completions", `{"model":"echo","prompt":"x","logit_bias":{"abc":1}}`, 400, "invalid_value", "token ids", "logit_bias"},
		{"big logit_bias", "/v1/completions", `{"model":"echo","prompt":"x","logit_bias":{"5":101}}`, 400, "invalid_value", "between -100 and 100", "logit_bias"},
		{"big frequency_penalty", "/v1/chat/completions", `{"model":"echo","messages":[{"role":"user","content":"x"}],"frequency_penalty":3}`, 400, "invalid_value", "between -2 and 2", "frequency_penalty"},
		{"negative repeat_penalty", "/v1/completions", `{"model":"echo","prompt":"x","repeat_penalty":-1}`, 400, "invalid_value", "repeat_penalty", "repeat_penalty"},
		{"n above 1", "/v1/completions", `{"model":"echo","prompt":"x","n":2}`, 400, "invalid_value", "n must be 1", "n"},
		{"zero max_tokens", "/v1/completions", `{"model":"echo","prompt":"x","max_tokens":0}`, 400, "invalid_value", "max_tokens", "max_tokens"},
		{"hot temperature", "/v1/completions", `{"model":"echo","prompt":"x","temperature":2.5}`, 400, "invalid_value", "temperature", "temperature"},
		{"zero top_p", "/v1/completions", `{"model":"echo","prompt":"x","top_p":0}`, 400, "invalid_value", "top_p", "top_p"},
		{"negative top_k", "/v1/completions", `{"model":"echo","prompt":"x","top_k":-1}`, 400, "invalid_value", "top_k", "top_k"},
		{"huge alpha", "/v1/completions", `{"model":"echo","prompt":"x","alpha":1e999}`, 400, "invalid_value", "alpha: 1e999 is not a number in range", "alpha"},
		{"oversized", "/v1/completions", `{"model":"echo","prompt":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "request_too_large", "limit", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, "POST", ts.URL+c.path, c.body)
			e := expectError(t, resp, body, c.status, c.code)
			if !strings.Contains(e.Error.Message, c.mention) {
				t.Errorf("message %q does not mention %q", e.Error.Message, c.mention)
			}
			if got := e.Error.Param; (got == nil) != (c.param == "") || got != nil && *got != c.param {
				t.Errorf("param %v, want %q", got, c.param)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	_, ts := start(t, &echoBackend{}, Config{})
	resp, body := do(t, "GET", ts.URL+"/v1/completions", "")
	expectError(t, resp, body, http.StatusMethodNotAllowed, "method_not_allowed")
	if resp.Header.Get("Allow") != "POST" {
		t.Errorf("Allow %q, want POST", resp.Header.Get("Allow"))
	}
	resp, body = do(t, "DELETE", ts.URL+"/v1/models", "")
	expectError(t, resp, body, http.StatusMethodNotAllowed, "method_not_allowed")
	resp, body = do(t, "GET", ts.URL+"/v1/embeddings", "")
	expectError(t, resp, body, http.StatusNotFound, "not_found")
	resp, body = do(t, "GET", ts.URL+"/", "")
	expectError(t, resp, body, http.StatusNotFound, "not_found")
}

func TestAPIKey(t *testing.T) {
	_, ts := start(t, &echoBackend{}, Config{APIKey: "sekret"})
	chat := `{"model":"echo","messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct {
		name, path, auth string
	}{
		{"missing", "/v1/chat/completions", ""},
		{"wrong", "/v1/chat/completions", "Bearer sekret2"},
		{"prefix of the key", "/v1/chat/completions", "Bearer sekre"},
		{"not bearer", "/v1/chat/completions", "Basic sekret"},
		{"models", "/v1/models", ""},
		{"unknown endpoint", "/v1/nothing", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, "POST", ts.URL+c.path, chat, "Authorization", c.auth)
			expectError(t, resp, body, http.StatusUnauthorized, "invalid_api_key")
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	for _, auth := range []string{"Bearer sekret", "bearer sekret"} {
		resp, body := do(t, "POST", ts.URL+"/v1/chat/completions", chat, "Authorization", auth)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("with %q: %d %s", auth, resp.StatusCode, body)
		}
	}
	resp, body := do(t, "GET", ts.URL+"/v1/models", "", "Authorization", "Bearer sekret")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/models with the key: %d %s", resp.StatusCode, body)
	}
}

func TestBackendErrors(t *testing.T) {
	badDelta := &RequestError{Param: "delta", Message: `unknown delta "nope"`}
	t.Run("request error", func(t *testing.T) {
		_, ts := start(t, scriptedBackend{err: badDelta}, Config{})
		for _, stream := range []string{"false", "true"} {
			resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"x","delta":"nope","stream":`+stream+`}`)
			e := expectError(t, resp, body, http.StatusBadRequest, "invalid_value")
			if e.Error.Param == nil || *e.Error.Param != "delta" || e.Error.Message != badDelta.Message {
				t.Errorf("stream=%s: error %+v, want the backend's message about delta", stream, e.Error)
			}
		}
	})
	t.Run("internal error", func(t *testing.T) {
		_, ts := start(t, scriptedBackend{err: errors.New("llama_decode returned -1")}, Config{})
		resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"x"}`)
		e := expectError(t, resp, body, http.StatusInternalServerError, "generation_failed")
		if strings.Contains(e.Error.Message, "llama_decode") {
			t.Errorf("internal detail leaked to the client: %q", e.Error.Message)
		}
	})
	t.Run("error mid-stream", func(t *testing.T) {
		_, ts := start(t, scriptedBackend{pieces: []string{"par", "tial"}, err: errors.New("out of memory")}, Config{})
		resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"echo","messages":[{"role":"user","content":"x"}],"stream":true}`))
		if err != nil {
			t.Fatalf("post: %v", err)
		}
		defer resp.Body.Close()
		events := readEvents(t, resp.Body)
		if len(events) != 3 || !strings.Contains(events[0], `"content":"par"`) {
			t.Fatalf("events %q, want two pieces and an error", events)
		}
		var e wireError
		if err := json.Unmarshal([]byte(events[2]), &e); err != nil || e.Error.Code != "generation_failed" {
			t.Errorf("last event %q (%v), want a generation_failed error and no [DONE]", events[2], err)
		}
	})
}

// Tokens may split a character's UTF-8 bytes; the stream must carry whole
// characters only, or JSON would turn each half into U+FFFD.
func TestStreamJoinsSplitCharacters(t *testing.T) {
	for _, c := range []struct {
		pieces []string
		want   string
	}{
		{[]string{"caf", "\xc3", "\xa9 ", "\xf0\x9f", "\x98", "\x80!"}, "café 😀!"},
		// A character never finished still reaches the client, as U+FFFD.
		{[]string{"a", "\xc3"}, "a\uFFFD"},
	} {
		_, ts := start(t, scriptedBackend{pieces: c.pieces}, Config{})
		chunks := streamChunks(t, ts.URL+"/v1/completions", `{"model":"echo","prompt":"x","stream":true}`)
		var text string
		for _, ch := range chunks {
			text += ch.Choices[0].Text
		}
		if text != c.want {
			t.Errorf("pieces %q streamed as %q, want %q", c.pieces, text, c.want)
		}
	}
}

func TestSplitIncomplete(t *testing.T) {
	for _, c := range []struct{ in, whole, rest string }{
		{"", "", ""},
		{"abc", "abc", ""},
		{"caf\xc3", "caf", "\xc3"},
		{"café", "café", ""},
		{"a\xf0\x9f\x98", "a", "\xf0\x9f\x98"},
		{"😀", "😀", ""},
		{"a\xff", "a\xff", ""},                 // invalid, not incomplete: nothing to wait for
		{"a\x80\x80\x80", "a\x80\x80\x80", ""}, // stray continuation bytes
	} {
		whole, rest := splitIncomplete(c.in)
		if whole != c.whole || rest != c.rest {
			t.Errorf("splitIncomplete(%q) = %q, %q; want %q, %q", c.in, whole, rest, c.whole, c.rest)
		}
	}
}

// TestAlphaRange: alpha beyond control.MaxAlpha (1e308 used to give NaN
// scores and empty text) is a 400 naming the field and the range.
func TestAlphaRange(t *testing.T) {
	b := &echoBackend{}
	_, ts := start(t, b, Config{})
	for _, alpha := range []string{"1e308", "-10.5", "11"} {
		resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"x","alpha":`+alpha+`}`)
		e := expectError(t, resp, body, http.StatusBadRequest, "invalid_value")
		if e.Error.Param == nil || *e.Error.Param != "alpha" || !strings.Contains(e.Error.Message, "between -10 and 10") {
			t.Errorf("alpha %s: error %+v, want param alpha and the range", alpha, e.Error)
		}
	}
	resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"x","alpha":-10}`)
	if resp.StatusCode != http.StatusOK || *b.lastRequest().Alpha != -10 {
		t.Fatalf("alpha -10 (the bound): %d %s", resp.StatusCode, body)
	}
}
