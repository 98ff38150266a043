package pmmined_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/cmc-dev/cmc/internal/testfixture"
	"github.com/cmc-dev/cmc/pmmined"
	"github.com/cmc-dev/cmc/pmmined/vocabfile"
	"github.com/cmc-dev/cmc/vocab"
)

const fixtures = "../../shared/fixtures"

// vocabFixture loads a fixture vocabulary once for all tests of the run.
type vocabFixture struct {
	path string
	once sync.Once
	v    *vocab.Vocab
	err  error
}

func fixture(path string) *vocabFixture { return &vocabFixture{path: path} }

func (f *vocabFixture) load(tb testing.TB) *vocab.Vocab {
	tb.Helper()
	path := filepath.Join(fixtures, f.path)
	if _, err := os.Stat(path); err != nil {
		testfixture.Missing(tb, "fixture %s absent: %v", path, err)
	}
	f.once.Do(func() { f.v, f.err = vocabfile.Open(path) })
	if f.err != nil {
		tb.Fatal(f.err)
	}
	return f.v
}

var (
	llama2        = fixture("gguf-vocab/ggml-vocab-llama-spm.gguf")
	llama2Model   = fixture("tokenizers/llama2/tokenizer.model")
	phi3          = fixture("gguf-vocab/ggml-vocab-phi-3.gguf")
	mistral       = fixture("tokenizers/mistral/tokenizer.model.v1")
	mistralGGUF   = fixture("gguf-vocab/ggml-vocab-mistral-v1.gguf")
	gpt2          = fixture("gguf-vocab/ggml-vocab-gpt-2.gguf")
	deepseekCoder = fixture("gguf-vocab/ggml-vocab-deepseek-coder.gguf")
	deepseekLLM   = fixture("gguf-vocab/ggml-vocab-deepseek-llm.gguf")
	falcon        = fixture("gguf-vocab/ggml-vocab-falcon.gguf")
	llama3        = fixture("tokenizers/llama3/tokenizer.model")
	qwen          = fixture("tokenizers/qwen/qwen.tiktoken")
)

// pieceID finds a piece in a vocabulary.
func pieceID(tb testing.TB, v *vocab.Vocab, piece string) int32 {
	tb.Helper()
	for i, p := range v.Pieces {
		if p == piece {
			return int32(i)
		}
	}
	tb.Fatalf("piece %q not in vocabulary", piece)
	return -1
}

// TestMistralOntoLlama2MatchesPaper reproduces the statistics METHOD.md
// quotes for the paper's pair: 75.6% exact, 19.6% prefix (to a shorter
// token), 4.2% unmapped. The paper compares piece strings, so its "exact"
// includes the 256 byte tokens and 3 specials that exist in both; the
// remaining 0.6% are candidates that extend the user token.
func TestMistralOntoLlama2MatchesPaper(t *testing.T) {
	for _, user := range []*vocabFixture{mistral, mistralGGUF} {
		u, d := user.load(t), llama2.load(t)
		m, err := pmmined.Build(u, d, pmmined.PMMinED)
		if err != nil {
			t.Fatal(err)
		}
		s := m.Stats()
		var shorter, longer int
		for id, k := range m.Kind {
			if k == pmmined.KindPrefix {
				if len(u.Text(int32(id))) > len(d.Text(m.ToDelta[id])) {
					shorter++
				} else {
					longer++
				}
			}
		}
		exact := s.Count(pmmined.KindExact) + s.Count(pmmined.KindByte) + s.Count(pmmined.KindSpecial)
		pct := func(n int) float64 { return 100 * float64(n) / float64(s.Total) }
		t.Logf("%s: exact %.2f%%, prefix %.2f%% (shorter) + %.2f%% (longer), unmapped %.2f%%",
			user.path, pct(exact), pct(shorter), pct(longer), pct(s.Count(pmmined.KindNone)))
		for _, c := range []struct {
			name       string
			got, paper float64
		}{{"exact", pct(exact), 75.6}, {"prefix", pct(shorter), 19.6}, {"unmapped", pct(s.Count(pmmined.KindNone)), 4.2}} {
			if c.got < c.paper-0.05 || c.got >= c.paper+0.05 {
				t.Errorf("%s: %s %.3f%%, paper %.1f%%", user.path, c.name, c.got, c.paper)
			}
		}
		// The exact counts, so that any change to the rule shows.
		if s.Count(pmmined.KindExact) != 23925 || s.Count(pmmined.KindByte) != 256 || s.Count(pmmined.KindSpecial) != 3 ||
			shorter != 6288 || longer != 187 || s.Count(pmmined.KindNone) != 1341 {
			t.Errorf("%s: exact %d byte %d special %d shorter %d longer %d none %d; want 23925 256 3 6288 187 1341",
				user.path, s.Count(pmmined.KindExact), s.Count(pmmined.KindByte), s.Count(pmmined.KindSpecial),
				shorter, longer, s.Count(pmmined.KindNone))
		}
	}
}

