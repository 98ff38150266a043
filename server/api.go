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
	"strings"

	"github.com/cmc-dev/cmc/control"
)

// Request bodies as OpenAI clients send them. Fields that cmc cannot honour
// but that clients send by habit (presence_penalty, user, logprobs, ...) are
// ignored rather than rejected, so that stock clients keep working.

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
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// completionFields are the fields only /v1/completions reads.
type completionFields struct {
	Prompt json.RawMessage `json:"prompt"` // a string, or an array holding one string
}

// chatFields are the fields only /v1/chat/completions reads.
type chatFields struct {
	Messages []chatMessage `json:"messages"`
	// Newer clients send max_completion_tokens instead of max_tokens.
	MaxCompletionTokens *int `json:"max_completion_tokens"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string, null, or an array of content parts
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
// maxTokens is the body's token limit, whichever field carried it.
func (s *Server) toRequest(f commonFields, maxTokens *int) (Request, *apiError) {
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
		if *maxTokens < 1 {
			return Request{}, invalidParam("max_tokens", "max_tokens must be at least 1, not %d", *maxTokens)
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
	return req, nil
}

func modelNotFound(model string) *apiError {
	e := newAPIError(http.StatusNotFound, typeInvalidRequest, "model_not_found",
		"the model %q does not exist; GET /v1/models lists the models", model)
	param := "model"
	e.Param = &param
	return e
}

// parsePrompt accepts a string, or an array of one string as some clients
// send even for a single prompt.
func parsePrompt(raw json.RawMessage) (string, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", invalidParam("prompt", "prompt is required")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return one, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return "", invalidParam("prompt", "prompt must be a string or an array of one string; token-id prompts are not supported")
	}
	if len(many) != 1 {
		return "", invalidParam("prompt", "prompt must hold exactly one string, not %d: cmc generates one completion per request", len(many))
	}
	return many[0], nil
}

// parseMessages checks the chat turns and flattens their content to text.
func parseMessages(in []chatMessage) ([]Message, *apiError) {
	if len(in) == 0 {
		return nil, invalidParam("messages", "messages is required and must hold at least one message")
	}
	out := make([]Message, len(in))
	for i, m := range in {
		role := m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer":
			// OpenAI's newer name for the system role; chat templates know only "system".
			role = "system"
		default:
			return nil, invalidParam("messages", "messages[%d].role must be system, developer, user or assistant, not %q", i, m.Role)
		}
		content, err := messageText(m.Content)
		if err != nil {
			return nil, invalidParam("messages", "messages[%d].content: %v", i, err)
		}
		out[i] = Message{Role: role, Content: content}
	}
	return out, nil
}

// messageText flattens a message's content: a string, null (an assistant
// turn that only called tools), or an array of text parts.
func messageText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		return text, nil
	}
	var parts []contentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("must be a string or an array of content parts")
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("part %d has type %q; only text parts are supported", j, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}
