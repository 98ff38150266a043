package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/control"
)

// counter is a scripted model whose next token depends on the text: after
// "... N" it says " N+1" most likely, " N+2" next, and "" (its end token)
// once the count reaches 5; after "... N </s>" it offers "</s>" second.
func counter(text string) (best, second string, ended bool) {
	if t, ok := strings.CutSuffix(text, " </s>"); ok {
		best, _, _ = counter(t)
		return best, "</s>", false
	}
	fields := strings.Fields(text)
	var n int
	fmt.Sscan(fields[len(fields)-1], &n)
	return fmt.Sprintf(" %d", n+1), fmt.Sprintf(" %d", n+2), n >= 5
}

// fakeEngine answers /v1/completions in the legacy shape (chat false) or in
// the chat shape llama.cpp's server uses (chat true), and checks each request
// as an engine would see it.
func fakeEngine(t *testing.T, chat bool) (*httptest.Server, *[]string) {
	var prompts []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"object":"list","data":[{"id":"counter-70b","object":"model"}]}`)
	})
	mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer sekret" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"message":"bad key","type":"invalid_request_error"}}`)
			return
		}
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("request body: %v", err)
		}
		if req["model"] != "counter-70b" || req["max_tokens"] != 1.0 || req["temperature"] != 0.0 || req["logprobs"] != 3.0 {
			t.Errorf("request %v: want model counter-70b, one greedy token, logprobs 3", req)
		}
		prompt := req["prompt"].(string)
		prompts = append(prompts, prompt)
		best, second, ended := counter(prompt)
		finish, chosen := "length", best
		if ended {
			finish, chosen, best, second = "stop", "", "", best
		}
		if chat {
			fmt.Fprintf(w, `{"choices":[{"index":0,"text":%q,"finish_reason":%q,"logprobs":{"content":[{"id":7,"token":%q,"logprob":-0.1,"bytes":%s,
				"top_logprobs":[{"id":7,"token":%q,"logprob":-0.1,"bytes":%s},{"id":8,"token":%q,"logprob":-2.5,"bytes":%s},{"id":9,"token":"\ufffd","logprob":-3,"bytes":[226,130]}]}]}}]}`,
				chosen, finish, chosen, byteList(chosen), best, byteList(best), second, byteList(second))
			return
		}
		fmt.Fprintf(w, `{"choices":[{"index":0,"text":%q,"finish_reason":%q,"logprobs":{"tokens":[%q],"token_logprobs":[-0.1],
			"top_logprobs":[{%q:-0.1,%q:-2.5,"bytes:\\xe2\\x82":-3}],"text_offset":[%d]}}]}`,
			chosen, finish, chosen, best, second, len(prompt))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &prompts
}

func byteList(s string) string {
	b, _ := json.Marshal(bytesOf(s))
	return string(b)
}

func bytesOf(s string) []int {
	out := []int{}
	for _, c := range []byte(s) {
		out = append(out, int(c))
	}
	return out
}

func TestTopKShapes(t *testing.T) {
	for _, chat := range []bool{false, true} {
		srv, _ := fakeEngine(t, chat)
		c, err := New(context.Background(), srv.URL+"/v1/", "sekret", "")
		if err != nil {
			t.Fatal(err)
		}
		if c.Model != "counter-70b" {
			t.Fatalf("model %q, want the one /v1/models lists", c.Model)
		}
		cands, err := c.TopK(context.Background(), "Count: 1 2", 3)
		if err != nil {
			t.Fatal(err)
		}
		want := []control.Candidate{{Text: " 3", LogProb: -0.1}, {Text: " 4", LogProb: -2.5}, {Text: "\xe2\x82", LogProb: -3}}
		if fmt.Sprint(cands) != fmt.Sprint(want) {
			t.Fatalf("chat shape %v: candidates %+v, want %+v", chat, cands, want)
		}
		cands, err = c.TopK(context.Background(), "Count: 4 5", 3)
		if err != nil {
			t.Fatal(err)
		}
		if !cands[0].End || cands[0].Text != "" || cands[1].End || cands[1].Text != " 6" {
			t.Fatalf("chat shape %v: at the end, candidates %+v, want the end token first", chat, cands)
		}
		// An end token named among the candidates ends the text even when
		// the engine did not stop on it.
		cands, err = c.TopK(context.Background(), "Count: 7 </s>", 3)
		if err != nil {
			t.Fatal(err)
		}
		if !cands[1].End || cands[1].Text != "</s>" || cands[0].End {
			t.Fatalf("chat shape %v: candidates %+v, want </s> second and marked End", chat, cands)
		}
	}
}

