#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "logcapture.h"

static int cmc_log_min_level = GGML_LOG_LEVEL_ERROR;

struct cmc_capture {
	char * buf;
	size_t cap, len;
	bool in_error; // the last line logged was an error; CONT lines continue it
};

static _Thread_local struct cmc_capture * cmc_tls_capture;

static void cmc_log(enum ggml_log_level level, const char * text, void * user_data) {
	(void)user_data;
	struct cmc_capture * c = cmc_tls_capture;
	if (c != NULL) {
		if (level != GGML_LOG_LEVEL_CONT) {
			c->in_error = level == GGML_LOG_LEVEL_ERROR;
		}
		if (c->in_error) {
			size_t n = strlen(text);
			if (n > c->cap - 1 - c->len) {
				n = c->cap - 1 - c->len;
			}
			memcpy(c->buf + c->len, text, n);
			c->len += n;
			c->buf[c->len] = '\0';
			// Captured errors reach the user in cmc's error; print them
			// too only when the whole log was asked for.
			if (cmc_log_min_level > GGML_LOG_LEVEL_INFO) {
				return;
			}
		}
	}
	bool cont = level == GGML_LOG_LEVEL_CONT;
	if ((cont && cmc_log_min_level <= GGML_LOG_LEVEL_INFO) || (!cont && level >= cmc_log_min_level)) {
		fputs(text, stderr);
	}
}

void cmc_log_init(int min_level) {
	cmc_log_min_level = min_level;
	llama_log_set(cmc_log, NULL);
}

// begin and end bracket one llama.cpp call on this thread.
static void begin(struct cmc_capture * c, char * buf, size_t cap) {
	*c = (struct cmc_capture){.buf = buf, .cap = cap};
	buf[0] = '\0';
	cmc_tls_capture = c;
}

static void end(void) { cmc_tls_capture = NULL; }

struct llama_model * cmc_model_load_from_file(const char * path, struct llama_model_params params, char * buf, size_t cap) {
	struct cmc_capture c;
	begin(&c, buf, cap);
	struct llama_model * m = llama_model_load_from_file(path, params);
	end();
	return m;
}

struct llama_context * cmc_init_from_model(struct llama_model * model, struct llama_context_params params, char * buf, size_t cap) {
	struct cmc_capture c;
	begin(&c, buf, cap);
	struct llama_context * ctx = llama_init_from_model(model, params);
	end();
	return ctx;
}

int32_t cmc_decode(struct llama_context * ctx, struct llama_batch batch, char * buf, size_t cap) {
	struct cmc_capture c;
	begin(&c, buf, cap);
	int32_t rc = llama_decode(ctx, batch);
	end();
	return rc;
}
