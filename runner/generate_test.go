package runner

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/server"
)

// TestGenerateChatReusesTheCache: cmc chat's second turn, through
// Runner.Generate with the delta on, finds the first turn in both KV
// caches and answers exactly as a runner with empty caches does.
func TestGenerateChatReusesTheCache(t *testing.T) {
	b, _ := storiesBackend(t)
	rm := b.r
	opt := control.Options{MaxTokens: 24}
	turn1 := []llama.Message{{Role: "user", Content: "Once upon a time, there was a little girl named Lily. She loved to play in the park."}}
	first, err := rm.Generate(context.Background(), Request{Messages: turn1, Alpha: 1, Options: opt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.CachedTokens != 0 || first.PromptTokens < 10 || first.CompletionTokens == 0 {
		t.Fatalf("first turn: %d of %d prompt tokens cached, %d generated", first.CachedTokens, first.PromptTokens, first.CompletionTokens)
	}
	turn2 := append(turn1, llama.Message{Role: "assistant", Content: first.Text}, llama.Message{Role: "user", Content: "One day, she saw a big dog."})
	second, err := rm.Generate(context.Background(), Request{Messages: turn2, Alpha: 1, Options: opt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := first.PromptTokens * 9 / 10; second.CachedTokens < want {
		t.Errorf("second turn: %d tokens cached, want at least %d of the first turn's %d", second.CachedTokens, want, first.PromptTokens)
	}
	fb, _ := storiesBackend(t)
	fresh, err := fb.r.Generate(context.Background(), Request{Messages: turn2, Alpha: 1, Options: opt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.CachedTokens != 0 || fresh.Text != second.Text {
		t.Errorf("second turn with the caches %q, on empty caches %q (%d cached)", second.Text, fresh.Text, fresh.CachedTokens)
	}
}

// TestCharOffsets: text_offset counts characters as OpenAI's does, where
// byte offsets would run ahead after "é" (2 bytes) and "日" (3 bytes).
func TestCharOffsets(t *testing.T) {
	text := "aé日b"
	got := charOffsets(text)
	want := []int{0, 1, 2, 2, 3, 3, 3, 4} // a at 0, é at 1-2, 日 at 3-5, b at 6, the end at 7
	if !slices.Equal(got, want) {
		t.Errorf("charOffsets(%q) = %v, want %v", text, got, want)
	}
}

// TestGenerateHealsTheQAPrompt: under the qa template ("… Answer: ", whose
// space llama.cpp tokenises on its own), with the Llama-2 vocabulary of
// llama-2-tiny-random as user and as its own delta, the first token
// generated starts with a space, the reply's text does not, and both KV
// caches hold the prompt without that lone space, which a second turn finds
// again in them.
func TestGenerateHealsTheQAPrompt(t *testing.T) {
	rm := selfSteered(t, "models/llama-2-tiny-random/llama-2-tiny-random.gguf", "qa")
	v := rm.User.Vocab()
	msgs := []llama.Message{{Role: "user", Content: "Who was Lily?"}}
	userIDs, deltaIDs, text, err := rm.ChatPrompts(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(text, "Answer: ") || v.Piece(userIDs[len(userIDs)-1], false) != " " || !slices.Equal(userIDs, deltaIDs) {
		t.Fatalf("prompt %q ends in token %q: want the qa prompt, its space a token of its own, for both models", text, v.Piece(userIDs[len(userIDs)-1], false))
	}
	opt := control.Options{MaxTokens: 8, Heal: true}
	rep, err := rm.Generate(context.Background(), Request{Messages: msgs, Alpha: 1, Options: opt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var spelled []byte
	for _, id := range rep.Tokens {
		spelled = v.AppendPiece(spelled, id, false)
	}
	if !rep.Healed || len(spelled) < 2 || spelled[0] != ' ' || " "+rep.Text != string(spelled) {
		t.Fatalf("healed %v: tokens spell %q, text %q; want a first token that starts with a space, and the text without it", rep.Healed, spelled, rep.Text)
	}
	held := rm.userLM.Tokens()
	if n := len(userIDs) - 1; !slices.Equal(held[:n], userIDs[:n]) || held[n] != rep.Tokens[0] || !slices.Equal(rm.deltaLM.Tokens()[:n+1], held[:n+1]) {
		t.Errorf("caches: user %v, delta %v; want the prompt %v without its last token, then %d", held, rm.deltaLM.Tokens(), userIDs, rep.Tokens[0])
	}

	// The next turn renders the reply after "Answer: " as one text: its
	// tokens are the cached ones, so the whole first turn is reused.
	turn2 := append(msgs, llama.Message{Role: "assistant", Content: rep.Text}, llama.Message{Role: "user", Content: "And Tom?"})
	second, err := rm.Generate(context.Background(), Request{Messages: turn2, Alpha: 1, Options: opt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(userIDs) - 1 + len(rep.Tokens) - 1; second.CachedTokens < want {
		t.Errorf("second turn: %d tokens cached, want the first turn's %d at least", second.CachedTokens, want)
	}

	// Without Heal the model continues after the lone space (on this model
	// with another text).
	opt.Heal = false
	plain, err := rm.Generate(context.Background(), Request{Messages: msgs, Alpha: 1, Options: opt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Healed || plain.Text == rep.Text {
		t.Errorf("without Heal: healed %v, text %q (healed: %q); want the unhealed continuation", plain.Healed, plain.Text, rep.Text)
	}
}

// TestServeHealsChatsNotCompletions: cmc serve heals a chat's qa prompt as
// cmc chat does, and continues a completion's prompt, the same text, as
// sent (the user model alone, so that both see the same delta-free text).
func TestServeHealsChatsNotCompletions(t *testing.T) {
	rm := selfSteered(t, "models/llama-2-tiny-random/llama-2-tiny-random.gguf", "qa")
	msgs := []llama.Message{{Role: "user", Content: "Who was Lily?"}}
	local := func(heal bool) string {
		t.Helper()
		rep, err := rm.Generate(context.Background(), Request{Messages: msgs, Options: control.Options{MaxTokens: 8, Heal: heal}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return rep.Text
	}
	healed, asSent := local(true), local(false)
	if healed == asSent {
		t.Fatalf("healed and unhealed answers are both %q: the test cannot tell them apart", healed)
	}
	b := NewBackend(rm, "tiny", "tiny")
	serve := func(req server.Request) string {
		t.Helper()
		req.MaxTokens, req.Delta = 8, "none"
		res, err := b.Generate(context.Background(), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.Text
	}
	if chat := serve(server.Request{Messages: []server.Message{{Role: "user", Content: "Who was Lily?"}}}); chat != healed {
		t.Errorf("chat %q, want cmc chat's healed %q", chat, healed)
	}
	if completion := serve(server.Request{Prompt: "Question: Who was Lily?\nAnswer: "}); completion != asSent {
		t.Errorf("completion %q, want the prompt continued as sent, %q", completion, asSent)
	}
}