// TestGenerateOverHTTP: the steering loop against the fake engine stops at
// its end token, asks about the text so far at every step, and a delta-free
// greedy run writes the engine's own greedy text.
func TestGenerateOverHTTP(t *testing.T) {
	srv, prompts := fakeEngine(t, false)
	c, err := New(context.Background(), srv.URL+"/v1", "sekret", "counter-70b")
	if err != nil {
		t.Fatal(err)
	}
	g := &control.RemoteGenerator{User: c, K: 3}
	res, err := g.Generate(context.Background(), "Count: 1", nil, control.Options{MaxTokens: 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != " 2 3 4 5" || res.FinishReason != "stop" {
		t.Fatalf("text %q finish %s, want \" 2 3 4 5\" stop", res.Text, res.FinishReason)
	}
	want := []string{"Count: 1", "Count: 1 2", "Count: 1 2 3", "Count: 1 2 3 4", "Count: 1 2 3 4 5"}
	if fmt.Sprint(*prompts) != fmt.Sprint(want) {
		t.Fatalf("prompts %q, want %q", *prompts, want)
	}
}

func TestErrors(t *testing.T) {
	srv, _ := fakeEngine(t, false)
	c, err := New(context.Background(), srv.URL+"/v1", "wrong", "counter-70b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TopK(context.Background(), "Count: 1", 3); err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "bad key") {
		t.Fatalf("wrong key: %v, want the engine's 401 message", err)
	}
	if _, err := New(context.Background(), "ftp://host/v1", "", "m"); err == nil {
		t.Fatal("an ftp URL was accepted")
	}
	// An engine that ignores logprobs.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"choices":[{"index":0,"text":" x","finish_reason":"length","logprobs":null}]}`)
	}))
	defer plain.Close()
	c, _ = New(context.Background(), plain.URL+"/v1", "", "m")
	if _, err := c.TopK(context.Background(), "a", 3); err == nil || !strings.Contains(err.Error(), "logprobs") {
		t.Fatalf("no logprobs: %v, want an error naming logprobs", err)
	}
}

