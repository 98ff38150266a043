package llama

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/cmc-dev/cmc/vocab"
)

// TokenAttr is llama.cpp's bit set describing a token (normal, control, byte...).
type TokenAttr uint32

// Token attributes, as llama.h defines them.
const (
	AttrUndefined   TokenAttr = C.LLAMA_TOKEN_ATTR_UNDEFINED
	AttrUnknown     TokenAttr = C.LLAMA_TOKEN_ATTR_UNKNOWN
	AttrUnused      TokenAttr = C.LLAMA_TOKEN_ATTR_UNUSED
	AttrNormal      TokenAttr = C.LLAMA_TOKEN_ATTR_NORMAL
	AttrControl     TokenAttr = C.LLAMA_TOKEN_ATTR_CONTROL
	AttrUserDefined TokenAttr = C.LLAMA_TOKEN_ATTR_USER_DEFINED
	AttrByte        TokenAttr = C.LLAMA_TOKEN_ATTR_BYTE
)

// Vocab is a model's vocabulary: llama.cpp's tokenizer, the vocab.Tokenizer
// that generation, training data and evaluation use. Its methods are safe for
// concurrent use.
type Vocab struct {
	c *C.struct_llama_vocab
	n int
}

var _ vocab.Tokenizer = (*Vocab)(nil)

func newVocab(c *C.struct_llama_vocab) *Vocab {
	return &Vocab{c: c, n: int(C.llama_vocab_n_tokens(c))}
}

// Size is the number of tokens.
func (v *Vocab) Size() int { return v.n }

// Type names the tokenizer family: "spm", "bpe", "wpm", "ugm", "rwkv", "plamo2" or "none".
func (v *Vocab) Type() string {
	switch C.llama_vocab_type(v.c) {
	case C.LLAMA_VOCAB_TYPE_SPM:
		return "spm"
	case C.LLAMA_VOCAB_TYPE_BPE:
		return "bpe"
	case C.LLAMA_VOCAB_TYPE_WPM:
		return "wpm"
	case C.LLAMA_VOCAB_TYPE_UGM:
		return "ugm"
	case C.LLAMA_VOCAB_TYPE_RWKV:
		return "rwkv"
	case C.LLAMA_VOCAB_TYPE_PLAMO2:
		return "plamo2"
	}
	return "none"
}

// Text is the raw piece of token id as stored in the vocabulary
// (with "▁" or "Ġ" space markers, "<0x0A>" for byte tokens).
func (v *Vocab) Text(id int32) string {
	if !v.has(id) {
		return ""
	}
	return C.GoString(C.llama_vocab_get_text(v.c, C.llama_token(id)))
}

// Attr is the attribute set of token id, AttrUndefined (none) for an id
// outside the vocabulary. (llama.cpp indexes its token table with at(),
// whose exception would abort the process: every id is checked here.)
func (v *Vocab) Attr(id int32) TokenAttr {
	if !v.has(id) {
		return AttrUndefined
	}
	return TokenAttr(C.llama_vocab_get_attr(v.c, C.llama_token(id)))
}

// has reports whether id is a token of the vocabulary.
func (v *Vocab) has(id int32) bool { return id >= 0 && int(id) < v.n }

// BOS, EOS, EOT and PAD return the special token ids, or -1 where the
// vocabulary has none.
func (v *Vocab) BOS() int32 { return int32(C.llama_vocab_bos(v.c)) }
func (v *Vocab) EOS() int32 { return int32(C.llama_vocab_eos(v.c)) }
func (v *Vocab) EOT() int32 { return int32(C.llama_vocab_eot(v.c)) }
func (v *Vocab) PAD() int32 { return int32(C.llama_vocab_pad(v.c)) }

// IsEOG reports whether id ends generation (EOS, EOT, ...).
func (v *Vocab) IsEOG(id int32) bool { return bool(C.llama_vocab_is_eog(v.c, C.llama_token(id))) }

// AddBOS reports whether the model expects a BOS token before a prompt.
func (v *Vocab) AddBOS() bool { return bool(C.llama_vocab_get_add_bos(v.c)) }

