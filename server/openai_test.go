package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
)

// scoringBackend answers with fixed, checkable log-probs: it "generates" the
// words "w0 w1 ..." (or, for token prompts, ids t0 t1 ...), token i of a
// text having log-prob -(i+1)/10 and two top alternatives, the chosen one
// first. It records the requests it saw.
type scoringBackend struct {
	reqs []Request
}

func (b *scoringBackend) Models() []string { return []string{"echo"} }

func lpOf(i int) float64 { return -float64(i+1) / 10 }

func tokenLP(tok string, i, offset int) TokenLogprob {
	return TokenLogprob{Token: tok, Logprob: lpOf(i), Offset: offset,
		Top: []TopLogprob{{tok, lpOf(i)}, {"alt", lpOf(i) - 1}}}
}

func (b *scoringBackend) Generate(ctx context.Context, req Request, emit func(string) error) (Result, error) {
	b.reqs = append(b.reqs, req)
	var prompt []string
	if req.PromptTokens != nil {
		for _, id := range req.PromptTokens {
			prompt = append(prompt, fmt.Sprintf("t%d", id))
		}
	} else {
		prompt = strings.Fields(req.Prompt)
	}
	res := Result{PromptTokens: len(prompt), FinishReason: "length"}
	promptText := strings.Join(prompt, " ")
	if req.Echo {
		res.PromptText = promptText
		at := 0
		for i, tok := range prompt {
			t := tokenLP(tok, i-1, at)
			if i == 0 {
				t = TokenLogprob{Token: tok, Logprob: math.NaN(), Offset: 0}
			}
			res.PromptLogprobs = append(res.PromptLogprobs, t)
			at += len(tok) + 1
		}
	}
	base := 0
	if req.Echo {
		base = len(promptText)
	}
	// Two words at most; then the end token, as a model stops.
	for i := 0; i < min(req.MaxTokens, 2); i++ {
		piece := fmt.Sprintf(" w%d", i)
		if err := emit(piece); err != nil {
			return res, err
		}
		if req.Logprobs {
			res.Logprobs = append(res.Logprobs, tokenLP(piece, 100+i, base+len(res.Text)))
		}
		res.Text += piece
		res.CompletionTokens++
	}
	if req.MaxTokens > 2 {
		res.FinishReason = "stop"
	}
	if req.Logprobs && req.MaxTokens > 2 {
		// The end token: completions list it, chat leaves it out.
		res.Logprobs = append(res.Logprobs, TokenLogprob{Token: "</s>", Logprob: -0.01, Offset: base + len(res.Text), End: true,
			Top: []TopLogprob{{"</s>", -0.01}, {"alt", -5}}})
	}
	return res, nil
}

