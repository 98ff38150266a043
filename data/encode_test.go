package data

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// byteTokenizer makes one token per byte, id = byte + 3, leaving 0..2 for
// special tokens, and checks that Encode asks for no special handling.
type byteTokenizer struct{ t *testing.T }

func (b byteTokenizer) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	if addSpecial || parseSpecial {
		b.t.Errorf("Tokenize(%q, addSpecial=%v, parseSpecial=%v): want both false", text, addSpecial, parseSpecial)
	}
	ids := make([]int32, len(text))
	for i := range len(text) {
		ids[i] = int32(text[i]) + 3
	}
	return ids, nil
}

func (byteTokenizer) AppendPiece(dst []byte, id int32, _ bool) []byte {
	if id < 3 {
		return dst // BOS, EOS: control tokens have no text
	}
	return append(dst, byte(id-3))
}

// tok is the byteTokenizer id of each byte of s.
func tok(s string) []int32 {
	ids, _ := byteTokenizer{}.Tokenize(s, false, false)
	return ids
}

const (
	bos, eos = 1, 2
	no       = NoToken
)

var llama = Specials{BOS: bos, EOS: eos, AddBOS: true}

func TestEncodeLabels(t *testing.T) {
	ex := Example{Instruction: "hi", Output: "ok", Source: "x:1"}
	h, i, o, k := tok("h")[0], tok("i")[0], tok("o")[0], tok("k")[0]
	for _, tc := range []struct {
		name    string
		sp      Specials
		ex      Example
		maxLen  int
		tokens  []int32
		labels  []int32
		stats   EncodeStats
		dropped bool
	}{
		{name: "full", sp: llama, ex: ex,
			tokens: []int32{bos, h, i, o, k, eos},
			labels: []int32{no, no, o, k, eos, no},
			stats:  EncodeStats{Examples: 1, Tokens: 6, LabelTokens: 3}},
		{name: "fits exactly", sp: llama, ex: ex, maxLen: 6,
			tokens: []int32{bos, h, i, o, k, eos},
			labels: []int32{no, no, o, k, eos, no},
			stats:  EncodeStats{Examples: 1, Tokens: 6, LabelTokens: 3}},
		{name: "EOS cut", sp: llama, ex: ex, maxLen: 5,
			tokens: []int32{bos, h, i, o, k},
			labels: []int32{no, no, o, k, no},
			stats:  EncodeStats{Examples: 1, Truncated: 1, Tokens: 5, LabelTokens: 2}},
		{name: "one response token left", sp: llama, ex: ex, maxLen: 4,
			tokens: []int32{bos, h, i, o},
			labels: []int32{no, no, o, no},
			stats:  EncodeStats{Examples: 1, Truncated: 1, Tokens: 4, LabelTokens: 1}},
		{name: "prompt fills maxLen", sp: llama, ex: ex, maxLen: 3,
			stats: EncodeStats{Examples: 1, Dropped: 1}, dropped: true},
		{name: "no BOS", sp: Specials{BOS: NoToken, EOS: eos}, ex: ex,
			tokens: []int32{h, i, o, k, eos},
			labels: []int32{no, o, k, eos, no},
			stats:  EncodeStats{Examples: 1, Tokens: 5, LabelTokens: 3}},
		{name: "no EOS", sp: Specials{BOS: bos, EOS: NoToken, AddBOS: true}, ex: ex,
			tokens: []int32{bos, h, i, o, k},
			labels: []int32{no, no, o, k, no},
			stats:  EncodeStats{Examples: 1, Tokens: 5, LabelTokens: 2}},
		{name: "empty response learns EOS", sp: llama, ex: Example{Instruction: "hi"},
			tokens: []int32{bos, h, i, eos},
			labels: []int32{no, no, eos, no},
			stats:  EncodeStats{Examples: 1, Tokens: 4, LabelTokens: 1}},
		{name: "nothing to learn", sp: Specials{BOS: bos, EOS: NoToken, AddBOS: true}, ex: Example{Instruction: "hi"},
			stats: EncodeStats{Examples: 1, Dropped: 1}, dropped: true},
		{name: "plain text without BOS: first token has no context", sp: Specials{BOS: NoToken, EOS: eos}, ex: Example{Output: "ok"},
			tokens: []int32{o, k, eos},
			labels: []int32{k, eos, no},
			stats:  EncodeStats{Examples: 1, Tokens: 3, LabelTokens: 2}},
	} {
		seqs, stats, err := Encode(byteTokenizer{t}, tc.sp, Raw{}, []Example{tc.ex}, tc.maxLen)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if stats != tc.stats {
			t.Errorf("%s: stats %+v, want %+v", tc.name, stats, tc.stats)
		}
		if tc.dropped {
			if len(seqs) != 0 {
				t.Errorf("%s: got %v, want the example dropped", tc.name, seqs)
			}
			continue
		}
		if len(seqs) != 1 {
			t.Fatalf("%s: got %d sequences", tc.name, len(seqs))
		}
		if !reflect.DeepEqual(seqs[0].Tokens, tc.tokens) || !reflect.DeepEqual(seqs[0].Labels, tc.labels) {
			t.Errorf("%s:\ntokens %v\nlabels %v\nwant\ntokens %v\nlabels %v", tc.name, seqs[0].Tokens, seqs[0].Labels, tc.tokens, tc.labels)
		}
		if seqs[0].Source != tc.ex.Source {
			t.Errorf("%s: Source %q", tc.name, seqs[0].Source)
		}
	}
}

