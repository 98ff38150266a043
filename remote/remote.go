// Package remote talks to a user LLM served by another engine over the
// OpenAI-compatible HTTP API that vLLM, llama.cpp's server, SGLang, TGI and
// cmc serve itself speak, so that cmc can steer a model too large for one
// machine.
//
// Cross-model Control needs the user model's scores for the next token. An
// engine gives them only for its most likely tokens: Client.TopK asks for
// one token (POST /v1/completions, max_tokens 1, temperature 0) with the k
// most likely next tokens and their log-probabilities, and returns those k
// candidates by their text. Engines keep the prompt's KV cache between such
// requests (prefix caching), so each step decodes about one token.
//
// Two response shapes are read:
//
//   - OpenAI's legacy completions shape (vLLM, SGLang, OpenAI):
//     choices[0].logprobs.top_logprobs[0] is a map {token text: logprob},
//     tokens[0] the token the engine chose itself.
//   - The chat shape that llama.cpp's server also answers completions with:
//     choices[0].logprobs.content[0] is {token, logprob, bytes,
//     top_logprobs: [{token, logprob, bytes}]}.
//
// Client.Echo scores a given text instead (echo on, the request
// lm-eval-harness sends for log-likelihoods): every token of it with its
// log-probability and top k, for cmc eval.
//
// A token whose text is not valid UTF-8 arrives as "bytes:\xe2\x80" (the
// legacy shape's escape) or with its bytes listed; both are decoded.
package remote

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/pmmined"
)

// IsURL reports whether a --model value names a served model rather than a
// file: an http or https URL.
func IsURL(model string) bool {
	return strings.HasPrefix(model, "http://") || strings.HasPrefix(model, "https://")
}

// Client asks one served model for next-token candidates. It implements
// control.RemoteLM.
type Client struct {
	// BaseURL ends in the API's version, e.g. http://10.0.0.5:8000/v1.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer KEY" when set.
	APIKey string
	// Model is the "model" field of each request (the served name).
	Model string
	HTTP  *http.Client
	// RetryWait is the first pause before asking a busy engine again.
	RetryWait time.Duration
}

