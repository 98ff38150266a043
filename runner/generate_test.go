package runner

import (
	"context"
	"slices"
	"testing"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/llama"
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
