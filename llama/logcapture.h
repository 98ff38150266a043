// llama.cpp's logger is one process-wide callback (llama_log_set). cmc
// installs it once and keeps its only state here: the minimum level printed
// to stderr, set before the callback is installed, and a thread-local
// capture buffer. A load, context creation or decode runs inside one cgo
// call, hence on one thread; the wrappers below point that thread's capture
// at the caller's buffer for the duration of the call, so that the error
// lines llama.cpp logs during it end up in cmc's error message instead of
// loose on stderr. Concurrent loads on other threads capture separately.
#pragma once

#include <stddef.h>
#include "llama.h"

// cmc_log_init installs the callback; levels below min_level are not printed.
void cmc_log_init(int min_level);

// Each wrapper calls llama.cpp's function of the same name and writes the
// error-level lines it logged, NUL-terminated and cut to cap bytes, to buf.
struct llama_model * cmc_model_load_from_file(const char * path, struct llama_model_params params, char * buf, size_t cap);
struct llama_context * cmc_init_from_model(struct llama_model * model, struct llama_context_params params, char * buf, size_t cap);
int32_t cmc_decode(struct llama_context * ctx, struct llama_batch batch, char * buf, size_t cap);
