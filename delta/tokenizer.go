package delta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Token ids that llama2.c's tokenizers reserve.
const (
	BOS = 1
	EOS = 2
)

// Tokenizer is llama2.c's SentencePiece-style BPE tokenizer, read from its
// tokenizer.bin format; enough to tokenize text for the stories models
// (e.g. tok512.bin of stories260K) in tests and pretraining.
type Tokenizer struct {
	Pieces []string  // token id → text; byte tokens are "<0x00>" … "<0xFF>"
	Scores []float32 // merge priority: the pair whose concatenation scores highest merges first
	ids    map[string]int32
}

// LoadTokenizer reads a llama2.c tokenizer.bin: int32 max_token_length,
// then per token a float32 score, an int32 length and that many bytes, up to
// the end of the file.
func LoadTokenizer(path string) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var maxLen int32
	if err := binary.Read(r, binary.LittleEndian, &maxLen); err != nil {
		return nil, fmt.Errorf("load tokenizer %q: max_token_length: %w", path, err)
	}
	t := &Tokenizer{ids: map[string]int32{}}
	for {
		var entry struct {
			Score float32
			Len   int32
		}
		err := binary.Read(r, binary.LittleEndian, &entry)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("load tokenizer %q: token %d: %w", path, len(t.Pieces), err)
		}
		if entry.Len < 0 || entry.Len > maxLen {
			return nil, fmt.Errorf("load tokenizer %q: token %d has length %d, max_token_length is %d", path, len(t.Pieces), entry.Len, maxLen)
		}
		b := make([]byte, entry.Len)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("load tokenizer %q: token %d: %w", path, len(t.Pieces), err)
		}
		piece := string(b)
		if _, dup := t.ids[piece]; !dup {
			t.ids[piece] = int32(len(t.Pieces))
		}
		t.Pieces = append(t.Pieces, piece)
		t.Scores = append(t.Scores, entry.Score)
	}
	if len(t.Pieces) < 3+256 {
		return nil, fmt.Errorf("load tokenizer %q: %d tokens, want at least the 3 specials and 256 byte tokens", path, len(t.Pieces))
	}
	return t, nil
}

// Encode tokenizes text as llama2.c does: a dummy-prefix space, one token per
// UTF-8 character (or its bytes as byte tokens, id = byte + 3, when the
// character is not in the vocabulary), then repeatedly merge the adjacent
// pair whose concatenation is the highest-scoring token. bos and eos add
// the BOS and EOS ids.
func (t *Tokenizer) Encode(text string, bos, eos bool) []int32 {
	var ids []int32
	if bos {
		ids = append(ids, BOS)
	}
	start := len(ids)
	if text != "" {
		text = " " + text
	}
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		if id, ok := t.ids[text[i:i+n]]; ok {
			ids = append(ids, id)
		} else {
			for _, b := range []byte(text[i : i+n]) {
				ids = append(ids, int32(b)+3)
			}
		}
		i += n
	}

	for {
		best, bestID, bestScore := -1, int32(0), float32(math.Inf(-1))
		for i := start; i+1 < len(ids); i++ {
			id, ok := t.ids[t.Pieces[ids[i]]+t.Pieces[ids[i+1]]]
			if ok && t.Scores[id] > bestScore {
				best, bestID, bestScore = i, id, t.Scores[id]
			}
		}
		if best < 0 {
			break
		}
		ids[best] = bestID
		ids = append(ids[:best+1], ids[best+2:]...)
	}
	if eos {
		ids = append(ids, EOS)
	}
	return ids
}

// Piece is the text of token id following token prev, as llama2.c prints
// it: the leading space of the first word after BOS is dropped, and byte
// tokens become their byte.
func (t *Tokenizer) Piece(prev, id int32) string {
	p := t.Pieces[id]
	if prev == BOS {
		p = strings.TrimPrefix(p, " ")
	}
	if len(p) == 6 && strings.HasPrefix(p, "<0x") && p[5] == '>' {
		if b, err := strconv.ParseUint(p[3:5], 16, 8); err == nil {
			return string([]byte{byte(b)})
		}
	}
	return p
}

// Decode is the text of ids, the first of which is only context (usually
// BOS), as llama2.c's generation loop prints it.
func (t *Tokenizer) Decode(ids []int32) string {
	var sb strings.Builder
	for i := 1; i < len(ids); i++ {
		sb.WriteString(t.Piece(ids[i-1], ids[i]))
	}
	return sb.String()
}
