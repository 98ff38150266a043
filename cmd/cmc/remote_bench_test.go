package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cmc-dev/cmc/control"
	"github.com/cmc-dev/cmc/data"
	"github.com/cmc-dev/cmc/llama"
	"github.com/cmc-dev/cmc/runner"
)

// BenchmarkRemoteTinyWorld measures on the tiny world what steering a
// served model over its top k candidates costs against steering the same
// model locally over its whole vocabulary. For each user model (T, A, B) it
// answers the first CMC_BENCH_N questions (default 40) of CMC_BENCH_DATA
// (default tinyworld/data/forget.jsonl) greedily with
// the delta CMC_BENCH_DELTA (default tinyworld/D0.gguf) at alpha 1, as
// scripts/reproduce.sh evaluates them (qa templates, 48 tokens, stop at a
// newline), and reports:
//
//   - outside top-k: along the local answers, the share of tokens whose
//     full-vocabulary choice is not among the user model's k most likely
//     (exactly the steps where choosing among k changes the choice);
//   - same answer: the share of answers that `cmc serve` on loopback, steered
//     over its top k, writes exactly as the local path does (this includes
//     the engine re-tokenising the text at each step, measured alone at
//     alpha 0);
//   - tokens/s of both.
//
// Run: CMC_BENCH_DELTA=delta.gguf go test ./cmd/cmc -run '^$' -bench RemoteTinyWorld -benchtime 1x
func BenchmarkRemoteTinyWorld(b *testing.B) {
	world := "../../tinyworld"
	deltaPath := filepath.Join(world, "D0.gguf")
	if p := os.Getenv("CMC_BENCH_DELTA"); p != "" {
		deltaPath = p
	}
	n := 40
	if s := os.Getenv("CMC_BENCH_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("CMC_BENCH_N=%q: %v", s, err)
		}
	}
	questions := filepath.Join(world, "data/forget.jsonl")
	if p := os.Getenv("CMC_BENCH_DATA"); p != "" {
		questions = p
	}
	examples, err := data.Read(questions, "tofu")
	if err != nil {
		b.Fatal(err)
	}
	examples = examples[:min(n, len(examples))]
	opt := control.Options{MaxTokens: 48, Stop: []string{"\n"}}
	for _, name := range []string{"T", "A", "B"} {
		b.Run(name, func(b *testing.B) {
			model := filepath.Join(world, name+".gguf")
			common := []string{"--delta", deltaPath, "--alpha", "1", "--template", "qa", "--delta-template", "qa", "--threads", "1", "--map-cache", ""}
			local := benchRuntime(b, append([]string{"--model", model}, common...))
			defer local.Close()
			base := startServe(b, "--model", model, "--no-delta")
			ks := []int{5, 20}
			remotes := make([]*runner.Runner, len(ks))
			for j, k := range ks {
				remotes[j] = benchRuntime(b, append([]string{"--model", base, "--remote-top-k", strconv.Itoa(k)}, common...))
				defer remotes[j].Close()
			}

			// Question by question, so that the machine's load weighs on
			// both paths alike: the local answer, with the rank of every
			// chosen token among the user model's own logits, then the
			// remote answers; and both without the delta.
			var steps, same0, localTokens int
			var localTime time.Duration
			outside, same, tokens := make([]int, len(ks)), make([]int, len(ks)), make([]int, len(ks))
			elapsed := make([]time.Duration, len(ks))
			for _, ex := range examples {
				userIDs, deltaIDs, _, err := local.Prompts(nil, ex.Query())
				if err != nil {
					b.Fatal(err)
				}
				g := local.Generator(1)
				ranked := &rankingLM{LM: g.User}
				isEnd := g.EndOfGeneration
				g.User = ranked
				var ranks []int
				g.EndOfGeneration = func(u int32) bool {
					ranks = append(ranks, ranked.rank(u))
					return isEnd(u)
				}
				start := time.Now()
				want, err := g.Generate(context.Background(), userIDs, deltaIDs, opt, nil)
				localTime += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				localTokens += len(want.Tokens)
				steps += len(ranks)
				alone, err := local.Generator(0).Generate(context.Background(), userIDs, deltaIDs, opt, nil)
				if err != nil {
					b.Fatal(err)
				}

				text, remoteDeltaIDs, err := remotes[0].RemotePrompts([]llama.Message{{Role: "user", Content: ex.Query()}})
				if err != nil {
					b.Fatal(err)
				}
				res, err := remotes[0].RemoteGenerate(context.Background(), text, remoteDeltaIDs, 0, opt, nil)
				if err != nil {
					b.Fatal(err)
				}
				if res.Text == alone.Text {
					same0++
				}
				for j, rm := range remotes {
					for _, r := range ranks {
						if r >= ks[j] {
							outside[j]++
						}
					}
					start := time.Now()
					res, err := rm.RemoteGenerate(context.Background(), text, remoteDeltaIDs, 1, opt, nil)
					elapsed[j] += time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					tokens[j] += len(res.Pieces)
					if res.Text == want.Text {
						same[j]++
					}
				}
			}
			b.Logf("%s: %d answers, %d steps, local %.0f tokens/s; alpha 0: remote answer = local answer for %d/%d",
				name, len(examples), steps, float64(localTokens)/localTime.Seconds(), same0, len(examples))
			b.ReportMetric(float64(localTokens)/localTime.Seconds(), "local-tokens/s")
			for j, k := range ks {
				b.Logf("%s k=%d: outside top-k %d/%d steps (%.2f%%); remote answer = local answer for %d/%d; remote %.0f tokens/s",
					name, k, outside[j], steps, 100*float64(outside[j])/float64(steps), same[j], len(examples), float64(tokens[j])/elapsed[j].Seconds())
				b.ReportMetric(100*float64(outside[j])/float64(steps), fmt.Sprintf("%%outside-top%d", k))
				b.ReportMetric(100*float64(same[j])/float64(len(examples)), fmt.Sprintf("%%same-answer-top%d", k))
				b.ReportMetric(float64(tokens[j])/elapsed[j].Seconds(), fmt.Sprintf("remote-top%d-tokens/s", k))
			}
		})
	}
}

// benchRuntime loads models as the commands do, from their flags.
func benchRuntime(b *testing.B, args []string) *runner.Runner {
	b.Helper()
	set := flag.NewFlagSet("bench", flag.ContinueOnError)
	for _, f := range append(modelFlags(), sampleFlags()...) {
		if err := f.Apply(set); err != nil {
			b.Fatal(err)
		}
	}
	if err := set.Parse(args); err != nil {
		b.Fatal(err)
	}
	c := cli.NewContext(cli.NewApp(), set, nil)
	c.Context = context.Background()
	rm, err := loadRuntime(c)
	if err != nil {
		b.Fatal(err)
	}
	return rm
}

// rankingLM keeps the user model's last logits, to rank a chosen token.
type rankingLM struct {
	control.LM
	last []float32
}

func (r *rankingLM) Append(tokens []int32) ([]float32, error) {
	logits, err := r.LM.Append(tokens)
	r.last = logits
	return logits, err
}

// rank is the number of tokens the user model scores above u.
func (r *rankingLM) rank(u int32) int {
	n := 0
	for _, v := range r.last {
		if v > r.last[u] {
			n++
		}
	}
	return n
}
