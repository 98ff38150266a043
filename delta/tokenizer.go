package delta

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	merges map[[2]int32]int32 // (left, right) → the token spelled by their concatenation
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
	// every way of spelling a token as two tokens is a possible merge
	t.merges = map[[2]int32]int32{}
	for id, p := range t.Pieces {
		if t.ids[p] != int32(id) {
			continue // a duplicate: lookups find the first
		}
		for k := 1; k < len(p); k++ {
			a, okA := t.ids[p[:k]]
			b, okB := t.ids[p[k:]]
			if okA && okB {
				t.merges[[2]int32{a, b}] = int32(id)
			}
		}
	}
	return t, nil
}

// Encode tokenizes text as llama2.c does: a dummy-prefix space, one token per
// UTF-8 character (or its bytes as byte tokens, id = byte + 3, when the
// character is not in the vocabulary), then repeatedly merge the adjacent
// pair whose concatenation is the highest-scoring token, the leftmost of
// equal ones. bos and eos add the BOS and EOS ids.
//
// llama2.c rescans every pair after each merge, quadratic in the length of
// the text; here the candidate pairs wait in a priority queue and the
// symbols form a linked list, so whole files encode in n·log n.
func (t *Tokenizer) Encode(text string, bos, eos bool) []int32 {
	if text != "" {
		text = " " + text
	}
	var syms []symbol
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		if id, ok := t.ids[text[i:i+n]]; ok {
			syms = append(syms, symbol{id: id})
		} else {
			for _, b := range []byte(text[i : i+n]) {
				syms = append(syms, symbol{id: int32(b) + 3})
			}
		}
		i += n
	}
	for i := range syms {
		syms[i].prev, syms[i].next = i-1, i+1
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}

	q := &pairQueue{}
	for i := range syms {
		t.pushPair(q, syms, i)
	}
	for q.Len() > 0 {
		c := heap.Pop(q).(pair)
		left := &syms[c.left]
		// skip pairs that an earlier merge changed
		if left.id != c.leftID || left.next != c.right || syms[c.right].id != c.rightID {
			continue
		}
		right := &syms[c.right]
		left.id, left.next = c.merged, right.next
		if right.next >= 0 {
			syms[right.next].prev = c.left
		}
		right.id = -1
		if left.prev >= 0 {
			t.pushPair(q, syms, left.prev)
		}
		t.pushPair(q, syms, c.left)
	}

	var ids []int32
	if bos {
		ids = append(ids, BOS)
	}
	for i := 0; len(syms) > 0 && i >= 0; i = syms[i].next {
		ids = append(ids, syms[i].id)
	}
	if eos {
		ids = append(ids, EOS)
	}
	return ids
}

// symbol is one token of the text being encoded, in a linked list.
type symbol struct {
	id         int32 // −1 once merged into its left neighbour
	prev, next int   // neighbours' indices, −1 at the ends
}

// pair is a candidate merge of symbol left with its right neighbour.
type pair struct {
	left, right     int
	leftID, rightID int32 // the symbols' ids when queued, to detect stale pairs
	merged          int32
	score           float32
}

// pushPair queues the merge of symbol i with its right neighbour, if their
// concatenation is a token.
func (t *Tokenizer) pushPair(q *pairQueue, syms []symbol, i int) {
	j := syms[i].next
	if j < 0 {
		return
	}
	a, b := syms[i].id, syms[j].id
	if merged, ok := t.merges[[2]int32{a, b}]; ok {
		heap.Push(q, pair{left: i, right: j, leftID: a, rightID: b, merged: merged, score: t.Scores[merged]})
	}
}

// pairQueue is a max-heap of candidate merges: highest score first, then
// the leftmost, as llama2.c's scan chooses.
type pairQueue []pair

func (q pairQueue) Len() int { return len(q) }
func (q pairQueue) Less(i, j int) bool {
	if q[i].score != q[j].score {
		return q[i].score > q[j].score
	}
	return q[i].left < q[j].left
}
func (q pairQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pairQueue) Push(x any)   { *q = append(*q, x.(pair)) }
func (q *pairQueue) Pop() any {
	old := *q
	p := old[len(old)-1]
	*q = old[:len(old)-1]
	return p
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
