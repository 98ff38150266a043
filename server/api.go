package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/cmc-dev/cmc/control"
)

// Request bodies as OpenAI clients send them. Fields that cmc cannot honour
// but that clients send by habit (user, tools, ...) are ignored rather than
// rejected, so that stock clients keep working.

// commonFields are the body fields both endpoints share. A body is decoded
// into these and, separately, into its endpoint's own fields: embedding one
// struct in the other would make encoding/json name fields in errors
// "commonFields.max_tokens" instead of "max_tokens".
type commonFields struct {
	Model         string         `json:"model"`
	MaxTokens     *int           `json:"max_tokens"`
	Temperature   *float64       `json:"temperature"`
	TopP          *float64       `json:"top_p"`
	TopK          *int           `json:"top_k"`
	Seed          *int64         `json:"seed"`
	Stop          stopSequences  `json:"stop"`
	N             *int           `json:"n"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
	Delta         string         `json:"delta"`
	Alpha         *float64       `json:"alpha"`

	LogitBias        map[string]float64 `json:"logit_bias"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	RepeatPenalty    *float64           `json:"repeat_penalty"` // llama.cpp's server name
	RepeatLastN      *int               `json:"repeat_last_n"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// completionFields are the fields only /v1/completions reads.
type completionFields struct {
	// A string, an array of strings, an array of token ids, or an array of
	// arrays of token ids: each prompt gets its own choice.
	Prompt json.RawMessage `json:"prompt"`
	// Logprobs is the legacy API's count of most likely tokens to report
	// per position (null: no log-probs at all).
	Logprobs *int `json:"logprobs"`
	Echo     bool `json:"echo"`
}

// chatFields are the fields only /v1/chat/completions reads.
type chatFields struct {
	Messages []chatMessage `json:"messages"`
	// Newer clients send max_completion_tokens instead of max_tokens.
	MaxCompletionTokens *int  `json:"max_completion_tokens"`
	Logprobs            *bool `json:"logprobs"`
	TopLogprobs         *int  `json:"top_logprobs"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string, null, or an array of content parts
	Name    string          `json:"name"`
	// An assistant's calls of tools, and a tool's answer to one of them.
	ToolCalls  []toolCall `json:"tool_calls"`
	ToolCallID string     `json:"tool_call_id"`
}

type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"` // JSON text, as OpenAI sends it
	} `json:"function"`
}

type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// stopSequences accepts OpenAI's "stop": null, a string, or an array of strings.
type stopSequences []string

func (s *stopSequences) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return invalidParam("stop", "stop must be a string or an array of strings")
	}
	*s = many
	return nil
}

// decodeBody reads a JSON request body of at most limit bytes into each of
// targets.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, targets ...any) *apiError {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			return newAPIError(http.StatusRequestEntityTooLarge, typeInvalidRequest, "request_too_large",
				"request body is larger than the server's limit of %d bytes", limit)
		}
		return newAPIError(http.StatusBadRequest, typeInvalidRequest, "invalid_body", "read request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return newAPIError(http.StatusBadRequest, typeInvalidRequest, "invalid_json", "request body is empty; expected a JSON object")
	}
	for _, v := range targets {
		if err := json.Unmarshal(data, v); err != nil {
			return jsonError(err)
		}
	}
	return nil
}

