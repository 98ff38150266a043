package llama

import (
	"fmt"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/vocab"
)

// fileMetadata is what cmc's own GGUF reader learns of a model file before
// llama.cpp sees it.
type fileMetadata struct {
	arch     string       // to name it when llama.cpp refuses the file
	vocab    *vocab.Vocab // the tokenizer arrays as the file stores them
	vocabErr error        // why they cannot serve as a vocabulary, if so
}

// readMetadata reads the file once with cmc's own GGUF reader, which treats
// it as hostile, and checks the metadata llama.cpp would trust blindly.
// Errors name the file.
func readMetadata(path string) (fileMetadata, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return fileMetadata{}, err
	}
	defer f.Close()
	if err := f.CheckModel(); err != nil {
		return fileMetadata{}, err
	}
	md := fileMetadata{arch: f.Architecture()}
	if md.vocab, md.vocabErr = f.Vocab(); md.vocabErr == nil {
		md.vocabErr = md.vocab.Validate()
	}
	if md.vocabErr != nil {
		md.vocab, md.vocabErr = nil, fmt.Errorf("vocabulary of %s: %w", path, md.vocabErr)
	}
	return md, nil
}