// TestPairsOntoLlama2 maps every fixture vocabulary onto Llama-2 (the
// delta's vocabulary) and checks concrete tokens and what each kind
// promises.
func TestPairsOntoLlama2(t *testing.T) {
	type want struct{ user, delta string } // delta "" means unmapped
	cases := []struct {
		user *vocabFixture
		want []want
	}{
		{mistral, []want{{"▁fishing", "▁fish"}, {"▁the", "▁the"}, {"<0x0A>", "<0x0A>"}, {"</s>", "</s>"}}},
		{phi3, []want{{"<|endoftext|>", "</s>"}, {"<|end|>", "</s>"}, {"<|user|>", ""}, {"[PAD32011]", ""}}},
		{gpt2, []want{{"Ġthe", "▁the"}, {"Ġfishing", "▁fish"}, {"Ċ", "<0x0A>"}, {"âĢ", "<0xE2>"}, {"âĢĶ", "—"},
			{"<|endoftext|>", "</s>"}, {"Ġ1", ""}, {"'s", "'"}}},
		{deepseekCoder, []want{{"<｜begin▁of▁sentence｜>", "<s>"}, {"<｜end▁of▁sentence｜>", "</s>"}, {"<|EOT|>", "</s>"},
			{"Ġthe", "▁the"}, {"õ", "õ"}}},
		{deepseekLLM, []want{{"<｜begin▁of▁sentence｜>", "<s>"}, {"<｜end▁of▁sentence｜>", "</s>"}, {"Ġprayer", "▁prayer"}}},
		{falcon, []want{{"<|endoftext|>", "</s>"}, {">>TITLE<<", ""}, {"ĠJeffrey", "▁Jeff"}}},
		{llama3, []want{{"<|begin_of_text|>", "<s>"}, {"<|end_of_text|>", "</s>"}, {"<|eot_id|>", "</s>"},
			{"<|start_header_id|>", ""}, {"<|reserved_special_token_7|>", ""}, {"Ġhastily", "▁hast"}, {"ĠĠĠĠ", "▁▁▁▁"}}},
		{qwen, []want{{"<|endoftext|>", "</s>"}, {"<|im_end|>", "</s>"}, {"<|im_start|>", ""}, {"Ġconsultancy", "▁consult"}}},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.user.path), func(t *testing.T) {
			u, d := c.user.load(t), llama2.load(t)
			m, err := pmmined.Build(u, d, pmmined.PMMinED)
			if err != nil {
				t.Fatal(err)
			}
			checkKinds(t, m, u, d)
			for _, w := range c.want {
				id := pieceID(t, u, w.user)
				wantD := int32(-1)
				if w.delta != "" {
					wantD = pieceID(t, d, w.delta)
				}
				if m.ToDelta[id] != wantD {
					t.Errorf("%q -> %d %s (%s), want %d %s", w.user, m.ToDelta[id], d.Display(m.ToDelta[id]), m.Kind[id], wantD, d.Display(wantD))
				}
			}
			if m.ToDelta[u.EOS] != d.EOS {
				t.Errorf("EOS %s -> %d, want the delta's EOS %d", u.Pieces[u.EOS], m.ToDelta[u.EOS], d.EOS)
			}
		})
	}
}

