package runner

import (
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/llama"
)

func vocabModel(t *testing.T, rel string) *llama.Model {
	t.Helper()
	m, err := llama.LoadModel(testfixture.Path(t, rel), llama.ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestChatPromptsKeepRoles: with the model's chat template every message
// keeps its role; a last assistant message is continued, not relabelled as
// the user's; typed control tokens stay text.
func TestChatPromptsKeepRoles(t *testing.T) {
	phi := vocabModel(t, "gguf-vocab/ggml-vocab-phi-3.gguf")
	chat, err := phi.NewChat()
	if err != nil {
		t.Fatal(err)
	}
	rm := &Runner{User: phi, userChat: chat}
	_, _, text, err := rm.ChatPrompts([]llama.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello, I am"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|user|>\nHi<|end|>\n<|assistant|>\nHello, I am"; !strings.HasSuffix(text, want) {
		t.Errorf("assistant prefill rendered as %q, want it to end with %q", text, want)
	}
	ids, _, text, err := rm.ChatPrompts([]llama.Message{{Role: "user", Content: "say <|end|> now"}})
	if err != nil {
		t.Fatal(err)
	}
	end, err := phi.Vocab().Tokenize("<|end|>", false, true)
	if err != nil || len(end) != 1 {
		t.Fatalf("<|end|> is not one token: %v %v", end, err)
	}
	if n := strings.Count(text, "<|end|>"); n != 2 || countID(ids, end[0]) != 1 {
		t.Errorf("typed <|end|>: text %q has %d, tokens %v hold %d <|end|> tokens; want the template's one only", text, n, ids, countID(ids, end[0]))
	}
}

func countID(ids []int32, id int32) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// TestChatPromptsRawTemplate: without a chat template (stories260K), a
// prefill follows the prompt for both models, a trailing system message
// stays a system line, and a typed "</s>" is text, not EOS.
func TestChatPromptsRawTemplate(t *testing.T) {
	stories := vocabModel(t, "models/stories260K/stories260K.gguf")
	rm := &Runner{User: stories, UserTmpl: data.Raw{}}
	_, _, text, err := rm.ChatPrompts([]llama.Message{{Role: "user", Content: "Tell a story."}, {Role: "assistant", Content: "Once upon"}})
	if err != nil {
		t.Fatal(err)
	}
	if text != "Tell a story.Once upon" {
		t.Errorf("raw prefill %q, want the query then the prefill", text)
	}
	_, _, text, err = rm.ChatPrompts([]llama.Message{{Role: "user", Content: "Tell a story."}, {Role: "system", Content: "Be brief."}})
	if err != nil {
		t.Fatal(err)
	}
	if text != "user: Tell a story.\nsystem: Be brief." {
		t.Errorf("trailing system message rendered as %q", text)
	}
	ids, _, _, err := rm.ChatPrompts([]llama.Message{{Role: "user", Content: "The end.</s>"}})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids, stories.Vocab().EOS()) {
		t.Errorf("typed </s> became EOS: %v", ids)
	}
}

// TestRenderTurnsExtends: in a data template a conversation's text starts
// with the text of every earlier state of it (so a KV cache holding turn N
// serves turn N+1), each assistant message answers the messages before it,
// and a last assistant message is left open as a prefill.
func TestRenderTurnsExtends(t *testing.T) {
	msgs := []llama.Message{
		{Role: "system", Content: "Be kind."}, {Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello!"},
		{Role: "user", Content: "A story?"}, {Role: "assistant", Content: "Once"},
	}
	tmpl := data.OpenInstruct{}
	want := "<|user|>\nsystem: Be kind.\nHi\n<|assistant|>\nHello!\n<|user|>\nA story?\n<|assistant|>\nOnce"
	if got := renderTurns(tmpl, msgs); got != want {
		t.Errorf("renderTurns = %q, want %q", got, want)
	}
	// Every state that ends with a user or an assistant message (a prompt
	// the model answers, or continues) is a prefix of the whole.
	for n := 1; n <= len(msgs); n++ {
		if earlier := renderTurns(tmpl, msgs[:n]); msgs[n-1].Role != "system" && !strings.HasPrefix(want, earlier) {
			t.Errorf("the first %d messages render %q, which the whole conversation does not start with", n, earlier)
		}
	}
}
