package gguf

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummaryStories260K(t *testing.T) {
	f := openFixture(t, stories260K)
	s := f.Summary()
	if s.Params == nil || s.Params.BlockCount != 5 || s.Vocab == nil || s.Vocab.Size != 512 {
		t.Fatalf("summary params %+v, vocab %+v", s.Params, s.Vocab)
	}
	// The tensor data runs from offset 14176 to the end of the file.
	if len(s.Tensors) != 48 || s.TensorBytes != 1185376-14176 {
		t.Errorf("%d tensors, %d bytes", len(s.Tensors), s.TensorBytes)
	}
	wantSpecial := []SpecialToken{{"BOS", 1, "<s>"}, {"EOS", 2, "</s>"}, {"UNK", 0, "<unk>"}}
	if len(s.Vocab.Special) != 3 || s.Vocab.Special[0] != wantSpecial[0] || s.Vocab.Special[1] != wantSpecial[1] || s.Vocab.Special[2] != wantSpecial[2] {
		t.Errorf("special tokens %+v, want %+v", s.Vocab.Special, wantSpecial)
	}
	var buf bytes.Buffer
	if err := s.WriteText(&buf, false); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, want := range []string{
		stories260K,
		"GGUF v3, alignment 32, tensor data at offset 14176",
		"heads / KV heads     8 / 4 (head dim 8)",
		"rms norm eps         1e-05",
		`BOS            1 "<s>"`,
		"size           512 tokens with scores, 0 merges",
		"llama.block_count                       uint32   5",
		"blk.0.attn_k.weight       F32   64 x 32   8192",
		"tokenizer arrays summarised",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text summary lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "tokenizer.ggml.tokens") {
		t.Error("tokenizer.ggml.tokens listed without allKeys")
	}
	buf.Reset()
	if err := s.WriteText(&buf, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `tokenizer.ggml.tokens                   string[512]   ["<unk>", "<s>", "</s>", "<0x00>", "<0x01>", "<0x02>", "<0x03>", "<0x04>", … 504 more]`) {
		t.Errorf("allKeys text lacks the abbreviated token list:\n%s", buf.String())
	}

	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(js, &back); err != nil || back.Params.HeadCountKV != 4 || len(back.Tensors) != 48 {
		t.Errorf("JSON round trip: %v, %+v", err, back.Params)
	}
}

func TestSummaryVocabOnly(t *testing.T) {
	f := openFixture(t, filepath.Join(vocabFixture, "ggml-vocab-dbrx.gguf"))
	s := f.Summary()
	if s.Vocab == nil || s.Vocab.Merges != 100000 || s.Vocab.HasScores || len(s.Tensors) != 0 {
		t.Fatalf("vocab %+v, %d tensors", s.Vocab, len(s.Tensors))
	}
	for _, k := range s.Metadata {
		if k.Key == "tokenizer.chat_template" && (len(k.Value) > 200 || !strings.Contains(k.Value, "characters)")) {
			t.Errorf("chat template not abbreviated: %d bytes", len(k.Value))
		}
	}
}

func TestDescribe(t *testing.T) {
	nested, _ := NewArrayOfArrays([]Value{NewArray([]int8{-1, 2}), NewArray([]bool{true})})
	for _, tc := range []struct {
		v     Value
		limit int
		want  string
	}{
		{NewScalar(float32(0.1)), 8, "0.1"},
		{NewScalar(int16(-3)), 8, "-3"},
		{NewScalar("a\tb"), 8, `"a\tb"`},
		{NewScalar("héllo wörld"), 1, `"héllo wörl"…(11 characters)`},
		{NewArray([]uint32{1, 2, 3}), 2, "[1, 2, … 1 more]"},
		{NewArray([]uint32{1, 2, 3}), 0, "[1, 2, 3]"},
		{nested, 8, "[[-1, 2], [true]]"},
	} {
		if got := tc.v.Describe(tc.limit); got != tc.want {
			t.Errorf("Describe(%d) = %s, want %s", tc.limit, got, tc.want)
		}
	}
}
