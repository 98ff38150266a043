//go:build unix

package pmmined_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/cmc-dev/cmc/pmmined"
)

// Vocabulary loading is left out of the timings: it happens once per
// process, whatever the map.
//
// Besides wall time, each benchmark reports the CPU time of the process
// per operation (cpu-ms/op): the machine's cores are shared, and wall time
// alone says more about the neighbours than about the code.

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
}

func benchmarkBuild(b *testing.B, user, delta *vocabFixture, s pmmined.Strategy) {
	u, d := user.load(b), delta.load(b)
	start := cpuTime()
	for b.Loop() {
		if _, err := pmmined.Build(u, d, s); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

func BenchmarkBuild_Llama3OntoLlama2(b *testing.B) {
	benchmarkBuild(b, llama3, llama2, pmmined.PMMinED)
}
func BenchmarkBuild_QwenOntoLlama2(b *testing.B) { benchmarkBuild(b, qwen, llama2, pmmined.PMMinED) }
func BenchmarkBuild_MistralOntoLlama2(b *testing.B) {
	benchmarkBuild(b, mistral, llama2, pmmined.PMMinED)
}
func BenchmarkBuild_GPT2OntoLlama2(b *testing.B) { benchmarkBuild(b, gpt2, llama2, pmmined.PMMinED) }
func BenchmarkBuild_Llama2OntoLlama3(b *testing.B) {
	benchmarkBuild(b, llama2, llama3, pmmined.PMMinED)
}
func BenchmarkBuildMinED_MistralOntoLlama2(b *testing.B) {
	benchmarkBuild(b, mistral, llama2, pmmined.MinED)
}
func BenchmarkBuildExact_Llama3OntoLlama2(b *testing.B) {
	benchmarkBuild(b, llama3, llama2, pmmined.Exact)
}

// benchmarkLoadCached times what generation pays when the map file is
// there: hashing both vocabularies for the key, reading and checking it.
func benchmarkLoadCached(b *testing.B, user, delta *vocabFixture) {
	u, d := user.load(b), delta.load(b)
	dir := b.TempDir()
	if _, err := pmmined.LoadOrBuild(dir, u, d, pmmined.PMMinED); err != nil {
		b.Fatal(err)
	}
	start := cpuTime()
	for b.Loop() {
		if _, err := pmmined.LoadOrBuild(dir, u, d, pmmined.PMMinED); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

func BenchmarkLoadCached_Llama3OntoLlama2(b *testing.B)  { benchmarkLoadCached(b, llama3, llama2) }
func BenchmarkLoadCached_QwenOntoLlama2(b *testing.B)    { benchmarkLoadCached(b, qwen, llama2) }
func BenchmarkLoadCached_MistralOntoLlama2(b *testing.B) { benchmarkLoadCached(b, mistral, llama2) }
func BenchmarkLoadCached_GPT2OntoLlama2(b *testing.B)    { benchmarkLoadCached(b, gpt2, llama2) }
