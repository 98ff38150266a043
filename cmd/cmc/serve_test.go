package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/server"
)

// storiesBackend serves stories260K in-process, steered by itself as the
// delta at alpha 1, both reading raw prompts.
func storiesBackend(t *testing.T) (*backend, *httptest.Server) {
	t.Helper()
	path := fixture(t, "models/stories260K/stories260K.gguf")
	rm := &runtimeModels{alpha: 1}
	t.Cleanup(rm.close)
	var err error
	if rm.user, err = llama.LoadModel(path, llama.ModelParams{}); err != nil {
		t.Fatal(err)
	}
	if err := rm.resolveTemplates("raw", "raw"); err != nil {
		t.Fatal(err)
	}
	if rm.userCtx, err = rm.user.NewContext(llama.ContextParams{Size: 256, Threads: 1}); err != nil {
		t.Fatal(err)
	}
	if err := rm.loadDelta(path, path, pmmined.PMMinED, ""); err != nil {
		t.Fatal(err)
	}
	b := &backend{rm: rm, name: "stories260K", deltaName: "stories260K"}
	ts := httptest.NewServer(server.New(b, server.Config{}, slog.New(slog.DiscardHandler)).Handler())
	t.Cleanup(ts.Close)
	return b, ts
}

type echoLogprobs struct {
	Choices []struct {
		Text     string `json:"text"`
		Logprobs struct {
			Tokens        []string             `json:"tokens"`
			TokenLogprobs []*float64           `json:"token_logprobs"`
			TopLogprobs   []map[string]float64 `json:"top_logprobs"`
			TextOffset    []int                `json:"text_offset"`
		} `json:"logprobs"`
	} `json:"choices"`
}

func postEcho(t *testing.T, url string, prompt []int32, extra string) echoLogprobs {
	t.Helper()
	ids, _ := json.Marshal([][]int32{prompt})
	body := fmt.Sprintf(`{"model":"stories260K","prompt":%s,"temperature":0,"max_tokens":1,"logprobs":1,"seed":1234,"echo":true%s}`, ids, extra)
	resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out echoLogprobs
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.Choices) != 1 {
		t.Fatalf("status %d: %v %+v", resp.StatusCode, err, out)
	}
	return out
}

// TestServeEchoLogprobs: lm-eval-harness's loglikelihood request against a
// real model. With "delta": "none" every prompt token's log-prob is
// llama.cpp's own log_softmax at its position; with the model as its own
// delta at alpha 1 they are those of log_softmax(2x - c), which keeps each
// position's most likely token but sharpens the distribution.
func TestServeEchoLogprobs(t *testing.T) {
	b, ts := storiesBackend(t)
	v := b.rm.user.Vocab()
	prompt, err := v.Tokenize("Once upon a time, there was a little girl", true, false)
	if err != nil {
		t.Fatal(err)
	}
	alone := postEcho(t, ts.URL, prompt, `,"delta":"none"`)
	steered := postEcho(t, ts.URL, prompt, "")

	// The reference: every position's logits in one batched decode.
	logits := make([]float32, len(prompt)*v.Size())
	if err := b.rm.userCtx.SequenceLogits(prompt, logits); err != nil {
		t.Fatal(err)
	}
	for _, got := range []echoLogprobs{alone, steered} {
		lp := got.Choices[0].Logprobs
		if len(lp.TokenLogprobs) != len(prompt)+1 || lp.TokenLogprobs[0] != nil || lp.Tokens[1] != v.Piece(prompt[1], true) {
			t.Fatalf("%d log-probs for %d prompt tokens + 1; first %v, tokens %q", len(lp.TokenLogprobs), len(prompt), lp.TokenLogprobs[0], lp.Tokens)
		}
	}
	sharper := 0
	for i := 1; i < len(prompt); i++ {
		row := logits[(i-1)*v.Size() : i*v.Size()]
		best, sum := math.Inf(-1), 0.0
		for _, x := range row {
			best = math.Max(best, float64(x))
		}
		for _, x := range row {
			sum += math.Exp(float64(x) - best)
		}
		want := float64(row[prompt[i]]) - best - math.Log(sum)
		if got := *alone.Choices[0].Logprobs.TokenLogprobs[i]; math.Abs(got-want) > 2e-3 {
			t.Errorf("token %d %q: log-prob %g without the delta, llama.cpp's %g", i, v.Piece(prompt[i], false), got, want)
		}
		argmax := func(top map[string]float64) string {
			k, bestV := "", math.Inf(-1)
			for tok, lp := range top {
				if lp > bestV {
					k, bestV = tok, lp
				}
			}
			return k
		}
		a, s := alone.Choices[0].Logprobs.TopLogprobs[i], steered.Choices[0].Logprobs.TopLogprobs[i]
		if argmax(a) != argmax(s) {
			t.Errorf("token %d: most likely %q alone, %q with the self-delta; argmax(2x) is argmax(x)", i, argmax(a), argmax(s))
		}
		if *steered.Choices[0].Logprobs.TokenLogprobs[i] != *alone.Choices[0].Logprobs.TokenLogprobs[i] {
			sharper++
		}
	}
	if sharper == 0 {
		t.Error("the self-delta changed no log-prob: the delta was not applied")
	}
	if text := steered.Choices[0].Text; !strings.HasPrefix(text, " Once upon a time, there was a little girl") {
		t.Errorf("echoed text %q", text)
	}
}