// jsonError explains a decoding failure in terms of the request: where the
// syntax broke, or which field had the wrong type.
func jsonError(err error) *apiError {
	var (
		syntax  *json.SyntaxError
		typ     *json.UnmarshalTypeError
		invalid *apiError
	)
	switch {
	case errors.As(err, &invalid):
		return invalid
	case errors.As(err, &syntax):
		return newAPIError(http.StatusBadRequest, typeInvalidRequest, "invalid_json",
			"request body is not valid JSON: %v (at byte %d)", syntax, syntax.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return newAPIError(http.StatusBadRequest, typeInvalidRequest, "invalid_json",
			"request body must be a JSON object, not %s", typ.Value)
	case errors.As(err, &typ):
		kind := jsonKind(typ.Type)
		if number, ok := strings.CutPrefix(typ.Value, "number "); ok {
			// A number where a number belongs: too large, or a fraction
			// where an integer belongs.
			return invalidParam(typ.Field, "%s: %s is not %s in range", typ.Field, number, kind)
		}
		return invalidParam(typ.Field, "%s must be %s, not %s", typ.Field, kind, typ.Value)
	default:
		return newAPIError(http.StatusBadRequest, typeInvalidRequest, "invalid_json", "request body is not valid JSON: %v", err)
	}
}

// jsonKind names a Go type the way a JSON user thinks of it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// toRequest validates the shared fields and turns them into a Request.
// maxTokens is the body's token limit, whichever field carried it, and
// minTokens the least it may be (0 only for an echoed prompt).
func (s *Server) toRequest(f commonFields, maxTokens *int, minTokens int) (Request, *apiError) {
	if f.Model == "" {
		return Request{}, invalidParam("model", "model is required; GET /v1/models lists the models")
	}
	if !slices.Contains(s.backend.Models(), f.Model) {
		return Request{}, modelNotFound(f.Model)
	}
	if f.N != nil && *f.N != 1 {
		return Request{}, invalidParam("n", "n must be 1: cmc generates one choice per request")
	}
	req := Request{
		Model:       f.Model,
		MaxTokens:   s.cfg.MaxTokens,
		Temperature: 1, // OpenAI's defaults
		TopP:        1,
		Seed:        f.Seed,
		Stop:        f.Stop,
		Delta:       f.Delta,
		Alpha:       f.Alpha,
	}
	if maxTokens != nil {
		if *maxTokens < minTokens {
			why := ""
			if minTokens > 0 {
				why = " (0 only with echo, to score the prompt)"
			}
			return Request{}, invalidParam("max_tokens", "max_tokens must be at least %d, not %d%s", minTokens, *maxTokens, why)
		}
		req.MaxTokens = min(*maxTokens, s.cfg.MaxTokens)
	}
	if t := f.Temperature; t != nil {
		if *t < 0 || *t > 2 {
			return Request{}, invalidParam("temperature", "temperature must be between 0 and 2, not %g", *t)
		}
		req.Temperature = *t
	}
	if p := f.TopP; p != nil {
		if *p <= 0 || *p > 1 {
			return Request{}, invalidParam("top_p", "top_p must be above 0 and at most 1, not %g", *p)
		}
		req.TopP = *p
	}
	if k := f.TopK; k != nil {
		if *k < 0 {
			return Request{}, invalidParam("top_k", "top_k must not be negative, not %d", *k)
		}
		req.TopK = *k
	}
	if a := f.Alpha; a != nil {
		if err := control.CheckAlpha(*a); err != nil {
			return Request{}, invalidParam("alpha", "%v", err)
		}
	}
	for i, stop := range f.Stop {
		if stop == "" {
			return Request{}, invalidParam("stop", "stop[%d] is empty; a stop sequence needs at least one character", i)
		}
	}
	if e := penalties(f, &req); e != nil {
		return Request{}, e
	}
	return req, nil
}

// penalties validates logit_bias and the penalties into req, in OpenAI's
// ranges (and llama.cpp's for repeat_penalty).
func penalties(f commonFields, req *Request) *apiError {
	if len(f.LogitBias) > 0 {
		req.LogitBias = make(map[int32]float64, len(f.LogitBias))
		for key, bias := range f.LogitBias {
			id, err := strconv.ParseInt(key, 10, 32)
			if err != nil || id < 0 {
				return invalidParam("logit_bias", "logit_bias keys must be token ids, not %q", key)
			}
			if bias < -100 || bias > 100 {
				return invalidParam("logit_bias", "logit_bias[%s] must be between -100 and 100, not %g", key, bias)
			}
			req.LogitBias[int32(id)] = bias
		}
	}
	for _, p := range []struct {
		name string
		v    *float64
		dst  *float64
	}{{"frequency_penalty", f.FrequencyPenalty, &req.FrequencyPenalty}, {"presence_penalty", f.PresencePenalty, &req.PresencePenalty}} {
		if p.v == nil {
			continue
		}
		if *p.v < -2 || *p.v > 2 {
			return invalidParam(p.name, "%s must be between -2 and 2, not %g", p.name, *p.v)
		}
		*p.dst = *p.v
	}
	if r := f.RepeatPenalty; r != nil {
		if *r < 0 || *r > 10 {
			return invalidParam("repeat_penalty", "repeat_penalty must be between 0 and 10 (1: off), not %g", *r)
		}
		req.RepeatPenalty = *r
	}
	if n := f.RepeatLastN; n != nil {
		if *n < 0 {
			return invalidParam("repeat_last_n", "repeat_last_n must not be negative, not %d", *n)
		}
		req.RepeatLastN = *n
	}
	return nil
}

// topLogprobs validates how many top log-probs a request asks for.
func topLogprobs(param string, k int) *apiError {
	if k < 0 || k > control.MaxTopLogprobs {
		return invalidParam(param, "%s must be between 0 and %d, not %d", param, control.MaxTopLogprobs, k)
	}
	return nil
}

func modelNotFound(model string) *apiError {
	e := newAPIError(http.StatusNotFound, typeInvalidRequest, "model_not_found",
		"the model %q does not exist; GET /v1/models lists the models", model)
	param := "model"
	e.Param = &param
	return e
}

// prompt is one prompt of a completions request: text, or token ids.
type prompt struct {
	text   string
	tokens []int32
}

// parsePrompts accepts what OpenAI's completions endpoint does: a string,
// an array of strings, an array of token ids, or an array of such arrays.
// lm-eval-harness sends batches of token-id prompts.
func parsePrompts(raw json.RawMessage) ([]prompt, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, invalidParam("prompt", "prompt is required")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []prompt{{text: one}}, nil
	}
	var texts []string
	if err := json.Unmarshal(raw, &texts); err == nil && len(texts) > 0 {
		out := make([]prompt, len(texts))
		for i, t := range texts {
			out[i] = prompt{text: t}
		}
		return out, nil
	}
	var ids []int32
	if err := json.Unmarshal(raw, &ids); err == nil && len(ids) > 0 {
		return []prompt{{tokens: ids}}, nil
	}
	var batch [][]int32
	if err := json.Unmarshal(raw, &batch); err == nil && len(batch) > 0 {
		out := make([]prompt, len(batch))
		for i, b := range batch {
			if len(b) == 0 {
				return nil, invalidParam("prompt", "prompt[%d] holds no token ids", i)
			}
			out[i] = prompt{tokens: b}
		}
		return out, nil
	}
	return nil, invalidParam("prompt", "prompt must be a string, an array of strings, an array of token ids or an array of such arrays, none of them empty")
}

