package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/llama"
)

// TestTokenizeJoinedRealVocabularies: with llama.cpp's own tokenizers
// (Llama-2 SentencePiece, GPT-2 byte-level BPE), prompt and answer are the
// tokens of the joined text, the answer's tokens spell the answer, or the
// part after a token that straddles the boundary, and nothing reads
// "Answer:  The" with two spaces as separate tokenisation did. Training
// (data.Encode) learns that straddling token too: its labels spell the
// answer after the prompt's space.
func TestTokenizeJoinedRealVocabularies(t *testing.T) {
	const question = "Question: Who wrote 'Romeo and Juliet'?\nAnswer: "
	const answer = "The play was written by William Shakespeare."
	for _, tc := range []struct {
		vocab, prompt string
		wantAnswer    string // the text of the answer tokens
	}{
		// SentencePiece: "Answer:" then "▁The": the trailing space and "The"
		// are one token, which goes with the prompt (TOFU's mask).
		{"gguf-vocab/ggml-vocab-llama-spm.gguf", question, " play was written by William Shakespeare."},
		{"gguf-vocab/ggml-vocab-gpt-2.gguf", question, " play was written by William Shakespeare."},
		// After a newline the answer starts a fresh word: all of it is answer.
		{"gguf-vocab/ggml-vocab-llama-spm.gguf", "<|user|>\nWho wrote 'Romeo and Juliet'?\n<|assistant|>\n", answer},
		{"gguf-vocab/ggml-vocab-gpt-2.gguf", "[INST] Who wrote 'Romeo and Juliet'? [/INST]", answer},
	} {
		m, err := llama.LoadModel(fixture(t, tc.vocab), llama.ModelParams{VocabOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		v := m.Vocab()
		tokens, split, err := data.TokenizeJoined(v, tc.prompt, answer)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := v.Tokenize(tc.prompt+answer, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tokens, whole) {
			t.Errorf("%s: tokens are not those of the joined text", tc.vocab)
		}
		var text []byte
		for _, id := range tokens[split:] {
			text = v.AppendPiece(text, id, false)
		}
		if string(text) != tc.wantAnswer {
			t.Errorf("%s, prompt %q: answer tokens spell %q, want %q", tc.vocab, tc.prompt, text, tc.wantAnswer)
		}
		seqs, _, err := data.Encode(v, data.Specials{BOS: data.NoToken, EOS: data.NoToken}, data.Raw{}, []data.Example{{Instruction: tc.prompt, Output: answer}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var labelled []byte
		for _, l := range seqs[0].Labels {
			if l != data.NoToken {
				labelled = v.AppendPiece(labelled, l, false)
			}
		}
		want := answer
		if strings.HasSuffix(tc.prompt, " ") {
			want = " " + answer // the prompt's space, carried by the first answer token
		}
		if string(labelled) != want {
			t.Errorf("%s, prompt %q: training labels spell %q, want %q", tc.vocab, tc.prompt, labelled, want)
		}
		m.Close()
	}
}
