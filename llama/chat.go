package llama

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// Message is one turn of a chat.
type Message struct {
	Role    string // "system", "user" or "assistant" (templates may know more)
	Content string
}

// ErrNoChatTemplate reports a model whose GGUF carries no chat template.
var ErrNoChatTemplate = errors.New("the model has no chat template")

// ChatTemplate returns the model's own chat template (tokenizer.chat_template).
func (m *Model) ChatTemplate() (string, error) {
	t := C.llama_model_chat_template(m.c, nil)
	if t == nil {
		return "", ErrNoChatTemplate
	}
	return C.GoString(t), nil
}

// ApplyChatTemplate renders msgs with the model's chat template, ending
// with the start of the assistant's turn when addAssistant is set. llama.cpp
// recognises the common templates (Llama-2/3, Mistral, ChatML, Phi-3, ...)
// rather than running Jinja; an unknown one is an error.
//
// The text is for display: tokenising it with special tokens parsed would
// let message contents inject control tokens. Chat.Tokenize does it safely.
func (m *Model) ApplyChatTemplate(msgs []Message, addAssistant bool) (string, error) {
	tmpl, err := m.ChatTemplate()
	if err != nil {
		return "", fmt.Errorf("chat template of %q: %w", m.path, err)
	}
	return m.applyTemplate(tmpl, msgs, addAssistant)
}

func (m *Model) applyTemplate(tmpl string, msgs []Message, addAssistant bool) (string, error) {
	ctmpl := C.CString(tmpl)
	defer C.free(unsafe.Pointer(ctmpl))
	cmsgs := make([]C.struct_llama_chat_message, len(msgs))
	size := 0
	for i, msg := range msgs {
		cmsgs[i].role = C.CString(msg.Role)
		cmsgs[i].content = C.CString(msg.Content)
		size += len(msg.Role) + len(msg.Content)
	}
	defer func() {
		for _, c := range cmsgs {
			C.free(unsafe.Pointer(c.role))
			C.free(unsafe.Pointer(c.content))
		}
	}()
	var first *C.struct_llama_chat_message
	if len(cmsgs) > 0 {
		first = &cmsgs[0]
	}
	buf := make([]byte, 2*size+256)
	for try := 0; try < 2; try++ {
		n := C.llama_chat_apply_template(ctmpl, first, C.size_t(len(cmsgs)), C.bool(addAssistant),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)))
		if n < 0 {
			return "", fmt.Errorf("chat template of %q is not one llama.cpp recognises; use a raw or custom prompt template", m.path)
		}
		if int(n) <= len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, n)
	}
	return "", fmt.Errorf("chat template of %q: output kept growing", m.path)
}

// Chat renders conversations with a model's chat template and tokenises
// them so that special tokens come only from the template's own text: a
// user who types "<|im_end|>" or "</s>" gets those characters, not the
// control token that would end their turn. Make one per model with
// NewChat; it is safe for concurrent use.
type Chat struct {
	model *Model
	tmpl  string
	// specials are the tokens llama.cpp matches by their text when it
	// parses special tokens (control, user-defined and unknown), longest
	// text first, as llama.cpp tries them.
	specials []specialToken
}

type specialToken struct {
	id             int32
	text           string
	lstrip, rstrip bool // llama.cpp eats the whitespace before / after it
}

// NewChat reads m's chat template and its special tokens.
func (m *Model) NewChat() (*Chat, error) {
	tmpl, err := m.ChatTemplate()
	if err != nil {
		return nil, fmt.Errorf("chat template of %q: %w", m.path, err)
	}
	c := &Chat{model: m, tmpl: tmpl}
	v := m.Vocab()
	for id := int32(0); int(id) < v.Size(); id++ {
		attr := C.llama_vocab_get_attr(v.c, C.llama_token(id))
		if attr&(C.LLAMA_TOKEN_ATTR_CONTROL|C.LLAMA_TOKEN_ATTR_USER_DEFINED|C.LLAMA_TOKEN_ATTR_UNKNOWN) == 0 {
			continue
		}
		text := v.Text(id)
		if text == "" {
			continue
		}
		c.specials = append(c.specials, specialToken{id: id, text: text,
			lstrip: attr&C.LLAMA_TOKEN_ATTR_LSTRIP != 0, rstrip: attr&C.LLAMA_TOKEN_ATTR_RSTRIP != 0})
	}
	slices.SortStableFunc(c.specials, func(a, b specialToken) int { return len(b.text) - len(a.text) })
	return c, nil
}