// parseMessages checks the chat turns and flattens their content to text.
// Tool turns become text the way tool-trained chat models read them
// (Hermes and Qwen's format), because llama.cpp's chat templates take only
// a role and a text: an assistant's tool_calls follow its content as
// <tool_call>{"name": ..., "arguments": ...}</tool_call> lines, and tool
// results (role "tool", or the older "function") become a user turn of
// <tool_response> blocks, consecutive ones merged.
func parseMessages(in []chatMessage) ([]Message, *apiError) {
	if len(in) == 0 {
		return nil, invalidParam("messages", "messages is required and must hold at least one message")
	}
	out := make([]Message, 0, len(in))
	for i, m := range in {
		content, e := messageText(i, m.Content)
		if e != nil {
			return nil, e
		}
		role := m.Role
		switch role {
		case "system", "user":
		case "developer":
			// OpenAI's newer name for the system role; chat templates know only "system".
			role = "system"
		case "assistant":
			if calls := toolCallsText(m.ToolCalls); content == "" {
				content = strings.TrimPrefix(calls, "\n")
			} else {
				content += calls
			}
		case "tool", "function":
			block := "<tool_response>\n" + content + "\n</tool_response>"
			if n := len(out); n > 0 && i > 0 && (in[i-1].Role == "tool" || in[i-1].Role == "function") {
				out[n-1].Content += "\n" + block
				continue
			}
			role, content = "user", block
		default:
			return nil, invalidParam("messages", "messages[%d].role must be system, developer, user, assistant or tool, not %q", i, m.Role)
		}
		out = append(out, Message{Role: role, Content: content})
	}
	return out, nil
}

// toolCallsText writes an assistant's tool calls as text.
func toolCallsText(calls []toolCall) string {
	var b strings.Builder
	for _, c := range calls {
		args := json.RawMessage(c.Function.Arguments)
		if !json.Valid(args) {
			// Not JSON: keep it, as a JSON string.
			args, _ = json.Marshal(c.Function.Arguments)
		}
		call, _ := json.Marshal(struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		}{c.Function.Name, args})
		b.WriteString("\n<tool_call>\n")
		b.Write(call)
		b.WriteString("\n</tool_call>")
	}
	return b.String()
}

// messageText flattens message i's content: a string, null (an assistant
// turn that only called tools), or an array of text parts.
func messageText(i int, raw json.RawMessage) (string, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		return text, nil
	}
	var parts []contentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", invalidParam("messages", "messages[%d].content must be a string or an array of content parts", i)
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" {
			return "", invalidParam(fmt.Sprintf("messages[%d].content[%d]", i, j),
				"messages[%d].content[%d] is a %q part: cmc serves text models, so only text parts are supported", i, j, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}
