package llama

/*
#include <stdlib.h>
#include "llama.h"
#include "logcapture.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/vocab"
)

// ModelParams says how to load a model.
type ModelParams struct {
	// GPULayers is the number of layers to offload to a GPU backend; -1 means all.
	GPULayers int
	// NoMmap reads the weights into memory instead of mapping the file.
	NoMmap bool
	// VocabOnly loads the tokenizer and metadata without any weights:
	// enough to tokenize and map vocabularies.
	VocabOnly bool
}

// Model is a loaded GGUF model. It is safe for concurrent use by several
// Contexts; Close it when no Context uses it any more.
type Model struct {
	c     *C.struct_llama_model
	vocab *Vocab
	path  string
	file  fileMetadata
}

// ErrNotGGUF reports a file that does not start with the GGUF magic.
var ErrNotGGUF = gguf.ErrNotGGUF

// LoadModel loads the GGUF model at path. The file's metadata is checked
// first (gguf.File.CheckModel), since llama.cpp aborts the process on some
// lies instead of returning an error; when llama.cpp refuses the file, the
// error carries the reason it logged.
func LoadModel(path string, p ModelParams) (*Model, error) {
	md, err := readMetadata(path)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}
	initBackend()
	mp := C.llama_model_default_params()
	mp.n_gpu_layers = C.int32_t(p.GPULayers)
	if p.GPULayers < 0 {
		mp.n_gpu_layers = 999
	}
	mp.use_mmap = C.bool(!p.NoMmap)
	mp.vocab_only = C.bool(p.VocabOnly)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	reason := make([]byte, reasonSize)
	cm := C.cmc_model_load_from_file(cpath, mp, (*C.char)(unsafe.Pointer(&reason[0])), C.size_t(len(reason)))
	if cm == nil {
		return nil, fmt.Errorf("load model %q (architecture %q): %s", path, md.arch, llamaReason(reason))
	}
	m := &Model{c: cm, path: path, file: md}
	m.vocab = newVocab(C.llama_model_get_vocab(cm))
	return m, nil
}

// Close frees the model. The Model must not be used afterwards.
func (m *Model) Close() {
	if m.c != nil {
		C.llama_model_free(m.c)
		m.c = nil
	}
}

// Path is the file the model was loaded from.
func (m *Model) Path() string { return m.path }

// Vocab is the model's vocabulary, as llama.cpp tokenizes with it.
func (m *Model) Vocab() *Vocab { return m.vocab }

// FileVocab is the vocabulary as the file stores it (pieces, token types,
// special ids), read while the model loaded: what token maps are built
// from, without opening the file again.
func (m *Model) FileVocab() (*vocab.Vocab, error) { return m.file.vocab, m.file.vocabErr }

// EmbeddingSize is the model's hidden size (n_embd).
func (m *Model) EmbeddingSize() int { return int(C.llama_model_n_embd(m.c)) }

// Layers is the number of transformer blocks.
func (m *Model) Layers() int { return int(C.llama_model_n_layer(m.c)) }

// TrainedContext is the context length the model was trained with.
func (m *Model) TrainedContext() int { return int(C.llama_model_n_ctx_train(m.c)) }

// Params is the number of parameters.
func (m *Model) Params() uint64 { return uint64(C.llama_model_n_params(m.c)) }

// Bytes is the size of the weights in memory.
func (m *Model) Bytes() uint64 { return uint64(C.llama_model_size(m.c)) }

// Description is llama.cpp's one-line summary, e.g. "llama 7B Q4_K - Medium".
func (m *Model) Description() string {
	var buf [256]C.char
	n := C.llama_model_desc(m.c, &buf[0], C.size_t(len(buf)))
	if n < 0 {
		return ""
	}
	return C.GoString(&buf[0])
}

// Meta returns the metadata value of key as a string, if present.
func (m *Model) Meta(key string) (string, bool) {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	buf := make([]byte, 256)
	for {
		n := C.llama_model_meta_val_str(m.c, ckey, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		if n < 0 {
			return "", false
		}
		if int(n) < len(buf) {
			return string(buf[:n]), true
		}
		buf = make([]byte, int(n)+1)
	}
}
