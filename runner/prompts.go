package runner

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/llama"
)

// Prompts renders one request for both models and tokenises it: the user
// model's prompt with its template, the delta's with the one it was trained
// with. history holds earlier turns (chat).
func (r *Runner) Prompts(history []llama.Message, query string) (userIDs, deltaIDs []int32, userText string, err error) {
	msgs := append(slices.Clip(history), llama.Message{Role: "user", Content: query})
	return r.ChatPrompts(msgs)
}

// ChatPrompts is Prompts for a conversation given whole, each message with
// its own role. A last assistant message is a prefill: both models
// continue its text, in the user's template and in the delta's.
func (r *Runner) ChatPrompts(msgs []llama.Message) (userIDs, deltaIDs []int32, userText string, err error) {
	if len(msgs) == 0 {
		return nil, nil, "", errors.New("no messages")
	}
	if r.userChat != nil {
		if r.system != "" && msgs[0].Role != "system" {
			msgs = append([]llama.Message{{Role: "system", Content: r.system}}, msgs...)
		}
		// Special tokens come from the template's text only: a message
		// that spells "<|im_end|>" must not end its turn.
		userIDs, userText, err = r.userChat.Tokenize(msgs, true)
		if err != nil {
			return nil, nil, "", err
		}
	} else {
		userText = renderTurns(r.UserTmpl, msgs)
		if userIDs, err = r.User.Vocab().Tokenize(userText, true, false); err != nil {
			return nil, nil, "", fmt.Errorf("tokenise the prompt: %w", err)
		}
	}
	if r.Delta == nil {
		return userIDs, nil, userText, nil
	}
	// The delta sees the conversation in the template it was trained with,
	// turn by turn, so that its prompt for the next turn extends this one.
	deltaText := renderTurns(r.DeltaTmpl, msgs)
	deltaIDs, err = r.DeltaVocab.Vocab().Tokenize(deltaText, true, false)
	if err != nil {
		return nil, nil, "", fmt.Errorf("tokenise the delta's prompt: %w", err)
	}
	return userIDs, deltaIDs, userText, nil
}

// RenderUser renders a query after history in the user's template, for
// callers that tokenise the text themselves; special reports a chat
// template's text. Tokenising that text with special tokens parsed would
// let the query inject control tokens: ChatPrompts does not.
func (r *Runner) RenderUser(chat *llama.Chat, tmpl data.Template, history []llama.Message, query string) (text string, special bool, err error) {
	msgs := append(slices.Clip(history), llama.Message{Role: "user", Content: query})
	if chat == nil {
		return renderTurns(tmpl, msgs), false, nil
	}
	if r.system != "" && msgs[0].Role != "system" {
		msgs = append([]llama.Message{{Role: "system", Content: r.system}}, msgs...)
	}
	_, text, err = chat.Tokenize(msgs, false)
	return text, true, err
}

// CompletionPrompts is Prompts for a plain completion: the user model
// continues the text as it is; the delta still sees its own template.
func (r *Runner) CompletionPrompts(text string) (userIDs, deltaIDs []int32, err error) {
	if userIDs, err = r.User.Vocab().Tokenize(text, true, false); err != nil {
		return nil, nil, fmt.Errorf("tokenise the prompt: %w", err)
	}
	deltaIDs, err = r.DeltaPrompt(text)
	return userIDs, deltaIDs, err
}

// DeltaPrompt is the delta's prompt for a query (nil without a delta).
func (r *Runner) DeltaPrompt(query string) ([]int32, error) {
	if r.Delta == nil {
		return nil, nil
	}
	ids, err := r.DeltaVocab.Vocab().Tokenize(r.DeltaTmpl.Prompt(data.Example{Instruction: query}), true, false)
	if err != nil {
		return nil, fmt.Errorf("tokenise the delta's prompt: %w", err)
	}
	return ids, nil
}

// renderTurns writes a conversation in a data template, which knows one
// query and its response, turn by turn: each assistant message is the
// response to the messages before it (since the previous one), closed by a
// newline, and the messages after the last one make the open query. A last
// assistant message is a prefill, left open. So the text of a conversation
// starts with the text of every earlier state of it, and a KV cache that
// holds turn N is reused for turn N+1.
func renderTurns(tmpl data.Template, msgs []llama.Message) string {
	var b strings.Builder
	start := 0
	for i, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		if start < i {
			b.WriteString(tmpl.Prompt(data.Example{Instruction: flatten(msgs[start:i])}))
		}
		b.WriteString(m.Content)
		if i < len(msgs)-1 {
			b.WriteByte('\n')
		}
		start = i + 1
	}
	if start < len(msgs) {
		b.WriteString(tmpl.Prompt(data.Example{Instruction: flatten(msgs[start:])}))
	}
	return b.String()
}

// flatten writes the messages of one turn as one query: a lone user
// message as it is, more messages one "role: content" line each, a last
// user message bare.
func flatten(msgs []llama.Message) string {
	var b strings.Builder
	for i, m := range msgs {
		if i == len(msgs)-1 && m.Role == "user" {
			b.WriteString(m.Content)
			break
		}
		fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
