package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/cmc-dev/cmc/server"
)

// shout is a Backend that answers every chat with its last message in capitals.
type shout struct{}

func (shout) Models() []string { return []string{"shout"} }

func (shout) Generate(ctx context.Context, req server.Request, emit func(string) error) (server.Result, error) {
	text := strings.ToUpper(req.Messages[len(req.Messages)-1].Content)
	if err := emit(text); err != nil {
		return server.Result{}, err
	}
	return server.Result{Text: text, FinishReason: "stop", PromptTokens: 1, CompletionTokens: 1}, nil
}

func Example() {
	s := server.New(shout{}, server.Config{APIKey: "sekret"}, nil)
	// A real program calls s.ListenAndServe(ctx) and cancels ctx on SIGTERM.
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	req, _ := http.NewRequest("POST", ts.URL+"/v1/chat/completions", strings.NewReader(
		`{"model":"shout","messages":[{"role":"user","content":"hello"}],"stream":true,"delta":"none"}`))
	req.Header.Set("Authorization", "Bearer sekret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, event := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		// Blank out the id and the timestamp, which change from run to run.
		if i, j := strings.Index(event, `"id":"`), strings.Index(event, `,"model"`); i >= 0 && j > i {
			event = event[:i] + `...` + event[j:]
		}
		fmt.Println(event)
	}
	// Output:
	// data: {...,"model":"shout","choices":[{"index":0,"delta":{"role":"assistant","content":"HELLO"},"logprobs":null,"finish_reason":null}]}
	// data: {...,"model":"shout","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}
	// data: [DONE]
}
