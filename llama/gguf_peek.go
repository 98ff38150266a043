package llama

import (
	"fmt"

	"github.com/cmc-dev/cmc/gguf"
)

// readArchitecture reads general.architecture with cmc's own GGUF reader,
// to name the architecture when llama.cpp refuses a file.
func readArchitecture(path string) (string, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return "", fmt.Errorf("read architecture: %w", err)
	}
	defer f.Close()
	return f.Architecture(), nil
}