// Tokenize renders msgs with the chat template and returns the text and its
// tokens. When the last message is the assistant's, it is a prefill: the
// text ends with its content, left open for the model to continue;
// otherwise the text ends with the start of the assistant's turn.
// addSpecial adds BOS/EOS as the model is configured to, as Vocab.Tokenize
// does.
func (c *Chat) Tokenize(msgs []Message, addSpecial bool) ([]int32, string, error) {
	segs, err := c.segments(msgs)
	if err != nil {
		return nil, "", err
	}
	var text strings.Builder
	for _, s := range segs {
		text.WriteString(s.text)
	}
	ids, err := c.tokenizeSegments(segs, addSpecial)
	if err != nil {
		return nil, "", fmt.Errorf("tokenise the chat prompt: %w", err)
	}
	return ids, text.String(), nil
}

// segment is a piece of rendered chat: the template's own text, where
// special tokens are parsed, or a message's content, where they are not.
type segment struct {
	text    string
	content bool
}

// marker stands for message i while the template is rendered to find where
// the template's text ends and a content begins. Private-use characters
// with no whitespace, so that templates that trim contents leave it whole.
func marker(i int) string { return "\uE000" + strconv.Itoa(i) + "\uE001" }

// segments splits the rendered conversation into template text and
// contents. It renders twice: with a marker for each content, which shows
// the template's text, and with the contents, which shows what the template
// made of each one (some trim the whitespace around it).
func (c *Chat) segments(msgs []Message) ([]segment, error) {
	if len(msgs) == 0 {
		return nil, errors.New("chat: no messages")
	}
	prefill := msgs[len(msgs)-1].Role == "assistant"
	marked := make([]Message, len(msgs))
	for i, m := range msgs {
		marked[i] = Message{Role: m.Role, Content: marker(i)}
	}
	withMarkers, err := c.model.applyTemplate(c.tmpl, marked, !prefill)
	if err != nil {
		return nil, err
	}
	real, err := c.model.applyTemplate(c.tmpl, msgs, !prefill)
	if err != nil {
		return nil, err
	}
	// Cut the marked text into template text and message indices.
	var glue []string
	var order []int
	rest := withMarkers
	for {
		start := strings.Index(rest, "\uE000")
		if start < 0 {
			break
		}
		end := strings.Index(rest[start:], "\uE001")
		i, err := strconv.Atoi(rest[start+len("\uE000") : start+max(end, 0)])
		if end < 0 || err != nil || i < 0 || i >= len(msgs) {
			return nil, fmt.Errorf("chat template of %q: cannot tell its text from the messages' (a marker came out as %q)", c.model.path, rest[start:])
		}
		glue = append(glue, rest[:start])
		order = append(order, i)
		rest = rest[start+end+len("\uE001"):]
	}
	glue = append(glue, rest)
	if prefill {
		last := len(msgs) - 1
		if len(order) == 0 || order[len(order)-1] != last {
			return nil, fmt.Errorf("chat template of %q drops a final assistant message, so it cannot be continued", c.model.path)
		}
		// The model continues the content: the template's closing of the
		// turn goes.
		glue[len(glue)-1] = ""
	}
	// What the template made of each content, matched against the real
	// rendering; where that fails, the content as given.
	pos := 0
	segs := make([]segment, 0, 2*len(order)+1)
	for k, i := range order {
		segs = append(segs, segment{text: glue[k]})
		pos += len(glue[k])
		content := msgs[i].Content
		for _, cand := range [...]string{content, strings.Trim(content, asciiSpace), strings.TrimLeft(content, asciiSpace), strings.TrimRight(content, asciiSpace)} {
			if pos <= len(real) && strings.HasPrefix(real[pos:], cand+glue[k+1]) {
				content = cand
				break
			}
		}
		pos += len(content)
		segs = append(segs, segment{text: content, content: true})
	}
	return append(segs, segment{text: glue[len(glue)-1]}), nil
}

