// Package vocabfile reads tokenizer vocabularies (vocab.Vocab) for token
// mapping from the files models ship with: GGUF (vocab-only or whole
// models), SentencePiece .model protobufs and tiktoken rank files.
package vocabfile

import (
	"bufio"
	"bytes"
	"fmt"
	"os"

	"github.com/cmc-dev/cmc/gguf"
	"github.com/cmc-dev/cmc/vocab"
)

// Open reads a vocabulary from path, telling the format by its contents:
// GGUF by its magic, a tiktoken rank file by a first line "base64 0", else
// a SentencePiece model. A tiktoken file of 128000 ranks gets Llama-3's
// special tokens and one of 151643 ranks Qwen2's; others get none.
func Open(path string) (*vocab.Vocab, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open vocabulary: %w", err)
	}
	head, err := bufio.NewReader(f).Peek(64)
	f.Close()
	if len(head) == 0 {
		return nil, fmt.Errorf("open vocabulary %s: empty or unreadable file: %v", path, err)
	}
	switch {
	case bytes.HasPrefix(head, []byte("GGUF")):
		return ReadGGUF(path)
	case looksLikeTiktoken(head):
		v, err := readRanks(path)
		if err != nil {
			return nil, err
		}
		specials := TiktokenSpecials{BOS: -1, EOS: -1, UNK: -1, PAD: -1}
		switch len(v.Pieces) {
		case 128000:
			specials = Llama3Specials()
		case 151643:
			specials = Qwen2Specials()
		}
		if err := addSpecials(v, specials); err != nil {
			return nil, fmt.Errorf("tiktoken ranks %s: %w", path, err)
		}
		return v, nil
	}
	return ReadSentencePiece(path)
}

// looksLikeTiktoken reports whether a file starts with "base64 0".
func looksLikeTiktoken(head []byte) bool {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	fields := bytes.Fields(line)
	return len(fields) == 2 && string(fields[1]) == "0"
}

// ReadGGUF reads the tokenizer of a GGUF file and checks that token maps
// can read its pieces: with "▁" for a space (tokenizer models "llama" for
// SentencePiece, "t5" for its unigram variant, and "bert", whose WordPiece
// vocabulary llama.cpp's converter rewrites with "▁" at word starts) or
// byte-level ("gpt2").
func ReadGGUF(path string) (*vocab.Vocab, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v, err := f.Vocab()
	if err != nil {
		return nil, fmt.Errorf("vocabulary of %s: %w", path, err)
	}
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("vocabulary of %s: %w", path, err)
	}
	return v, nil
}
