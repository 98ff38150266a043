package llama

/*
#include <stdlib.h>
#include "llama.h"
#include "logcapture.h"

// cmc_batch_set fills slot i of a batch allocated for one sequence.
static void cmc_batch_set(struct llama_batch * b, int i, llama_token tok, llama_pos pos, int output) {
	b->token[i] = tok;
	b->pos[i] = pos;
	b->n_seq_id[i] = 1;
	b->seq_id[i][0] = 0;
	b->logits[i] = (int8_t)output;
}

// cmc_abort_requested is the context's abort callback. ggml's CPU backend
// calls it on its main compute thread after every graph node; data points to
// a flag in C memory that Go sets when the watched context.Context is done,
// so the check costs one atomic load and never calls back into Go.
static bool cmc_abort_requested(void * data) {
	return __atomic_load_n((int32_t *)data, __ATOMIC_RELAXED) != 0;
}

static void cmc_install_abort(struct llama_context * c, int32_t * flag) {
	llama_set_abort_callback(c, cmc_abort_requested, flag);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// ContextParams says how to run a model.
type ContextParams struct {
	// Size is the context length in tokens (KV cache size); 0 takes the
	// model's trained context, at most DefaultContextSize: a model trained
	// for 128k tokens would otherwise get a KV cache of many gigabytes
	// that the prompts at hand never fill.
	Size int
	// Batch is the most tokens handed to llama.cpp in one decode call;
	// longer inputs are split. 0 means 512.
	Batch int
	// Threads is the number of CPU threads; 0 means runtime.NumCPU().
	Threads int
	// KVF32 keeps the KV cache in float32 instead of llama.cpp's float16
	// default: slower and larger, but exact for comparisons with references.
	KVF32 bool
}

// Output says which positions of a decoded batch produce logits.
type Output int

const (
	// OutputNone fills the KV cache without computing logits (prompt prefill
	// when only later logits matter).
	OutputNone Output = iota
	// OutputLast computes the logits of the last token only.
	OutputLast
	// OutputAll computes the logits of every token, as training needs.
	OutputAll
)

// ErrContextFull reports a decode that would run past the context length.
var ErrContextFull = errors.New("context full")

// ErrNonFiniteLogits reports logits holding NaN or infinity: the model's
// weights (or metadata cmc cannot check) are broken, and whatever was
// sampled from them would be garbage.
var ErrNonFiniteLogits = errors.New("non-finite logits")

// Context holds one sequence's KV cache and a reusable batch. It is not
// safe for concurrent use; use one Context per goroutine.
type Context struct {
	c      *C.struct_llama_context
	model  *Model
	batch  C.struct_llama_batch
	nBatch int
	size   int
	nVocab int
	len    int // positions held in the KV cache
	last   int // batch index of the last token with logits, -1 if none

	// abortFlag lives in C memory (llama.cpp keeps a pointer to it, which a
	// Go pointer must not be); nonzero makes a running llama_decode stop.
	abortFlag *C.int32_t
	abortCtx  context.Context // the context SetAbortContext watches, or nil
	stopWatch func() bool     // cancels the context.AfterFunc that sets abortFlag
	watchDone chan struct{}   // closed once that AfterFunc has run

	// reason receives the error lines llama.cpp logs during a decode
	// (reasonSize bytes of C memory, so that Decode allocates nothing).
	reason *C.char
}

// DefaultContextSize is the context length a context gets when none is
// asked for and the model was trained for more.
const DefaultContextSize = 4096

// NewContext creates a context for m.
func (m *Model) NewContext(p ContextParams) (*Context, error) {
	cp := C.llama_context_default_params()
	if p.Size > 0 {
		cp.n_ctx = C.uint32_t(p.Size)
	} else {
		cp.n_ctx = C.uint32_t(min(m.TrainedContext(), DefaultContextSize))
	}
	nBatch := p.Batch
	if nBatch <= 0 {
		nBatch = 512
	}
	cp.n_batch = C.uint32_t(nBatch)
	cp.n_ubatch = C.uint32_t(nBatch)
	cp.n_seq_max = 1
	threads := p.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	cp.n_threads = C.int32_t(threads)
	cp.n_threads_batch = C.int32_t(threads)
	cp.no_perf = true
	if p.KVF32 {
		cp.type_k = C.GGML_TYPE_F32
		cp.type_v = C.GGML_TYPE_F32
		// Flash attention on CPU wants an F16 V cache.
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	}
	reason := (*C.char)(C.malloc(reasonSize))
	cc := C.cmc_init_from_model(m.c, cp, reason, reasonSize)
	if cc == nil {
		err := fmt.Errorf("create context for %q (size %d, batch %d): %s", m.path, cp.n_ctx, nBatch, llamaReason(C.GoBytes(unsafe.Pointer(reason), reasonSize)))
		C.free(unsafe.Pointer(reason))
		return nil, err
	}
	// llama.cpp caps the batch at the context it made (and rounds the
	// context up): decode in the chunks it will take.
	nBatch = min(nBatch, int(C.llama_n_batch(cc)), int(C.llama_n_ubatch(cc)))
	flag := (*C.int32_t)(C.malloc(C.size_t(unsafe.Sizeof(C.int32_t(0)))))
	*flag = 0
	C.cmc_install_abort(cc, flag)
	return &Context{
		c:         cc,
		model:     m,
		batch:     C.llama_batch_init(C.int32_t(nBatch), 0, 1),
		nBatch:    nBatch,
		size:      int(C.llama_n_ctx(cc)),
		nVocab:    m.vocab.Size(),
		last:      -1,
		abortFlag: flag,
		reason:    reason,
	}, nil
}

// Close frees the context.
func (c *Context) Close() {
	if c.c != nil {
		c.SetAbortContext(nil)
		C.llama_batch_free(c.batch)
		C.llama_free(c.c)
		C.free(unsafe.Pointer(c.abortFlag))
		C.free(unsafe.Pointer(c.reason))
		c.c = nil
	}
}

// SetAbortContext makes every later Decode stop as soon as ctx is done,
// including one already inside llama.cpp: a long prefill or a template
// forward pass can be cancelled by Ctrl-C, a server timeout or a shutdown.
// A nil ctx stops watching. Like the rest of Context, it must not be called
// concurrently with Decode; cancelling ctx from another goroutine is the
// point.
//
// An aborted Decode returns an error wrapping ctx.Err(). llama.cpp keeps the
// batches of that call that completed before the abort and drops the one it
// was computing, so the cache then holds a prefix of what was asked: Len()
// says how much, and LastLogits returns nil. A caller that retries or goes
// on should Trim to the last position it trusts (or Clear) and call
// SetAbortContext with a live context (or nil) first, since a done context
// aborts every Decode. ggml's CPU backend checks between graph nodes, so the
// abort lands within one operation; backends without abort support (some
// GPU backends) finish the batch in flight and the abort takes effect at the
// next one.
func (c *Context) SetAbortContext(ctx context.Context) {
	if c.stopWatch != nil && !c.stopWatch() {
		// The AfterFunc has started: wait for its store so that it cannot
		// land after the reset below.
		<-c.watchDone
	}
	c.stopWatch, c.watchDone = nil, nil
	atomic.StoreInt32((*int32)(unsafe.Pointer(c.abortFlag)), 0)
	c.abortCtx = ctx
	if ctx == nil {
		return
	}
	flag := (*int32)(unsafe.Pointer(c.abortFlag))
	done := make(chan struct{})
	c.watchDone = done
	c.stopWatch = context.AfterFunc(ctx, func() {
		atomic.StoreInt32(flag, 1)
		close(done)
	})
}

// abortErr is the error of a Decode stopped by the watched context, or nil
// when that context is live.
func (c *Context) abortErr() error {
	if c.abortCtx == nil {
		return nil
	}
	return c.abortCtx.Err()
}

// Model is the model this context runs.
func (c *Context) Model() *Model { return c.model }

// Size is the context length in tokens.
func (c *Context) Size() int { return c.size }

// Len is the number of positions in the KV cache: the position of the next token.
func (c *Context) Len() int { return c.len }

// VocabSize is the width of one row of logits.
func (c *Context) VocabSize() int { return c.nVocab }

// SetThreads changes the number of CPU threads.
func (c *Context) SetThreads(n int) {
	C.llama_set_n_threads(c.c, C.int32_t(n), C.int32_t(n))
}

// Decode runs tokens at positions Len(), Len()+1, ... and appends them to
// the KV cache. With OutputAll, logits must hold len(tokens)×VocabSize()
// floats and receives every position's logits; with OutputLast it must hold
// VocabSize() floats (or be nil, to read LastLogits instead); with
// OutputNone it is ignored. Decode allocates nothing.
func (c *Context) Decode(tokens []int32, out Output, logits []float32) error {
	if len(tokens) == 0 {
		return nil
	}
	if c.len+len(tokens) > c.size {
		return fmt.Errorf("decode %d tokens at position %d: %w (context size %d)", len(tokens), c.len, ErrContextFull, c.size)
	}
	switch {
	case out == OutputAll && len(logits) < len(tokens)*c.nVocab:
		return fmt.Errorf("decode: logits buffer holds %d floats, need %d×%d", len(logits), len(tokens), c.nVocab)
	case out == OutputLast && logits != nil && len(logits) < c.nVocab:
		return fmt.Errorf("decode: logits buffer holds %d floats, need %d", len(logits), c.nVocab)
	}
	c.last = -1
	for start := 0; start < len(tokens); start += c.nBatch {
		if err := c.abortErr(); err != nil {
			return fmt.Errorf("decode %d tokens at position %d: aborted: %w", len(tokens)-start, c.len, err)
		}
		chunk := tokens[start:min(start+c.nBatch, len(tokens))]
		isLastChunk := start+len(chunk) == len(tokens)
		for i, tok := range chunk {
			if tok < 0 || int(tok) >= c.nVocab {
				return fmt.Errorf("decode: token %d at index %d is outside the vocabulary (size %d)", tok, start+i, c.nVocab)
			}
			want := out == OutputAll || (out == OutputLast && isLastChunk && i == len(chunk)-1)
			o := 0
			if want {
				o = 1
			}
			C.cmc_batch_set(&c.batch, C.int(i), C.llama_token(tok), C.llama_pos(c.len+i), C.int(o))
		}
		c.batch.n_tokens = C.int32_t(len(chunk))
		if rc := C.cmc_decode(c.c, c.batch, c.reason, reasonSize); rc != 0 {
			// llama.cpp restores or keeps the cache state; resynchronise our count.
			c.len = c.cachedLen()
			if err := c.abortErr(); rc == 2 && err != nil {
				return fmt.Errorf("decode %d tokens at position %d: aborted: %w", len(tokens)-start, c.len, err)
			}
			return fmt.Errorf("decode %d tokens at position %d: llama_decode returned %d: %s", len(chunk), c.len, rc, llamaReason(C.GoBytes(unsafe.Pointer(c.reason), reasonSize)))
		}
		c.len += len(chunk)
		if out == OutputAll {
			src := unsafe.Slice((*float32)(unsafe.Pointer(C.llama_get_logits(c.c))), len(chunk)*c.nVocab)
			copy(logits[start*c.nVocab:], src)
		}
	}
	if out != OutputNone {
		c.last = len(tokens) - 1 - (len(tokens)-1)/c.nBatch*c.nBatch
		// One row is checked, the last: broken weights poison every row,
		// and a full scan of a training batch would cost more than it finds.
		row := c.LastLogits()
		if i := firstNonFinite(row); i >= 0 {
			return fmt.Errorf("decode %d tokens at position %d: model %q gave logit %g for token %d: %w", len(tokens), c.len-len(tokens), c.model.path, row[i], i, ErrNonFiniteLogits)
		}
		if out == OutputLast && logits != nil {
			copy(logits, row)
		}
	}
	return nil
}

// firstNonFinite returns the index of the first NaN or infinity in x, or -1.
func firstNonFinite(x []float32) int {
	for i, v := range x {
		if v-v != 0 { // NaN for NaN and ±Inf, 0 for every finite value
			return i
		}
	}
	return -1
}

// LastLogits returns the logits of the last token of the last Decode, as a
// view into llama.cpp's buffer that is valid until the next Decode: the
// zero-copy path of generation. It returns nil if that Decode produced none.
func (c *Context) LastLogits() []float32 {
	if c.last < 0 {
		return nil
	}
	p := C.llama_get_logits_ith(c.c, C.int32_t(c.last))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), c.nVocab)
}

// Trim drops every position from pos on from the KV cache, so that the next
// Decode continues at pos.
func (c *Context) Trim(pos int) error {
	if pos < 0 || pos > c.len {
		return fmt.Errorf("trim KV cache to %d: cache holds %d positions", pos, c.len)
	}
	if pos == c.len {
		return nil
	}
	if !C.llama_memory_seq_rm(C.llama_get_memory(c.c), 0, C.llama_pos(pos), -1) {
		return fmt.Errorf("trim KV cache to %d: llama.cpp cannot remove part of this model's memory", pos)
	}
	c.len = pos
	c.last = -1
	return nil
}

// Clear empties the KV cache.
func (c *Context) Clear() {
	C.llama_memory_clear(C.llama_get_memory(c.c), true)
	c.len = 0
	c.last = -1
}

func (c *Context) cachedLen() int {
	return int(C.llama_memory_seq_pos_max(C.llama_get_memory(c.c), 0)) + 1
}

// Append decodes tokens after the current context and returns the logits
// predicting the next token, as a view valid until the next decode. It is
// the shape of model the generation loop (package control) drives.
func (c *Context) Append(tokens []int32) ([]float32, error) {
	if err := c.Decode(tokens, OutputLast, nil); err != nil {
		return nil, err
	}
	return c.LastLogits(), nil
}

// SequenceLogits decodes tokens from an empty context and writes the logits
// of every position into dst ([len(tokens) × VocabSize()]): a frozen
// template model's side of a training step.
func (c *Context) SequenceLogits(tokens []int32, dst []float32) error {
	c.Clear()
	return c.Decode(tokens, OutputAll, dst)
}
