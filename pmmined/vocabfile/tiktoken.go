package vocabfile

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"

	"github.com/cmc-dev/cmc/vocab"
)

// Special is a special token that a tiktoken rank file leaves out.
type Special struct {
	ID    int32
	Piece string
}

// TiktokenSpecials describes the special tokens of a model whose regular
// tokens come from a tiktoken rank file; roles are -1 when absent.
type TiktokenSpecials struct {
	Tokens             []Special
	BOS, EOS, UNK, PAD int32
}

// Llama3Specials are Llama-3.1's 256 special tokens (128000-128255) as its
// Hugging Face and GGUF vocabularies list them.
func Llama3Specials() TiktokenSpecials {
	named := map[int32]string{
		128000: "<|begin_of_text|>",
		128001: "<|end_of_text|>",
		128004: "<|finetune_right_pad_id|>",
		128006: "<|start_header_id|>",
		128007: "<|end_header_id|>",
		128008: "<|eom_id|>",
		128009: "<|eot_id|>",
		128010: "<|python_tag|>",
	}
	s := TiktokenSpecials{BOS: 128000, EOS: 128001, UNK: -1, PAD: -1}
	reserved := 0
	for id := int32(128000); id < 128256; id++ {
		piece, ok := named[id]
		if !ok {
			piece = fmt.Sprintf("<|reserved_special_token_%d|>", reserved)
			reserved++
		}
		s.Tokens = append(s.Tokens, Special{ID: id, Piece: piece})
	}
	return s
}

// Qwen2Specials are the special tokens of Qwen2 (151643-151645).
func Qwen2Specials() TiktokenSpecials {
	return TiktokenSpecials{
		Tokens: []Special{
			{151643, "<|endoftext|>"},
			{151644, "<|im_start|>"},
			{151645, "<|im_end|>"},
		},
		BOS: -1, EOS: 151643, UNK: -1, PAD: 151643,
	}
}

// ReadTiktoken loads a tiktoken rank file (lines "base64(token bytes) rank",
// rank = token id; LF or CRLF) and adds the model's special tokens as
// control tokens. Pieces are stored the way a GGUF of the same model stores
// them, byte-level encoded, so both give the same vocabulary.
func ReadTiktoken(path string, specials TiktokenSpecials) (*vocab.Vocab, error) {
	v, err := readRanks(path)
	if err != nil {
		return nil, err
	}
	if err := addSpecials(v, specials); err != nil {
		return nil, fmt.Errorf("tiktoken ranks %s: %w", path, err)
	}
	return v, nil
}

func readRanks(path string) (*vocab.Vocab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tiktoken ranks: %w", err)
	}
	v, err := parseRanks(data)
	if err != nil {
		return nil, fmt.Errorf("tiktoken ranks %s: %w", path, err)
	}
	return v, nil
}

func parseRanks(data []byte) (*vocab.Vocab, error) {
	v := &vocab.Vocab{Model: "gpt2"}
	for i, line := range bytes.Split(data, []byte("\n")) {
		fields := bytes.Fields(line) // also drops the CR of CRLF files
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"base64 rank\", got %d fields", i+1, len(fields))
		}
		token, err := base64.StdEncoding.DecodeString(string(fields[0]))
		if err != nil {
			return nil, fmt.Errorf("line %d: token is not base64: %w", i+1, err)
		}
		rank, err := strconv.Atoi(string(fields[1]))
		if err != nil || rank != len(v.Pieces) {
			return nil, fmt.Errorf("line %d: rank %q, want %d (ranks must count up from 0)", i+1, fields[1], len(v.Pieces))
		}
		v.Pieces = append(v.Pieces, vocab.EncodeByteLevel(token))
		v.Types = append(v.Types, vocab.TokenNormal)
	}
	return v, nil
}

// addSpecials appends the special tokens, which must follow the ranks
// without a gap, and sets the roles.
func addSpecials(v *vocab.Vocab, specials TiktokenSpecials) error {
	for _, s := range specials.Tokens {
		if int(s.ID) != len(v.Pieces) {
			return fmt.Errorf("special token %s has id %d, want %d (right after the ranks)", s.Piece, s.ID, len(v.Pieces))
		}
		v.Pieces = append(v.Pieces, s.Piece)
		v.Types = append(v.Types, vocab.TokenControl)
	}
	v.BOS, v.EOS, v.UNK, v.PAD = specials.BOS, specials.EOS, specials.UNK, specials.PAD
	return v.Validate()
}