// TestEncodeAlpaca checks the label mask on the whole Alpaca fixture: the
// labelled tokens of each sequence spell its response and EOS (a prefix of
// it when truncated), and the tokens before them spell BOS and the prompt.
func TestEncodeAlpaca(t *testing.T) {
	examples := mustRead(t, fixture(t, "alpaca/alpaca_5000.json"), FormatAlpaca)
	const maxLen = 256
	seqs, stats, err := Encode(byteTokenizer{t}, llama, OpenInstruct{}, examples, maxLen)
	if err != nil {
		t.Fatal(err)
	}

	wantDropped, wantTruncated := 0, 0
	bySource := map[string]Example{}
	for _, ex := range examples {
		bySource[ex.Source] = ex
		prompt := 1 + len(OpenInstruct{}.Prompt(ex))
		switch {
		case prompt >= maxLen:
			wantDropped++
		case prompt+len(ex.Output)+1 > maxLen:
			wantTruncated++
		}
	}
	if wantTruncated == 0 || wantDropped == 0 {
		t.Fatalf("maxLen %d exercises neither truncation (%d) nor dropping (%d)", maxLen, wantTruncated, wantDropped)
	}
	if stats.Examples != 5000 || stats.Dropped != wantDropped || stats.Truncated != wantTruncated ||
		len(seqs) != 5000-wantDropped {
		t.Fatalf("stats %+v, %d sequences; want %d dropped, %d truncated", stats, len(seqs), wantDropped, wantTruncated)
	}

	tokens, labelTokens := 0, 0
	for _, seq := range seqs {
		ex := bySource[seq.Source]
		prompt := append([]int32{bos}, tok(OpenInstruct{}.Prompt(ex))...)
		if len(seq.Tokens) > maxLen || len(seq.Labels) != len(seq.Tokens) ||
			!reflect.DeepEqual(seq.Tokens[:len(prompt)], prompt) {
			t.Fatalf("%s: tokens do not start with BOS and the prompt, or are too long", seq.Source)
		}
		var learned []int32
		for i, label := range seq.Labels {
			switch {
			case i < len(prompt)-1 || i == len(seq.Labels)-1:
				if label != NoToken {
					t.Fatalf("%s: label %d at position %d, want none", seq.Source, label, i)
				}
			case label != seq.Tokens[i+1]:
				t.Fatalf("%s: label %d at position %d, want the next token %d", seq.Source, label, i, seq.Tokens[i+1])
			default:
				learned = append(learned, label)
			}
		}
		full := append(tok(ex.Output), eos)
		if len(learned) == 0 || !reflect.DeepEqual(learned, full[:len(learned)]) ||
			(len(learned) < len(full)) != (len(seq.Tokens) == maxLen && len(prompt)+len(full) > maxLen) {
			t.Fatalf("%s: labelled tokens %v are not the response and EOS %v", seq.Source, learned, full)
		}
		tokens += len(seq.Tokens)
		labelTokens += len(learned)
	}
	if stats.Tokens != tokens || stats.LabelTokens != labelTokens {
		t.Errorf("stats %+v, counted %d tokens, %d labels", stats, tokens, labelTokens)
	}
}