// legacyCompletion is a completions response as openai-python's Completion
// model and lm-eval-harness read it.
type legacyCompletion struct {
	Object  string `json:"object"`
	Choices []struct {
		Text     string `json:"text"`
		Index    int    `json:"index"`
		Logprobs *struct {
			Tokens        []string             `json:"tokens"`
			TokenLogprobs []*float64           `json:"token_logprobs"`
			TopLogprobs   []map[string]float64 `json:"top_logprobs"`
			TextOffset    []int                `json:"text_offset"`
		} `json:"logprobs"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
	} `json:"usage"`
}

// TestLmEvalLoglikelihood sends exactly what lm-eval-harness's
// local-completions model sends for a loglikelihood request (a batch of
// token-id prompts, max_tokens 1, logprobs 1, echo) and reads the answer
// the way its parse_logprobs does: the sum of token_logprobs[ctxlen:-1] and
// whether each of those tokens is the most likely of its top_logprobs.
func TestLmEvalLoglikelihood(t *testing.T) {
	b := &scoringBackend{}
	_, ts := start(t, b, Config{})
	resp, body := do(t, "POST", ts.URL+"/v1/completions",
		`{"model":"echo","prompt":[[1,2,3,4,5],[7,8,9]],"temperature":0,"max_tokens":1,"logprobs":1,"seed":1234,"echo":true}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got legacyCompletion
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if len(b.reqs) != 2 || b.reqs[0].PromptTokens[4] != 5 || !b.reqs[0].Echo || !b.reqs[0].Logprobs || b.reqs[0].TopLogprobs != 1 || b.reqs[0].MaxTokens != 1 {
		t.Fatalf("backend requests %+v", b.reqs)
	}
	if len(got.Choices) != 2 || got.Choices[0].Index != 0 || got.Choices[1].Index != 1 {
		t.Fatalf("choices %s, want one per prompt, indexed", body)
	}
	for c, ctxlen := range []int{3, 2} { // the continuation: the prompts' last 2 and 1 tokens
		ch := got.Choices[c]
		lp := ch.Logprobs
		n := len(b.reqs[c].PromptTokens)
		if lp == nil || len(lp.Tokens) != n+1 || len(lp.TokenLogprobs) != n+1 || len(lp.TopLogprobs) != n+1 || len(lp.TextOffset) != n+1 {
			t.Fatalf("choice %d: logprobs %s, want %d prompt tokens and the generated one", c, body, n)
		}
		if lp.TokenLogprobs[0] != nil || lp.TopLogprobs[0] != nil || lp.Tokens[0] != fmt.Sprintf("t%d", b.reqs[c].PromptTokens[0]) {
			t.Errorf("choice %d: the first prompt token has log-prob %v and top %v, want null", c, lp.TokenLogprobs[0], lp.TopLogprobs[0])
		}
		var sum, want float64
		greedy := true
		for i := ctxlen; i < n; i++ {
			sum += *lp.TokenLogprobs[i]
			want += lpOf(i - 1)
			best := math.Inf(-1)
			for _, v := range lp.TopLogprobs[i] {
				best = math.Max(best, v)
			}
			greedy = greedy && *lp.TokenLogprobs[i] == best
		}
		if math.Abs(sum-want) > 1e-12 || !greedy {
			t.Errorf("choice %d: continuation log-likelihood %g greedy %v, want %g true", c, sum, greedy, want)
		}
		if !strings.HasPrefix(ch.Text, "t") || !strings.HasSuffix(ch.Text, " w0") {
			t.Errorf("choice %d: text %q, want the echoed prompt then the completion", c, ch.Text)
		}
		for i := 1; i < len(lp.TextOffset); i++ {
			if lp.TextOffset[i] <= lp.TextOffset[i-1] || lp.TextOffset[i] > len(ch.Text) {
				t.Errorf("choice %d: text offsets %v do not rise within the text", c, lp.TextOffset)
			}
		}
	}
	if got.Usage.PromptTokens != 8 {
		t.Errorf("usage counts %d prompt tokens over the batch, want 8", got.Usage.PromptTokens)
	}

	// max_tokens 0 with echo: the prompt's log-probs alone.
	resp, body = do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"a b c","max_tokens":0,"logprobs":0,"echo":true}`)
	var zero legacyCompletion
	if err := json.Unmarshal(body, &zero); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("max_tokens 0: %d %s", resp.StatusCode, body)
	}
	if ch := zero.Choices[0]; ch.Text != "a b c" || len(ch.Logprobs.Tokens) != 3 || *ch.Logprobs.TokenLogprobs[2] != lpOf(1) {
		t.Errorf("max_tokens 0 with echo: %s", body)
	}
	// A generation that ended with the end token lists it, with its text
	// offset at the end of the text.
	_, body = do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"a","max_tokens":5,"logprobs":2}`)
	var ended legacyCompletion
	if err := json.Unmarshal(body, &ended); err != nil {
		t.Fatal(err)
	}
	if lp := ended.Choices[0].Logprobs; ended.Choices[0].Text != " w0 w1" || len(lp.Tokens) != 3 || lp.Tokens[2] != "</s>" || lp.TextOffset[2] != 6 || ended.Choices[0].FinishReason != "stop" {
		t.Errorf("ended by the end token: %s", body)
	}
	// Without logprobs the field is null, as OpenAI sends it.
	_, body = do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"a","max_tokens":1}`)
	if !strings.Contains(string(body), `"logprobs":null`) {
		t.Errorf("no logprobs asked: %s", body)
	}
}

// chatLogprobsBody is a chat completion's log-probs as openai-python's
// ChoiceLogprobs and ChatCompletionTokenLogprob models read them.
type chatLogprobsBody struct {
	Content []struct {
		Token       string  `json:"token"`
		Logprob     float64 `json:"logprob"`
		Bytes       []int   `json:"bytes"`
		TopLogprobs []struct {
			Token   string  `json:"token"`
			Logprob float64 `json:"logprob"`
			Bytes   []int   `json:"bytes"`
		} `json:"top_logprobs"`
	} `json:"content"`
	Refusal *[]any `json:"refusal"`
}

func checkChatLogprobs(t *testing.T, what string, lp *chatLogprobsBody, n int) {
	t.Helper()
	if lp == nil || len(lp.Content) != n || lp.Refusal != nil {
		t.Fatalf("%s: logprobs %+v, want %d tokens (no end token) and a null refusal", what, lp, n)
	}
	for i, c := range lp.Content {
		if c.Token != fmt.Sprintf(" w%d", i) || c.Logprob != lpOf(100+i) || string(toBytes(c.Bytes)) != c.Token || len(c.TopLogprobs) != 2 ||
			c.TopLogprobs[0].Token != c.Token || c.TopLogprobs[1].Logprob != lpOf(100+i)-1 || string(toBytes(c.TopLogprobs[1].Bytes)) != "alt" {
			t.Fatalf("%s: token %d: %+v", what, i, c)
		}
	}
}

func toBytes(b []int) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		out[i] = byte(v)
	}
	return out
}

// TestChatLogprobs: logprobs and top_logprobs on chat completions, whole
// and streamed (a stream carries them in its last chunk), in the shape the
// official clients parse.
func TestChatLogprobs(t *testing.T) {
	b := &scoringBackend{}
	_, ts := start(t, b, Config{})
	req := `{"model":"echo","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"logprobs":true,"top_logprobs":2`
	resp, body := do(t, "POST", ts.URL+"/v1/chat/completions", req+`}`)
	var whole struct {
		Choices []struct {
			Message  struct{ Content string } `json:"message"`
			Logprobs *chatLogprobsBody        `json:"logprobs"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &whole); err != nil || resp.StatusCode != http.StatusOK || len(whole.Choices) != 1 {
		t.Fatalf("%d %s (%v)", resp.StatusCode, body, err)
	}
	if r := b.reqs[0]; !r.Logprobs || r.TopLogprobs != 2 {
		t.Errorf("backend request %+v", r)
	}
	checkChatLogprobs(t, "whole", whole.Choices[0].Logprobs, 2)

	resp2, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(req+`,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	events := readEvents(t, resp2.Body)
	var last struct {
		Choices []struct {
			Logprobs     *chatLogprobsBody `json:"logprobs"`
			FinishReason *string           `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal([]byte(events[len(events)-2]), &last); err != nil || len(last.Choices) != 1 || last.Choices[0].FinishReason == nil {
		t.Fatalf("last chunk %s (%v)", events[len(events)-2], err)
	}
	checkChatLogprobs(t, "streamed", last.Choices[0].Logprobs, 2)
	if !strings.Contains(events[0], `"logprobs":null`) {
		t.Errorf("a text chunk carries log-probs: %s", events[0])
	}
}

// TestToolMessages: a tool flow as Open WebUI and the openai clients send
// it (an assistant turn with tool_calls and null content, then the tool's
// answer) is accepted and reaches the backend as text turns.
func TestToolMessages(t *testing.T) {
	b := &echoBackend{}
	_, ts := start(t, b, Config{})
	resp, body := do(t, "POST", ts.URL+"/v1/chat/completions", `{"model":"echo","messages":[
		{"role":"system","content":"You can call tools."},
		{"role":"user","content":"Weather in Paris?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"18 C, sunny"},
		{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"no rain"}]},
		{"role":"user","content":"So?"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"tool_choice":"auto"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	want := []Message{
		{"system", "You can call tools."},
		{"user", "Weather in Paris?"},
		{"assistant", "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>"},
		{"user", "<tool_response>\n18 C, sunny\n</tool_response>\n<tool_response>\nno rain\n</tool_response>"},
		{"user", "So?"},
	}
	got := b.lastRequest().Messages
	if len(got) != len(want) {
		t.Fatalf("backend got %d messages %+v, want %+v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestPenaltyFields: logit_bias and the penalties reach the backend as
// OpenAI's and llama.cpp's clients send them.
func TestPenaltyFields(t *testing.T) {
	b := &echoBackend{}
	_, ts := start(t, b, Config{})
	resp, body := do(t, "POST", ts.URL+"/v1/completions", `{"model":"echo","prompt":"a","logit_bias":{"50256":-100,"7":2.5},
		"frequency_penalty":0.5,"presence_penalty":-0.25,"repeat_penalty":1.1,"repeat_last_n":32}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	r := b.lastRequest()
	if r.LogitBias[50256] != -100 || r.LogitBias[7] != 2.5 || len(r.LogitBias) != 2 || r.FrequencyPenalty != 0.5 ||
		r.PresencePenalty != -0.25 || r.RepeatPenalty != 1.1 || r.RepeatLastN != 32 {
		t.Errorf("backend request %+v", r)
	}
}
