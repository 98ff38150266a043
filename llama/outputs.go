package llama

/*
#include "llama.h"
#include "logcapture.h"

// cmc_batch_set_at fills slot i of a one-sequence batch, with or without
// its logits.
static void cmc_batch_set_at(struct llama_batch * b, int i, llama_token tok, llama_pos pos, int output) {
	b->token[i] = tok;
	b->pos[i] = pos;
	b->n_seq_id[i] = 1;
	b->seq_id[i][0] = 0;
	b->logits[i] = (int8_t)output;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// SequenceLogitsAt decodes tokens from an empty context and writes the
// logits of the given positions only into dst ([len(positions) ×
// VocabSize()]); positions must be ascending and below len(tokens). It uses
// llama.cpp's per-token output flag, so the model's output layer (with a
// 128k vocabulary its largest matrix product) runs at those positions alone
// and llama.cpp keeps only their rows: a training template needs the
// labelled positions of a sequence, not its prompt's. Like Decode it
// allocates nothing and honours SetAbortContext.
func (c *Context) SequenceLogitsAt(tokens, positions []int32, dst []float32) error {
	if len(dst) < len(positions)*c.nVocab {
		return fmt.Errorf("decode: logits buffer holds %d floats, need %d×%d", len(dst), len(positions), c.nVocab)
	}
	for i, p := range positions {
		if p < 0 || int(p) >= len(tokens) || (i > 0 && p <= positions[i-1]) {
			return fmt.Errorf("decode: output position %d (index %d) is not ascending within the %d tokens", p, i, len(tokens))
		}
	}
	c.Clear()
	if len(tokens) > c.size {
		return fmt.Errorf("decode %d tokens at position 0: %w (context size %d)", len(tokens), ErrContextFull, c.size)
	}
	next := 0 // the first position whose row is not written yet
	for start := 0; start < len(tokens); start += c.nBatch {
		if err := c.abortErr(); err != nil {
			return fmt.Errorf("decode %d tokens at position %d: aborted: %w", len(tokens)-start, c.len, err)
		}
		chunk := tokens[start:min(start+c.nBatch, len(tokens))]
		outputs := 0
		for i, tok := range chunk {
			if tok < 0 || int(tok) >= c.nVocab {
				return fmt.Errorf("decode: token %d at index %d is outside the vocabulary (size %d)", tok, start+i, c.nVocab)
			}
			o := 0
			if next+outputs < len(positions) && int(positions[next+outputs]) == start+i {
				o = 1
				outputs++
			}
			C.cmc_batch_set_at(&c.batch, C.int(i), C.llama_token(tok), C.llama_pos(c.len+i), C.int(o))
		}
		c.batch.n_tokens = C.int32_t(len(chunk))
		if rc := C.cmc_decode(c.c, c.batch, c.reason, reasonSize); rc != 0 {
			c.len = c.cachedLen()
			if err := c.abortErr(); rc == 2 && err != nil {
				return fmt.Errorf("decode %d tokens at position %d: aborted: %w", len(tokens)-start, c.len, err)
			}
			return fmt.Errorf("decode %d tokens at position %d: llama_decode returned %d: %s", len(chunk), c.len, rc, llamaReason(C.GoBytes(unsafe.Pointer(c.reason), reasonSize)))
		}
		c.len += len(chunk)
		if outputs > 0 {
			// llama.cpp packs the rows of the flagged tokens in batch order.
			src := unsafe.Slice((*float32)(unsafe.Pointer(C.llama_get_logits(c.c))), outputs*c.nVocab)
			copy(dst[next*c.nVocab:], src)
			next += outputs
		}
	}
	// The last token may have had no output: LastLogits has nothing to show.
	c.last = -1
	if next > 0 {
		row := dst[(next-1)*c.nVocab : next*c.nVocab]
		if i := firstNonFinite(row); i >= 0 {
			return fmt.Errorf("decode %d tokens: model %q gave logit %g for token %d at position %d: %w", len(tokens), c.model.path, row[i], i, positions[next-1], ErrNonFiniteLogits)
		}
	}
	return nil
}
