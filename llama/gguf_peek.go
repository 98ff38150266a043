package llama

import (
	"github.com/cmc-dev/cmc/gguf"
)

// checkMetadata reads the file with cmc's own GGUF reader, which treats it
// as hostile, and checks the metadata llama.cpp would trust blindly. It
// returns the architecture, to name it when llama.cpp refuses the file.
// Errors name the file.
func checkMetadata(path string) (arch string, err error) {
	f, err := gguf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.CheckModel(); err != nil {
		return "", err
	}
	return f.Architecture(), nil
}
