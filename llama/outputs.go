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

// SequenceLogitsEach decodes tokens from an empty context and hands over
// the logits of the given positions only (ascending, each below
// len(tokens)): after each batch of tokens it calls emit with the rows of
// the positions that batch held, in order ([n × VocabSize()], a view into
// llama.cpp's buffer valid until emit returns). It uses llama.cpp's
// per-token output flag, so the model's output layer (with a 128k
// vocabulary its largest matrix product) runs at those positions alone and
// llama.cpp keeps only their rows: a training template needs the labelled
// positions of a sequence, not its prompt's, and needs them one batch at a
// time, not all at once. An error from emit stops the decode and is
// returned. Like Decode it allocates nothing and honours SetAbortContext.
func (c *Context) SequenceLogitsEach(tokens, positions []int32, emit func(rows []float32) error) error {
	for i, p := range positions {
		if p < 0 || int(p) >= len(tokens) || (i > 0 && p <= positions[i-1]) {
			return fmt.Errorf("decode: output position %d (index %d) is not ascending within the %d tokens", p, i, len(tokens))
		}
	}
	c.Clear()
	c.last = -1 // the last token may have no output: LastLogits has nothing to show
	if len(tokens) > c.size {
		return fmt.Errorf("decode %d tokens at position 0: %w (context size %d)", len(tokens), ErrContextFull, c.size)
	}
	next := 0 // the first position not handed over yet
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
		if outputs == 0 {
			continue
		}
		// llama.cpp packs the rows of the flagged tokens in batch order.
		rows := unsafe.Slice((*float32)(unsafe.Pointer(C.llama_get_logits(c.c))), outputs*c.nVocab)
		// One row per batch is checked: broken weights poison every row.
		if last := rows[(outputs-1)*c.nVocab:]; firstNonFinite(last) >= 0 {
			i := firstNonFinite(last)
			return fmt.Errorf("decode %d tokens: model %q gave logit %g for token %d at position %d: %w", len(tokens), c.model.path, last[i], i, positions[next+outputs-1], ErrNonFiniteLogits)
		}
		next += outputs
		if err := emit(rows); err != nil {
			return err
		}
	}
	return nil
}