// New checks baseURL and returns a client for the model it serves. An empty
// model name is resolved by asking the engine for its models (GET
// /v1/models), which works when it serves exactly one.
func New(ctx context.Context, baseURL, apiKey, model string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("remote model %q: want a URL like http://HOST:PORT/v1", baseURL)
	}
	c := &Client{
		BaseURL: strings.TrimSuffix(baseURL, "/"),
		APIKey:  apiKey,
		Model:   model,
		// No overall timeout: a step is one token, but the first one may
		// wait for a long prompt; cancellation comes from the context.
		HTTP:      &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}},
		RetryWait: 200 * time.Millisecond,
	}
	if model == "" {
		if c.Model, err = c.onlyModel(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// onlyModel returns the id of the one model the engine serves.
func (c *Client) onlyModel(ctx context.Context) (string, error) {
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := c.do(ctx, http.MethodGet, "/models", nil, &list); err != nil {
		return "", err
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("%s/models lists %d models %q: name one with --remote-model", c.BaseURL, len(ids), ids)
	}
	return ids[0], nil
}

// completionRequest is what TopK sends: one greedy token with its
// alternatives. Engines that cap logprobs (OpenAI at 5) answer 400, which
// TopK passes on with the engine's message.
type completionRequest struct {
	Model       string  `json:"model"`
	Prompt      string  `json:"prompt"`
	MaxTokens   int     `json:"max_tokens"`
	Temperature float64 `json:"temperature"`
	Logprobs    int     `json:"logprobs"`
	Echo        bool    `json:"echo,omitempty"`
	Stream      bool    `json:"stream"`
}

type completionResponse struct {
	Choices []struct {
		Text         string        `json:"text"`
		FinishReason string        `json:"finish_reason"`
		Logprobs     *logprobsBody `json:"logprobs"`
	} `json:"choices"`
}

// logprobsBody holds both shapes; one of them is filled.
type logprobsBody struct {
	// The legacy completions shape. With echo, the first token's
	// log-probability and candidates are null.
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
	// The chat shape.
	Content []struct {
		chatLogprob
		TopLogprobs []chatLogprob `json:"top_logprobs"`
	} `json:"content"`
}

type chatLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []byte  `json:"bytes"` // a JSON array of numbers, not base64: see UnmarshalJSON
}

// UnmarshalJSON reads "bytes" as the list of numbers engines send.
func (p *chatLogprob) UnmarshalJSON(b []byte) error {
	var raw struct {
		Token   string  `json:"token"`
		Logprob float64 `json:"logprob"`
		Bytes   []int   `json:"bytes"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	p.Token, p.Logprob, p.Bytes = raw.Token, raw.Logprob, nil
	for _, v := range raw.Bytes {
		if v < 0 || v > 255 {
			return fmt.Errorf("logprobs: byte %d of token %q is outside 0..255", v, raw.Token)
		}
		p.Bytes = append(p.Bytes, byte(v))
	}
	return nil
}

// TopK returns the k most likely tokens after prompt under the served model,
// most likely first. Engines may add the token they chose to the k (vLLM
// does when it is not among them), so there may be k+1. A candidate is
// marked End when it ends the text: the engine stopped on it (finish_reason
// "stop"), it is named like an end token ("</s>", "<|eot_id|>", ...:
// pmmined.EndsTurn), or it stands for no text at all (an end token whose
// name the engine does not print). A model that writes "</s>" as text is
// taken to end there.
func (c *Client) TopK(ctx context.Context, prompt string, k int) ([]control.Candidate, error) {
	var resp completionResponse
	req := completionRequest{Model: c.Model, Prompt: prompt, MaxTokens: 1, Logprobs: k}
	if err := c.do(ctx, http.MethodPost, "/completions", req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Choices) == 0 {
		return nil, fmt.Errorf("%s/completions: the answer has no choices", c.BaseURL)
	}
	ch := resp.Choices[0]
	cands, chosen, err := parseLogprobs(ch.Logprobs)
	if err != nil {
		return nil, fmt.Errorf("%s/completions: %w", c.BaseURL, err)
	}
	if chosen == "" && len(cands) > 0 {
		chosen = cands[0].Text // temperature 0: the engine took the most likely
	}
	for i := range cands {
		t := cands[i].Text
		if t == "" || pmmined.EndsTurn(t) || (ch.FinishReason == "stop" && t == chosen) {
			cands[i].End = true
		}
	}
	return cands, nil
}

// Echo scores text: the engine's tokens of it, each with its offset in
// bytes, its log-probability after the text before it and the k most likely
// tokens there (POST /v1/completions with echo, the request
// lm-eval-harness sends for log-likelihoods). It needs the legacy shape,
// which vLLM and SGLang answer; the first token, which has no text before
// it, comes with a NaN log-probability.
func (c *Client) Echo(ctx context.Context, text string, k int) ([]control.EchoedToken, error) {
	var resp completionResponse
	req := completionRequest{Model: c.Model, Prompt: text, MaxTokens: 1, Logprobs: k, Echo: true}
	if err := c.do(ctx, http.MethodPost, "/completions", req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Choices) == 0 || resp.Choices[0].Logprobs == nil {
		return nil, fmt.Errorf("%s/completions with echo: the answer has no \"logprobs\"", c.BaseURL)
	}
	lp := resp.Choices[0].Logprobs
	n := len(lp.Tokens)
	if n == 0 || len(lp.TokenLogprobs) != n || len(lp.TopLogprobs) != n || len(lp.TextOffset) != n {
		return nil, fmt.Errorf("%s/completions with echo: want tokens, token_logprobs, top_logprobs and text_offset of one length, got %d, %d, %d, %d",
			c.BaseURL, n, len(lp.TokenLogprobs), len(lp.TopLogprobs), len(lp.TextOffset))
	}
	offsets, err := byteOffsets(text, lp.Tokens, lp.TextOffset)
	if err != nil {
		return nil, fmt.Errorf("%s/completions with echo: %w", c.BaseURL, err)
	}
	out := make([]control.EchoedToken, n)
	for i := range n {
		off := offsets[i]
		t := control.EchoedToken{Offset: off, Text: tokenText(lp.Tokens[i], nil), LogProb: math.NaN()}
		if p := lp.TokenLogprobs[i]; p != nil {
			t.LogProb = *p
		}
		for tt, v := range lp.TopLogprobs[i] {
			text := tokenText(tt, nil)
			t.Top = append(t.Top, control.Candidate{Text: text, LogProb: v, End: text == "" || pmmined.EndsTurn(text)})
		}
		sortCandidates(t.Top)
		out[i] = t
	}
	return out, nil
}

// byteOffsets turns an echo's text_offset into byte offsets in text.
// OpenAI and vLLM count characters; some engines (cmc serve among them)
// count bytes. The two agree on ASCII text; otherwise the reading under
// which more tokens are found at their offsets wins. Offsets past the text
// (the engine's new token) keep their distance from its end.
func byteOffsets(text string, tokens []string, offsets []int) ([]int, error) {
	runeStarts := make([]int, 0, len(text)+1)
	for i := range text {
		runeStarts = append(runeStarts, i)
	}
	runeStarts = append(runeStarts, len(text))
	asChars := make([]int, len(offsets))
	matchChars, matchBytes := 0, 0
	for i, off := range offsets {
		if off < 0 {
			return nil, fmt.Errorf("token %d has offset %d", i, off)
		}
		if off < len(runeStarts) {
			asChars[i] = runeStarts[off]
		} else {
			asChars[i] = len(text) + off - (len(runeStarts) - 1)
		}
		tok := tokenText(tokens[i], nil)
		if strings.HasPrefix(text[min(asChars[i], len(text)):], tok) {
			matchChars++
		}
		if strings.HasPrefix(text[min(off, len(text)):], tok) {
			matchBytes++
		}
	}
	if matchBytes > matchChars {
		return offsets, nil
	}
	return asChars, nil
}

// parseLogprobs reads the first position's candidates from either shape,
// sorted by log-probability (then text, for a stable order), and the text of
// the token the engine chose when the answer names it.
func parseLogprobs(lp *logprobsBody) (cands []control.Candidate, chosen string, err error) {
	switch {
	case lp == nil:
		return nil, "", errors.New(`the answer has no "logprobs": the engine ignores the field (llama.cpp's server needs a recent build)`)
	case len(lp.TopLogprobs) > 0:
		for text, v := range lp.TopLogprobs[0] {
			cands = append(cands, control.Candidate{Text: tokenText(text, nil), LogProb: v})
		}
		if len(lp.Tokens) > 0 {
			chosen = tokenText(lp.Tokens[0], nil)
		}
	case len(lp.Content) > 0:
		first := lp.Content[0]
		for _, p := range first.TopLogprobs {
			cands = append(cands, control.Candidate{Text: tokenText(p.Token, p.Bytes), LogProb: p.Logprob})
		}
		chosen = tokenText(first.Token, first.Bytes)
	default:
		return nil, "", errors.New(`"logprobs" holds neither "top_logprobs" nor "content" for the new token`)
	}
	if len(cands) == 0 {
		return nil, "", errors.New(`"logprobs" lists no candidates for the new token`)
	}
	sortCandidates(cands)
	return cands, chosen, nil
}

// sortCandidates orders candidates by log-probability, then text, for a
// stable order (a JSON object has none).
func sortCandidates(cands []control.Candidate) {
	slices.SortFunc(cands, func(a, b control.Candidate) int {
		if c := cmp.Compare(b.LogProb, a.LogProb); c != 0 {
			return c
		}
		return strings.Compare(a.Text, b.Text)
	})
}

// tokenText is the text a candidate stands for: its bytes when the engine
// lists them, else its name with the legacy "bytes:\xNN" escape undone.
func tokenText(token string, raw []byte) string {
	if raw != nil {
		return string(raw)
	}
	hex, ok := strings.CutPrefix(token, "bytes:")
	if !ok {
		return token
	}
	var b []byte
	for len(hex) >= 4 && hex[0] == '\\' && hex[1] == 'x' {
		v, err := strconv.ParseUint(hex[2:4], 16, 8)
		if err != nil {
			return token
		}
		b = append(b, byte(v))
		hex = hex[4:]
	}
	if hex != "" {
		return token
	}
	return string(b)
}

// maxAttempts bounds the tries of one request. A busy engine answers 429
// or 503 (vLLM's and cmc serve's full queue) and a restarting one refuses
// connections; every request here is idempotent (one greedy token), so do
// tries again, waiting Client.RetryWait, then twice as long each time.
const maxAttempts = 4

// do sends one request and decodes the JSON answer into out; an answer that
// is not 200 becomes an error carrying the engine's own message.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	wait := c.RetryWait
	for attempt := 1; ; attempt++ {
		b, retry, err := c.once(ctx, method, path, payload)
		if err == nil {
			if err := json.Unmarshal(b, out); err != nil {
				return fmt.Errorf("%s %s: the answer is not the expected JSON: %w", method, c.BaseURL+path, err)
			}
			return nil
		}
		if !retry || attempt == maxAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// once sends a request and returns the body of a 200 answer, or an error
// and whether trying again may help.
func (c *Client) once(ctx context.Context, method, path string, payload []byte) (body []byte, retry bool, err error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return nil, false, fmt.Errorf("remote model: %w", err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, ctx.Err() == nil, fmt.Errorf("remote model: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, ctx.Err() == nil, fmt.Errorf("%s %s: read the answer: %w", method, c.BaseURL+path, err)
	}
	if resp.StatusCode != http.StatusOK {
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			retry = true
		}
		return nil, retry, fmt.Errorf("%s %s: %s: %s", method, c.BaseURL+path, resp.Status, errorMessage(b))
	}
	return b, false, nil
}

// errorMessage picks the message out of an OpenAI-shaped error body, or
// returns the start of the body as it is.
func errorMessage(body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
