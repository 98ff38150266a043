// Command mkllama3vocab writes the vocabulary-only GGUF of Llama-3 (128256
// tokens, llama-bpe pre-tokenizer) from Meta's tiktoken rank file, for
// benchmarks that need a real 128k vocabulary (scripts/mkrandom --vocab
// takes it). At 3 MiB the file is made when needed, never committed.
//
//	go run ./scripts/mkllama3vocab --ranks ../shared/fixtures/tokenizers/llama3/tokenizer.model \
//	    --out build/bench/llama3-vocab.gguf
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cmc-dev/cmc/pmmined/vocabfile"
)

func main() {
	ranks := flag.String("ranks", "", "Llama-3 tokenizer.model (tiktoken ranks; required)")
	out := flag.String("out", "", "output GGUF (required)")
	flag.Parse()
	if *ranks == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "mkllama3vocab: --ranks and --out are required")
		os.Exit(2)
	}
	if err := vocabfile.WriteLlama3GGUF(*out, *ranks); err != nil {
		fmt.Fprintln(os.Stderr, "mkllama3vocab:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out)
}