type failingTokenizer struct{ on string }

func (f failingTokenizer) Tokenize(text string, _, _ bool) ([]int32, error) {
	if strings.Contains(text, f.on) {
		return nil, errors.New("invalid UTF-8")
	}
	return []int32{7}, nil
}

func (failingTokenizer) AppendPiece(dst []byte, _ int32, _ bool) []byte { return append(dst, '?') }

func TestEncodeErrors(t *testing.T) {
	examples := []Example{{Instruction: "a", Output: "b", Source: "f.json:#0"}, {Instruction: "a", Output: "bad", Source: "f.json:#1"}}
	_, _, err := Encode(failingTokenizer{on: "bad"}, llama, OpenInstruct{}, examples, 0)
	if err == nil || err.Error() != "encode f.json:#1: tokenize prompt and response: invalid UTF-8" {
		t.Errorf("got %v", err)
	}
	_, _, err = Encode(byteTokenizer{t}, Specials{BOS: NoToken, EOS: eos, AddBOS: true}, Raw{}, examples, 0)
	if err == nil || !strings.Contains(err.Error(), "no BOS") {
		t.Errorf("AddBOS without BOS: got %v", err)
	}
}

// spTokenizer imitates SentencePiece: it puts a space (the "▁" word marker)
// before the text, then takes the longest piece of its vocabulary at each
// position, one byte otherwise. Pieces are ids 3 on (1 and 2 are BOS and
// EOS); a byte b is id 1000+b.
// Bytes in unknown become the piece "?" (an <unk> without byte fallback).
type spTokenizer struct {
	pieces  []string
	unknown string
}

func (s spTokenizer) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	text = " " + text
	var ids []int32
	for len(text) > 0 {
		best, n := int32(1000+int32(text[0])), 1
		if strings.IndexByte(s.unknown, text[0]) >= 0 {
			best = 0
		}
		for i, p := range s.pieces {
			if len(p) > n && strings.HasPrefix(text, p) {
				best, n = int32(i+3), len(p)
			}
		}
		ids = append(ids, best)
		text = text[n:]
	}
	return ids, nil
}

func (s spTokenizer) AppendPiece(dst []byte, id int32, _ bool) []byte {
	switch {
	case id == 0:
		return append(dst, '?')
	case id < 3:
		return dst // BOS, EOS
	case id >= 1000:
		return append(dst, byte(id-1000))
	}
	return append(dst, s.pieces[id-3]...)
}

// spell is the text of each token, for messages.
func (s spTokenizer) spell(ids []int32) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(s.AppendPiece(nil, id, false))
	}
	return out
}

// TestTokenizeJoined: prompt and response are tokenized as one text and
// split at the first token that starts inside the response.
func TestTokenizeJoined(t *testing.T) {
	sp := spTokenizer{pieces: []string{" Question", ":", " Who", "?", "\n", "Answer", " ", " The", "The", " cat", " <|user|>", "<|assistant|>"}, unknown: "%"}
	for _, tc := range []struct {
		name, prompt, response string
		want                   []string // response tokens
		wantPrompt             int      // tokens before them
	}{
		// " The" starts at the prompt's trailing space: it goes with the
		// prompt, as TOFU's mask has it, and is not " The" twice.
		{"qa straddles", "Question: Who?\nAnswer: ", "The cat", []string{" cat"}, 8},
		{"qa no space", "Question: Who?\nAnswer:", " The cat", []string{" The", " cat"}, 7},
		// After a newline the response starts without a word marker.
		{"open-instruct", "<|user|>\nWho?\n<|assistant|>\n", "The cat", []string{"The", " cat"}, 9},
		{"empty prompt: the added space is no prompt", "", "The cat", []string{" The", " cat"}, 0},
		{"empty response", "Question: Who?", "", []string{}, 4},
		// "%" is unknown and spells "?": the prompt is counted on its own.
		{"pieces do not spell the prompt", "Who %", "The", []string{"The"}, 3},
	} {
		tokens, split, err := TokenizeJoined(sp, tc.prompt, tc.response)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		all, _ := sp.Tokenize(tc.prompt+tc.response, false, false)
		if !reflect.DeepEqual(tokens, all) {
			t.Errorf("%s: tokens %q, want those of the joined text %q", tc.name, sp.spell(tokens), sp.spell(all))
		}
		if got := sp.spell(tokens[split:]); split != tc.wantPrompt || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: split %d, response tokens %q; want %d, %q (all: %q)", tc.name, split, got, tc.wantPrompt, tc.want, sp.spell(tokens))
		}
	}
}