// checkKinds verifies what each kind promises about the pair of tokens.
func checkKinds(t *testing.T, m *pmmined.Map, u, d *vocab.Vocab) {
	t.Helper()
	if len(m.ToDelta) != len(u.Pieces) || len(m.Kind) != len(u.Pieces) || m.DeltaSize != len(d.Pieces) {
		t.Fatalf("map sizes %d/%d/%d for %d user and %d delta tokens", len(m.ToDelta), len(m.Kind), m.DeltaSize, len(u.Pieces), len(d.Pieces))
	}
	errs := 0
	for i, dd := range m.ToDelta {
		id := int32(i)
		if errs > 10 {
			t.Fatal("too many errors")
		}
		k := m.Kind[i]
		if (dd < 0) != (k == pmmined.KindNone) || int(dd) >= len(d.Pieces) {
			t.Errorf("user %d: delta %d with kind %s", id, dd, k)
			errs++
			continue
		}
		var ut, dt string
		if dd >= 0 {
			ut, dt = u.Text(id), d.Text(dd)
		}
		ok := true
		switch k {
		case pmmined.KindExact:
			ok = ut == dt
		case pmmined.KindByte:
			ok = len(ut) == 1 && ut == dt
		case pmmined.KindLeadByte:
			r, size := utf8.DecodeRuneInString(ut)
			ok = len(dt) == 1 && ut[0] == dt[0] && r == utf8.RuneError && size == 1
		case pmmined.KindPrefix:
			ok = ut != dt && (strings.HasPrefix(ut, dt) || strings.HasPrefix(dt, ut)) &&
				(dt != " " || strings.Trim(ut, " ") == "")
		case pmmined.KindSpecial:
			t := d.Type(dd)
			ok = t == vocab.TokenControl || t == vocab.TokenUnknown
		}
		if !ok {
			t.Errorf("user %d %s -> %d %s: not a valid %s mapping", id, u.Display(id), dd, d.Display(dd), k)
			errs++
		}
	}
}

// TestPhi3OntoLlama2 checks that a vocabulary extending the delta's maps
// the shared part onto itself: Phi-3 is Llama-2's vocabulary plus 64 chat
// and padding tokens.
func TestPhi3OntoLlama2(t *testing.T) {
	u, d := phi3.load(t), llama2.load(t)
	m, err := pmmined.Build(u, d, pmmined.PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	for id := range int32(32000) {
		if m.ToDelta[id] != id || !m.Exact(id) {
			t.Fatalf("shared token %d %s -> %d (%s), want itself", id, u.Display(id), m.ToDelta[id], m.Kind[id])
		}
	}
	for id := int32(32000); id < int32(len(u.Pieces)); id++ {
		want := int32(-1) // chat headers, placeholders and padding slots
		if p := u.Pieces[id]; p == "<|endoftext|>" || p == "<|end|>" {
			want = d.EOS
		}
		if m.ToDelta[id] != want {
			t.Errorf("extra token %d %s -> %d, want %d", id, u.Pieces[id], m.ToDelta[id], want)
		}
	}
}

// TestLlama2OntoGPT2 is the reverse direction, onto a byte-level
// vocabulary: bytes go to GPT-2's single-byte tokens.
func TestLlama2OntoGPT2(t *testing.T) {
	u, d := llama2.load(t), gpt2.load(t)
	m, err := pmmined.Build(u, d, pmmined.PMMinED)
	if err != nil {
		t.Fatal(err)
	}
	checkKinds(t, m, u, d)
	for _, w := range []struct{ user, delta string }{
		{"▁the", "Ġthe"}, {"<0x0A>", "Ċ"}, {"<0xE2>", "â"}, {"</s>", "<|endoftext|>"}, {"<s>", "<|endoftext|>"}, {"—", "âĢĶ"},
	} {
		id := pieceID(t, u, w.user)
		if want := pieceID(t, d, w.delta); m.ToDelta[id] != want {
			t.Errorf("%q -> %d %s, want %d %q", w.user, m.ToDelta[id], d.Display(m.ToDelta[id]), want, w.delta)
		}
	}
	if id := pieceID(t, u, "<unk>"); m.ToDelta[id] != -1 {
		t.Errorf("<unk> -> %d, want unmapped (GPT-2 has no UNK)", m.ToDelta[id])
	}
}