// asciiSpace is what llama.cpp's templates trim (C's isspace).
const asciiSpace = " \t\n\v\f\r"

// piece is a special token (id >= 0) or raw text to tokenise as text.
type piece struct {
	id             int32
	text           string
	lstrip, rstrip bool
}

// tokenizeSegments tokenises as llama.cpp's tokenizer does with special
// tokens parsed, except that they are looked for only in the template's
// text: it cuts the text at special tokens (longest first), strips the
// whitespace they eat, and tokenises each stretch of raw text between them
// on its own, which is what llama.cpp does with each fragment.
func (c *Chat) tokenizeSegments(segs []segment, addSpecial bool) ([]int32, error) {
	var pieces []piece
	for _, s := range segs {
		if s.text == "" {
			continue
		}
		if s.content {
			pieces = append(pieces, piece{id: -1, text: s.text})
			continue
		}
		pieces = append(pieces, c.partition(s.text)...)
	}
	// Raw text from template and content that touch form one fragment.
	merged := pieces[:0]
	for _, p := range pieces {
		if n := len(merged); n > 0 && p.id < 0 && merged[n-1].id < 0 {
			merged[n-1].text += p.text
			continue
		}
		merged = append(merged, p)
	}
	for i, p := range merged {
		if p.id < 0 {
			continue
		}
		if p.lstrip && i > 0 && merged[i-1].id < 0 {
			merged[i-1].text = strings.TrimRight(merged[i-1].text, asciiSpace)
		}
		if p.rstrip && i+1 < len(merged) && merged[i+1].id < 0 {
			merged[i+1].text = strings.TrimLeft(merged[i+1].text, asciiSpace)
		}
	}
	v := c.model.Vocab()
	var ids []int32
	if addSpecial && v.AddBOS() && v.BOS() >= 0 {
		ids = append(ids, v.BOS())
	}
	for _, p := range merged {
		if p.id >= 0 {
			ids = append(ids, p.id)
			continue
		}
		if p.text == "" {
			continue
		}
		var err error
		if ids, err = v.AppendTokens(ids, p.text, false, false); err != nil {
			return nil, err
		}
	}
	if addSpecial && v.AddEOS() && v.EOS() >= 0 {
		ids = append(ids, v.EOS())
	}
	return ids, nil
}

// partition cuts template text at the special tokens it spells, the
// longest first, as llama.cpp's tokenizer_st_partition does.
func (c *Chat) partition(text string) []piece {
	pieces := []piece{{id: -1, text: text}}
	for _, sp := range c.specials {
		for i := 0; i < len(pieces); i++ {
			p := pieces[i]
			if p.id >= 0 {
				continue
			}
			j := strings.Index(p.text, sp.text)
			if j < 0 {
				continue
			}
			var repl []piece
			if j > 0 {
				repl = append(repl, piece{id: -1, text: p.text[:j]})
			}
			repl = append(repl, piece{id: sp.id, lstrip: sp.lstrip, rstrip: sp.rstrip})
			if rest := p.text[j+len(sp.text):]; rest != "" {
				repl = append(repl, piece{id: -1, text: rest})
			}
			pieces = slices.Replace(pieces, i, i+1, repl...)
			if j > 0 {
				i++ // on to the special; the loop's i++ reaches the rest
			}
		}
	}
	return pieces
}
