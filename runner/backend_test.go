package runner

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/server"
)

// selfSteered loads the fixture model as the user model and as its own
// delta at alpha 1, both under template, with a context of 256.
func selfSteered(t *testing.T, fixture, template string) *Runner {
	t.Helper()
	path := testfixture.Path(t, fixture)
	rm := &Runner{Alpha: 1}
	t.Cleanup(rm.Close)
	var err error
	if rm.User, err = llama.LoadModel(path, llama.ModelParams{}); err != nil {
		t.Fatal(err)
	}
	if err := rm.ResolveTemplates(template, template); err != nil {
		t.Fatal(err)
	}
	if err := rm.OpenUserContext(llama.ContextParams{Size: 256, Threads: 1}); err != nil {
		t.Fatal(err)
	}
	if err := rm.LoadDelta(path, path, pmmined.PMMinED, ""); err != nil {
		t.Fatal(err)
	}
	return rm
}

// storiesBackend serves stories260K in-process, steered by itself as the
// delta at alpha 1, both reading raw prompts.
func storiesBackend(t *testing.T) (*Backend, *httptest.Server) {
	t.Helper()
	rm := selfSteered(t, "models/stories260K/stories260K.gguf", "raw")
	b := NewBackend(rm, "stories260K", "stories260K")
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
	v := b.r.User.Vocab()
	prompt, err := v.Tokenize("Once upon a time, there was a little girl", true, false)
	if err != nil {
		t.Fatal(err)
	}
	alone := postEcho(t, ts.URL, prompt, `,"delta":"none"`)
	steered := postEcho(t, ts.URL, prompt, "")

	// The reference: every position's logits in one batched decode.
	logits := make([]float32, len(prompt)*v.Size())
	if err := b.r.UserCtx.SequenceLogits(prompt, logits); err != nil {
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
	v := b.r.User.Vocab()
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

type chatReply struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage struct {
		PromptTokens        int `json:"prompt_tokens"`
		PromptTokensDetails struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

func postChat(t *testing.T, url string, messages ...string) chatReply {
	t.Helper()
	var msgs []map[string]string
	for i, m := range messages {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, map[string]string{"role": role, "content": m})
	}
	body, _ := json.Marshal(map[string]any{"model": "stories260K", "messages": msgs, "temperature": 0, "max_tokens": 24})
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out chatReply
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.Choices) != 1 {
		t.Fatalf("status %d: %v %+v", resp.StatusCode, err, out)
	}
	return out
}

// TestServeReusesTheCache: the second turn of a conversation, with the
// delta on, finds the first turn's prompt in both KV caches
// (usage.prompt_tokens_details.cached_tokens) and answers exactly what a
// server with empty caches answers; so does a completion whose prompt
// extends an earlier one.
func TestServeReusesTheCache(t *testing.T) {
	_, ts := storiesBackend(t)
	q1 := "Once upon a time, there was a little girl named Lily. She loved to play in the park with her friends."
	first := postChat(t, ts.URL, q1)
	if first.Usage.PromptTokensDetails.CachedTokens != 0 {
		t.Errorf("first request: %d cached tokens, want 0", first.Usage.PromptTokensDetails.CachedTokens)
	}
	reply := first.Choices[0].Message.Content
	second := postChat(t, ts.URL, q1, reply, "One day, she saw a big dog.")
	if cached, want := second.Usage.PromptTokensDetails.CachedTokens, first.Usage.PromptTokens*9/10; cached < want {
		t.Errorf("second turn: %d of the first turn's %d prompt tokens cached, want at least %d", cached, first.Usage.PromptTokens, want)
	}
	_, fresh := storiesBackend(t)
	want := postChat(t, fresh.URL, q1, reply, "One day, she saw a big dog.")
	if got := second.Choices[0].Message.Content; got != want.Choices[0].Message.Content || want.Usage.PromptTokensDetails.CachedTokens != 0 {
		t.Errorf("second turn with the cache %q, on empty caches %q (%d cached)", got, want.Choices[0].Message.Content, want.Usage.PromptTokensDetails.CachedTokens)
	}

	complete := func(url, prompt string) (text string, promptTokens, cached int) {
		body, _ := json.Marshal(map[string]any{"model": "stories260K", "prompt": prompt, "temperature": 0, "max_tokens": 16})
		resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Choices []struct{ Text string } `json:"choices"`
			Usage   struct {
				PromptTokens        int `json:"prompt_tokens"`
				PromptTokensDetails struct {
					CachedTokens int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Choices) != 1 {
			t.Fatalf("completion: %v %+v", err, out)
		}
		return out.Choices[0].Text, out.Usage.PromptTokens, out.Usage.PromptTokensDetails.CachedTokens
	}
	_, n1, _ := complete(ts.URL, q1)
	text, _, cached := complete(ts.URL, q1+" One day")
	if cached < n1*9/10 {
		t.Errorf("extended completion: %d cached of the earlier prompt's %d tokens", cached, n1)
	}
	_, clean := storiesBackend(t)
	if wantText, _, c := complete(clean.URL, q1+" One day"); wantText != text || c != 0 {
		t.Errorf("extended completion with the cache %q, on empty caches %q (%d cached)", text, wantText, c)
	}
}