// AddEOS reports whether the model expects an EOS token after a text.
func (v *Vocab) AddEOS() bool { return bool(C.llama_vocab_get_add_eos(v.c)) }

// Tokenize converts text to token ids. addSpecial adds BOS/EOS as the model
// is configured to; parseSpecial turns the text of control tokens such as
// "<|user|>" into those tokens instead of plain text.
func (v *Vocab) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	return v.AppendTokens(nil, text, addSpecial, parseSpecial)
}

// AppendTokens appends the tokens of text to dst; it allocates only when dst
// lacks the capacity.
func (v *Vocab) AppendTokens(dst []int32, text string, addSpecial, parseSpecial bool) ([]int32, error) {
	if len(text) > 1<<30 {
		return dst, fmt.Errorf("tokenize: text of %d bytes is too long", len(text))
	}
	// A token usually covers at least one byte, plus room for BOS and EOS;
	// when it does not (invalid UTF-8 becomes byte tokens around added
	// markers), llama.cpp answers with the count it needs, and the call is
	// repeated with that much room.
	need := len(text) + 2
	var ctext *C.char
	if len(text) > 0 {
		ctext = (*C.char)(unsafe.Pointer(unsafe.StringData(text)))
	}
	for try := 0; try < 2; try++ {
		if cap(dst)-len(dst) < need {
			grown := make([]int32, len(dst), len(dst)+need)
			copy(grown, dst)
			dst = grown
		}
		out := dst[len(dst) : len(dst)+need]
		n := C.llama_tokenize(v.c, ctext, C.int32_t(len(text)),
			(*C.llama_token)(unsafe.Pointer(&out[0])), C.int32_t(len(out)),
			C.bool(addSpecial), C.bool(parseSpecial))
		if n >= 0 {
			return dst[:len(dst)+int(n)], nil
		}
		need = int(-n)
	}
	return dst, fmt.Errorf("tokenize %d bytes: llama.cpp asked for room for %d tokens twice", len(text), need)
}

// AppendPiece appends the text of token id to dst: the bytes it stands for,
// with the space markers decoded. Control tokens are rendered only when
// special is true; an id outside the vocabulary appends nothing.
func (v *Vocab) AppendPiece(dst []byte, id int32, special bool) []byte {
	if !v.has(id) {
		return dst
	}
	var buf [64]byte
	n := C.llama_token_to_piece(v.c, C.llama_token(id), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, C.bool(special))
	if n >= 0 {
		return append(dst, buf[:n]...)
	}
	big := make([]byte, -n)
	n = C.llama_token_to_piece(v.c, C.llama_token(id), (*C.char)(unsafe.Pointer(&big[0])), C.int32_t(len(big)), 0, C.bool(special))
	if n < 0 {
		return dst
	}
	return append(dst, big[:n]...)
}

// Piece returns the text of token id (see AppendPiece).
func (v *Vocab) Piece(id int32, special bool) string {
	return string(v.AppendPiece(nil, id, special))
}

// Detokenize converts token ids back to text, the inverse of Tokenize.
// removeSpecial drops a leading BOS / trailing EOS; unparseSpecial renders
// control tokens as their text.
func (v *Vocab) Detokenize(ids []int32, removeSpecial, unparseSpecial bool) (string, error) {
	if len(ids) == 0 {
		return "", nil
	}
	for i, id := range ids {
		if !v.has(id) {
			return "", fmt.Errorf("detokenize: token %d at index %d is outside the vocabulary (size %d)", id, i, v.n)
		}
	}
	buf := make([]byte, 8*len(ids)+16)
	for try := 0; try < 2; try++ {
		n := C.llama_detokenize(v.c, (*C.llama_token)(unsafe.Pointer(&ids[0])), C.int32_t(len(ids)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), C.bool(removeSpecial), C.bool(unparseSpecial))
		if n >= 0 {
			return string(buf[:n]), nil
		}
		buf = make([]byte, -n)
	}
	return "", fmt.Errorf("detokenize %d tokens: output buffer too small", len(ids))
}