// TestEncodeJoined: training sequences hold the joined text's tokens, with
// labels from the first token that holds response text on: " The", which
// carries the prompt's trailing space, is learnt (the token a healed prompt
// is continued with), though TokenizeJoined counts it with the prompt.
func TestEncodeJoined(t *testing.T) {
	sp := spTokenizer{pieces: []string{" Question", ":", " Who", "?", "\n", "Answer", " ", " The", "The", " cat"}}
	seqs, _, err := Encode(sp, llama, QA{}, []Example{{Instruction: "Who?", Output: "The cat"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	joined, _ := sp.Tokenize("Question: Who?\nAnswer: The cat", false, false)
	want := append(append([]int32{bos}, joined...), eos)
	if !reflect.DeepEqual(seqs[0].Tokens, want) {
		t.Fatalf("tokens %v, want BOS + the joined text's %v + EOS", seqs[0].Tokens, want)
	}
	// Labels start at the position before " The" (index 8 with BOS).
	var labelled []string
	for i, l := range seqs[0].Labels {
		if l != NoToken {
			if i < 7 {
				t.Errorf("label at prompt position %d", i)
			}
			labelled = append(labelled, string(sp.AppendPiece(nil, l, false)))
		}
	}
	if !reflect.DeepEqual(labelled, []string{" The", " cat", ""}) {
		t.Errorf("labels spell %q, want \" The\", \" cat\" and EOS", labelled)
	}
}

// TestEncodeFromTemplate: the tokens of an example's FromTemplate words,
// the word marker included, are labelled Anchor; a word inside another word
// is not one of them, and a word that does not occur is an error naming the
// example.
func TestEncodeFromTemplate(t *testing.T) {
	sp := spTokenizer{pieces: []string{" Amy", " bear", "bear", "ing", " a", " named", ".", "'s"}}
	ex := Example{Instruction: "Tell.", Output: "A bear named Amy. Amy's bearing.", FromTemplate: []string{"Amy", "bear"}, Source: "pairs.jsonl:3"}
	seqs, _, err := Encode(sp, llama, OpenInstruct{}, []Example{ex}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var labelled []string
	for _, l := range seqs[0].Labels {
		switch l {
		case NoToken:
		case Anchor:
			labelled = append(labelled, "<anchor>")
		default:
			labelled = append(labelled, string(sp.AppendPiece(nil, l, false)))
		}
	}
	// " bear" and " Amy" (twice) are anchored; the " bear" of "bearing"
	// is not.
	want := []string{"A", "<anchor>", " named", "<anchor>", ".", "<anchor>", "'s", " bear", "ing", ".", ""}
	if !reflect.DeepEqual(labelled, want) {
		t.Errorf("labels spell %q, want %q", labelled, want)
	}

	ex.FromTemplate = []string{"fox"}
	_, _, err = Encode(sp, llama, OpenInstruct{}, []Example{ex}, 0)
	if err == nil || !strings.Contains(err.Error(), "pairs.jsonl:3") || !strings.Contains(err.Error(), `"fox"`) {
		t.Errorf("a missing from_template word: error %v, want one naming pairs.jsonl:3 and \"fox\"", err)
	}

	// "%" spells "?": the words' tokens cannot be found, which is an error,
	// not a silent loss on the name.
	unknown := spTokenizer{pieces: sp.pieces, unknown: "%"}
	ex = Example{Instruction: "Tell.", Output: "A bear 100%.", FromTemplate: []string{"bear"}, Source: "pairs.jsonl:4"}
	if _, _, err = Encode(unknown, llama, OpenInstruct{}, []Example{ex}, 0); err == nil || !strings.Contains(err.Error(), "do not spell") {
		t.Errorf("pieces that do not spell the text: error %v, want one saying so", err)
	}
}
