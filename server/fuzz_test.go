package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzRequestBody sends arbitrary bodies to both generation endpoints: every
// answer must be a success or a client error in OpenAI's shape, never a
// server error or a dropped connection.
func FuzzRequestBody(f *testing.F) {
	for _, seed := range []string{
		`{"model":"echo","prompt":"a b"}`,
		`{"model":"echo","prompt":["a"],"max_tokens":1,"stop":["\n"],"stream":true}`,
		`{"model":"echo","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"echo","messages":[{"role":"system","content":null}],"temperature":0,"top_p":1,"top_k":3,"seed":-1,"alpha":-2.5,"delta":"none"}`,
		`{"model":"echo","prompt":"x","n":2}`,
		`{"model":1}`,
		`[]`,
		`null`,
		`{"model":"echo","prompt":"x"}}`,
	} {
		f.Add(seed)
	}
	_, ts := start(f, &echoBackend{}, Config{MaxTokens: 8})
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/v1/completions", "/v1/chat/completions"} {
			resp, err := ts.Client().Post(ts.URL+path, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatalf("POST %s %q: %v", path, body, err)
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("POST %s %q: read body: %v", path, body, err)
			}
			switch resp.StatusCode {
			case http.StatusOK:
			case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge:
				var e wireError
				if err := json.Unmarshal(data, &e); err != nil || e.Error.Message == "" || e.Error.Code == "" {
					t.Fatalf("POST %s %q: malformed error %s", path, body, data)
				}
			default:
				t.Fatalf("POST %s %q: status %d: %s", path, body, resp.StatusCode, data)
			}
		}
	})
}
