// Package llama is cmc's one cgo package: a thin binding to the llama.cpp
// sources that the Go module github.com/ollama/ollama vendors. It loads GGUF
// models, exposes their vocabulary, tokenizes and decodes batches with logits
// at every position. No C type leaks out of this package.
//
// The llama.cpp headers live in the module cache, whose path cgo directives
// cannot name; `make headers` links them under build/include (see the
// Makefile), which the directives below point at.
package llama

/*
#cgo CPPFLAGS: -I${SRCDIR}/../build/include/llama -I${SRCDIR}/../build/include/ggml
#cgo CXXFLAGS: -std=c++17
#include <stdlib.h>
#include "ggml-backend.h"
#include "llama.h"
#include "logcapture.h"
*/
import "C"

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	_ "github.com/ollama/ollama/llama/llama.cpp/src"
	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src"
)

// LibraryPathEnv names the environment variable holding the directories
// (separated like PATH) from which GPU backends (libggml-cuda.so, ...) are
// loaded at run time. Without it, cmc looks in ../lib/cmc and
// ../build/lib/cmc relative to its binary (where `make cuda` puts them).
const LibraryPathEnv = "CMC_LIBRARY_PATH"

// LogEnv names the environment variable that sets llama.cpp's log level:
// "debug", "info", "warn" or "error" (the default).
const LogEnv = "CMC_LLAMA_LOG"

// initBackend runs once per process: llama.cpp's backend registry and logger
// are process-wide C state, so there is nothing per-model to hold them.
// llama.cpp logs every tensor it loads at INFO level and warns about
// harmless metadata quirks; cmc prints only what the user asked for
// (CMC_LLAMA_LOG) and puts the errors of a failed call in its own error
// (logcapture.h).
var initBackend = sync.OnceFunc(func() {
	level := C.GGML_LOG_LEVEL_ERROR
	switch strings.ToLower(os.Getenv(LogEnv)) {
	case "debug":
		level = C.GGML_LOG_LEVEL_DEBUG
	case "info":
		level = C.GGML_LOG_LEVEL_INFO
	case "warn":
		level = C.GGML_LOG_LEVEL_WARN
	}
	C.cmc_log_init(C.int(level))
	for _, dir := range backendDirs() {
		cdir := C.CString(dir)
		C.ggml_backend_load_all_from_path(cdir)
		C.free(unsafe.Pointer(cdir))
	}
	C.llama_backend_init()
})

// reasonSize is the room for the error lines llama.cpp logs during one call.
const reasonSize = 1024

// llamaReason renders the error lines llama.cpp logged during a failed call
// (a NUL-terminated buffer filled by logcapture.c) as one clause for an
// error message, without the C function names that prefix each line:
// "llama.cpp: error loading model: missing tensor 'token_embd.weight'; failed to load model".
func llamaReason(buf []byte) string {
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	var parts []string
	for _, line := range strings.Split(string(buf), "\n") {
		line = strings.TrimSpace(line)
		if fn, rest, ok := strings.Cut(line, ": "); ok && isCIdent(fn) {
			line = rest
		}
		if line != "" {
			parts = append(parts, line)
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("llama.cpp logged no reason; set %s=info for its whole log", LogEnv)
	}
	return "llama.cpp: " + strings.Join(parts, "; ")
}

func isCIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// backendDirs lists the existing directories that may hold GPU backends.
func backendDirs() []string {
	var dirs []string
	if env := os.Getenv(LibraryPathEnv); env != "" {
		dirs = filepath.SplitList(env)
	} else if exe, err := os.Executable(); err == nil {
		bin := filepath.Dir(exe)
		dirs = []string{filepath.Join(bin, "..", "lib", "cmc"), filepath.Join(bin, "..", "build", "lib", "cmc")}
	}
	var found []string
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			found = append(found, d)
		}
	}
	return found
}

// Devices names the compute devices llama.cpp can use (CPU, and GPUs whose
// backends were loaded), for `cmc inspect` and error messages.
func Devices() []string {
	initBackend()
	n := int(C.ggml_backend_dev_count())
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		dev := C.ggml_backend_dev_get(C.size_t(i))
		out = append(out, C.GoString(C.ggml_backend_dev_name(dev))+" ("+C.GoString(C.ggml_backend_dev_description(dev))+")")
	}
	return out
}
