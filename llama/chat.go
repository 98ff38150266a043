package llama

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Message is one turn of a chat.
type Message struct {
	Role    string // "system", "user" or "assistant"
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
func (m *Model) ApplyChatTemplate(msgs []Message, addAssistant bool) (string, error) {
	tmpl, err := m.ChatTemplate()
	if err != nil {
		return "", fmt.Errorf("chat template of %q: %w", m.path, err)
	}
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
