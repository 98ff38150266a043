package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// apiError is an error in OpenAI's shape, which client libraries parse into
// their own exception types: {"error":{"message","type","param","code"}}.
type apiError struct {
	status     int
	retryAfter int     // seconds for the Retry-After header; 0: none
	closeConn  bool    // ask the client to reconnect, as when shutting down
	Message    string  `json:"message"`
	Type       string  `json:"type"`
	Param      *string `json:"param"` // null when no single field is at fault
	Code       string  `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

// Error types as OpenAI names them.
const (
	typeInvalidRequest = "invalid_request_error"
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"
)

func newAPIError(status int, typ, code, format string, args ...any) *apiError {
	return &apiError{status: status, Type: typ, Code: code, Message: fmt.Sprintf(format, args...)}
}

// invalidParam is a 400 blaming one request field.
func invalidParam(param, format string, args ...any) *apiError {
	e := newAPIError(http.StatusBadRequest, typeInvalidRequest, "invalid_value", format, args...)
	e.Param = &param
	return e
}

// errorBody wraps an apiError the way OpenAI nests it, both in error
// responses and in the error event that ends a failed stream.
type errorBody struct {
	Error *apiError `json:"error"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.closeConn {
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, e.status, errorBody{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	// Every value written here is built by this package from plain fields,
	// so Marshal cannot fail; an empty body would still be better than a
	// panic if it ever did.
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
