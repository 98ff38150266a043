// Command mkrandom writes a random-weight Llama-architecture GGUF with the
// vocabulary of an existing GGUF file: stand-in user models of any size for
// benchmarks, which llama.cpp loads like real ones.
//
//	go run ./scripts/mkrandom --vocab ../shared/fixtures/gguf-vocab/ggml-vocab-llama-spm.gguf \
//	    --dim 768 --layers 12 --heads 12 --hidden 2048 --f16 --out build/bench/user.gguf
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cmc-dev/cmc/delta"
	"github.com/cmc-dev/cmc/gguf"
)

func main() {
	vocab := flag.String("vocab", "", "GGUF file whose tokenizer the model gets (required)")
	out := flag.String("out", "", "output GGUF (required)")
	dim := flag.Int("dim", 288, "model width")
	layers := flag.Int("layers", 6, "transformer blocks")
	heads := flag.Int("heads", 6, "attention heads")
	kvHeads := flag.Int("kv-heads", 0, "key/value heads (0: as many as --heads)")
	hidden := flag.Int("hidden", 768, "feed-forward width")
	ctx := flag.Int("ctx", 2048, "context length recorded in the file")
	f16 := flag.Bool("f16", false, "store weight matrices as float16")
	tied := flag.Bool("tied", false, "no output matrix: the classifier is the token embedding (as in Llama-3.2-1B)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if err := run(*vocab, *out, *dim, *layers, *heads, *kvHeads, *hidden, *ctx, *f16, *tied, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkrandom:", err)
		os.Exit(1)
	}
}

func run(vocabPath, out string, dim, layers, heads, kvHeads, hidden, ctx int, f16, tied bool, seed uint64) error {
	if vocabPath == "" || out == "" {
		return fmt.Errorf("--vocab and --out are required")
	}
	vf, err := gguf.Open(vocabPath)
	if err != nil {
		return err
	}
	defer vf.Close()
	v, err := vf.Vocab()
	if err != nil {
		return fmt.Errorf("%s: %w", vocabPath, err)
	}
	if kvHeads == 0 {
		kvHeads = heads
	}
	m, err := delta.New(delta.Config{Dim: dim, HiddenDim: hidden, NLayers: layers, NHeads: heads, NKVHeads: kvHeads,
		VocabSize: len(v.Pieces), SeqLen: ctx, SharedClassifier: tied}, seed)
	if err != nil {
		return err
	}
	if err := m.ExportGGUF(out, delta.ExportOptions{Tokenizer: vf, F16: f16, Name: "random"}); err != nil {
		return err
	}
	fmt.Printf("%s: %d parameters\n", out, len(m.Params))
	return nil
}