func TestTokenText(t *testing.T) {
	for in, want := range map[string]string{"bytes:\\xe2\\x82": "\xe2\x82", " plain": " plain", "bytes:\\xzz": "bytes:\\xzz"} {
		if got := tokenText(in, nil); got != want {
			t.Errorf("tokenText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := tokenText("\ufffd", []byte{0xe2}); got != "\xe2" {
		t.Errorf("bytes win over the name: got %q", got)
	}
}

// TestEcho reads an echo answer as vLLM writes it: character offsets, a
// null first log-probability, and the new token after the text.
func TestEcho(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		json.NewDecoder(r.Body).Decode(&req)
		if req["echo"] != true || req["max_tokens"] != 1.0 || req["logprobs"] != 2.0 || req["prompt"] != "héllo world" {
			t.Errorf("request %v: want echo, one token, logprobs 2 for the text", req)
		}
		fmt.Fprint(w, `{"choices":[{"index":0,"text":"héllo world !","finish_reason":"length","logprobs":{
			"tokens":["h","é","llo"," world"," !"],
			"token_logprobs":[null,-1.5,-0.5,-2,-0.25],
			"top_logprobs":[null,{"é":-1.5,"e":-0.4},{"llo":-0.5,"l":-1.2},{" there":-1," world":-2},{" !":-0.25,".":-1.75}],
			"text_offset":[0,1,2,5,11]}}]}`)
	}))
	defer srv.Close()
	c, err := New(context.Background(), srv.URL+"/v1", "", "m")
	if err != nil {
		t.Fatal(err)
	}
	toks, err := c.Echo(context.Background(), "héllo world", 2)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%+v", toks)
	want := fmt.Sprintf("%+v", []control.EchoedToken{
		{Offset: 0, Text: "h", LogProb: math.NaN()},
		{Offset: 1, Text: "é", LogProb: -1.5, Top: []control.Candidate{{Text: "e", LogProb: -0.4}, {Text: "é", LogProb: -1.5}}},
		{Offset: 3, Text: "llo", LogProb: -0.5, Top: []control.Candidate{{Text: "llo", LogProb: -0.5}, {Text: "l", LogProb: -1.2}}},
		{Offset: 6, Text: " world", LogProb: -2, Top: []control.Candidate{{Text: " there", LogProb: -1}, {Text: " world", LogProb: -2}}},
		{Offset: 12, Text: " !", LogProb: -0.25, Top: []control.Candidate{{Text: " !", LogProb: -0.25}, {Text: ".", LogProb: -1.75}}},
	})
	if got != want {
		t.Fatalf("echo\n%s\nwant\n%s", got, want)
	}
}

// TestRetries: a busy engine (503, 429) is asked again; a request it
// refuses (400) is not.
func TestRetries(t *testing.T) {
	var calls int
	status := []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := status[min(calls, len(status)-1)]
		calls++
		if code != http.StatusOK {
			w.WriteHeader(code)
			fmt.Fprint(w, `{"error":{"message":"busy"}}`)
			return
		}
		fmt.Fprint(w, `{"choices":[{"index":0,"text":" x","finish_reason":"length","logprobs":{"tokens":[" x"],"top_logprobs":[{" x":-0.5}]}}]}`)
	}))
	defer srv.Close()
	c, _ := New(context.Background(), srv.URL+"/v1", "", "m")
	c.RetryWait = time.Millisecond
	cands, err := c.TopK(context.Background(), "a", 1)
	if err != nil || calls != 3 || len(cands) != 1 || cands[0].Text != " x" {
		t.Fatalf("after 503 and 429: %v %+v in %d calls, want the answer of the third", err, cands, calls)
	}
	calls, status = 0, []int{http.StatusBadRequest}
	if _, err := c.TopK(context.Background(), "a", 1); err == nil || calls != 1 {
		t.Fatalf("400: %v after %d calls, want an error at once", err, calls)
	}
	calls, status = 0, []int{http.StatusServiceUnavailable}
	if _, err := c.TopK(context.Background(), "a", 1); err == nil || !strings.Contains(err.Error(), "busy") || calls != maxAttempts {
		t.Fatalf("always 503: %v after %d calls, want the engine's message after %d", err, calls, maxAttempts)
	}
}

// TestByteOffsets: character offsets (OpenAI, vLLM) and byte offsets (cmc
// serve) of the same echo both come out as bytes.
func TestByteOffsets(t *testing.T) {
	tokens := []string{"h", "é", "llo", " world", " !"}
	want := []int{0, 1, 3, 6, 12}
	for _, offsets := range [][]int{{0, 1, 2, 5, 11}, {0, 1, 3, 6, 12}} {
		got, err := byteOffsets("héllo world", tokens, offsets)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("offsets %v: %v %v, want %v", offsets, got, err, want)
		}
	}
	if _, err := byteOffsets("a", []string{"a"}, []int{-1}); err == nil {
		t.Error("a negative offset was accepted")
	}
}