// TestServeChatPenaltiesAndLogprobs: chat top_logprobs from a real model;
// a logit_bias of -100 on the greedy first token changes the choice but
// not the reported log-prob of the token chosen instead.
func TestServeChatPenaltiesAndLogprobs(t *testing.T) {
	b, ts := storiesBackend(t)
	post := func(extra string) (string, []chatTok) {
		body := `{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":4,"temperature":0,"logprobs":true,"top_logprobs":3` + extra + `}`
		resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Choices []struct {
				Message  struct{ Content string } `json:"message"`
				Logprobs struct {
					Content []chatTok `json:"content"`
				} `json:"logprobs"`
			} `json:"choices"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.Choices) != 1 {
			t.Fatalf("status %d: %v", resp.StatusCode, err)
		}
		return out.Choices[0].Message.Content, out.Choices[0].Logprobs.Content
	}
	text, toks := post("")
	if len(toks) != 4 || len(toks[0].TopLogprobs) != 3 || toks[0].TopLogprobs[0].Token != toks[0].Token {
		t.Fatalf("greedy %q: log-probs %+v, want 4 tokens, each the first of its top 3", text, toks)
	}
	var joined string
	for _, tk := range toks {
		joined += tk.Token
	}
	if joined != text {
		t.Errorf("tokens spell %q, the text is %q", joined, text)
	}
	// Ban the first greedy token by id: the runner-up takes its place,
	// reported with the log-prob it had in the top 3.
	v := b.rm.user.Vocab()
	var bias []string // every token that spells it (a piece, and its byte)
	for id := int32(0); int(id) < v.Size(); id++ {
		if v.Piece(id, true) == toks[0].Token {
			bias = append(bias, fmt.Sprintf(`"%d":-100`, id))
		}
	}
	_, banned := post(`,"logit_bias":{` + strings.Join(bias, ",") + `}`)
	if banned[0].Token == toks[0].Token {
		t.Fatalf("logit_bias -100 left %q first", banned[0].Token)
	}
	if banned[0].Token != toks[0].TopLogprobs[1].Token || math.Abs(banned[0].Logprob-toks[0].TopLogprobs[1].Logprob) > 1e-6 {
		t.Errorf("after the ban: %q %g; want the runner-up %q %g, its log-prob unbiased", banned[0].Token, banned[0].Logprob, toks[0].TopLogprobs[1].Token, toks[0].TopLogprobs[1].Logprob)
	}
}

type chatTok struct {
	Token       string  `json:"token"`
	Logprob     float64 `json:"logprob"`
	TopLogprobs []struct {
		Token   string  `json:"token"`
		Logprob float64 `json:"logprob"`
	} `json:"top_logprobs"`
}

// TestServeOverflowNamesPrompt: a completion prompt longer than the context
// is a 400 blaming "prompt" (a chat's blames "messages").
func TestServeOverflowNamesPrompt(t *testing.T) {
	_, ts := storiesBackend(t)
	long := strings.Repeat("Once upon a time there was a girl. ", 60)
	for _, c := range []struct{ path, body, param string }{
		{"/v1/completions", `{"model":"stories260K","prompt":"` + long + `"}`, "prompt"},
		{"/v1/chat/completions", `{"model":"stories260K","messages":[{"role":"user","content":"` + long + `"}]}`, "messages"},
	} {
		resp, err := http.Post(ts.URL+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Error.Param == nil || *e.Error.Param != c.param || !strings.Contains(e.Error.Message, "context holds 256") {
			t.Errorf("%s: status %d, error %+v; want 400 blaming %q", c.path, resp.StatusCode, e.Error, c.param)
		}
	}
}
