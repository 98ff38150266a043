#!/usr/bin/env bash
# bench-delta.sh: delta training throughput of cmc against PyTorch, on this
# machine's CPU, with the same model (stories15M shape), batch (4×256) and
# thread count. Prints both throughputs and their ratio.
#
#   scripts/bench-delta.sh            # THREADS=2 by default
#   BENCH_110M=1 scripts/bench-delta.sh   # also the stories110M shape (cmc only, ~2 min)
#
# PyTorch is Debian's (apt-get install python3-torch libopenblas0-pthread),
# which runs under /usr/bin/python3; without it the baseline is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=${THREADS:-2}
python=/usr/bin/python3

# The delta's tests link llama.cpp (they tokenize with it), as e2e does: the
# cgo build flags come from the Makefile (make bench), or are set here, so
# that the cached build is reused.
export CGO_CFLAGS=${CGO_CFLAGS:--O3 -march=native} CGO_CXXFLAGS=${CGO_CXXFLAGS:--O3 -march=native}
make -s headers

# The ceiling: one core's FMA peak (scripts/fmapeak.c) times the threads.
# No program trains faster than the step's flops at that rate, so it bounds
# the ratio any code could reach against this machine's PyTorch.
echo "== FMA peak: scripts/fmapeak.c"
mkdir -p build && cc -O2 -march=native scripts/fmapeak.c -o build/fmapeak
peak=$(build/fmapeak 2>/dev/null | awk '$1 == "fma_peak_gflops_per_core" { print $2 }')
echo "fma_peak_gflops_per_core $peak"

echo "== PyTorch: scripts/bench_torch.py --threads $threads"
torch_tps=
torch_cpu=
if "$python" -c 'import torch' 2>/dev/null; then
	# OpenBLAS reads these to override its CPU detection; they are unset
	# for this one command so that it picks its own kernels for this CPU.
	out=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" scripts/bench_torch.py --threads "$threads")
	echo "$out"
	torch_tps=$(awk '$1 == "torch_tokens_per_s" { print $2 }' <<<"$out")
	torch_cpu=$(awk '$1 == "torch_tokens_per_cpu_s" { print $2 }' <<<"$out")
else
	echo "skipped: $python cannot import torch (apt-get install python3-torch libopenblas0-pthread)"
fi

echo "== cmc: go test ./delta -bench BenchmarkTrainStep15M (GOMAXPROCS=$threads)"
out=$(GOMAXPROCS=$threads go test ./delta -run XXX -bench 'BenchmarkTrainStep15M' -benchtime 5x)
echo "$out"
cmc_tps=$(grep -o '[0-9.e+]* tokens/s' <<<"$out" | head -n 1 | awk '{ print $1 }')
cmc_cpu=$(grep -o '[0-9.e+]* tokens/cpu-s' <<<"$out" | head -n 1 | awk '{ print $1 }')
cmc_gflops=$(grep -o '[0-9.e+]* GFLOP/s' <<<"$out" | head -n 1 | awk '{ print $1 }')

# The paper's largest delta shape (dim 768, 12 layers, hidden 2048): 1.7 GB
# of parameters and optimiser state, several seconds a step. bench_torch.py
# has only the stories15M shape, so there is no PyTorch ratio for it.
if [ "${BENCH_110M:-0}" = 1 ]; then
	echo "== cmc: go test ./delta -bench BenchmarkTrainStep110M (GOMAXPROCS=$threads)"
	out=$(GOMAXPROCS=$threads go test ./delta -run XXX -bench 'BenchmarkTrainStep110M' -benchtime 2x)
	echo "$out"
	cmc110_tps=$(grep -o '[0-9.e+]* tokens/s' <<<"$out" | head -n 1 | awk '{ print $1 }')
	cmc110_gflops=$(grep -o '[0-9.e+]* GFLOP/s' <<<"$out" | head -n 1 | awk '{ print $1 }')
fi

# Incremental inference: the Go engine against llama.cpp on the same
# stories15M-shaped model (exported as F32 GGUF), same thread count.
echo "== inference: go test ./e2e -bench BenchmarkDecode15M (GOMAXPROCS=$threads)"
out=$(GOMAXPROCS=$threads go test ./e2e -run XXX -bench 'BenchmarkDecode15M' -benchtime 5x)
echo "$out"
dec_cmc=$(awk '$1 ~ /Decode15M\/cmc/ { for (i = 1; i < NF; i++) if ($(i+1) == "tokens/s") print $i }' <<<"$out")
dec_llama=$(awk '$1 ~ /Decode15M\/llama.cpp/ { for (i = 1; i < NF; i++) if ($(i+1) == "tokens/s") print $i }' <<<"$out")

# Both rates, and their ratios: per second of wall-clock time, and per
# CPU-second of all threads, which a machine shared with other work
# disturbs less (see BENCHMARKS.md).
echo "== summary"
echo "cmc_tokens_per_s ${cmc_tps:-unknown}"
echo "torch_tokens_per_s ${torch_tps:-skipped}"
echo "cmc_tokens_per_cpu_s ${cmc_cpu:-unknown}"
echo "torch_tokens_per_cpu_s ${torch_cpu:-skipped}"
ratio() {
	if [ -n "$2" ] && [ -n "$3" ]; then
		awk -v name="$1" -v cmc="$2" -v torch="$3" 'BEGIN { printf "%s %.2f\n", name, cmc / torch }'
	fi
}
ratio ratio_cmc_over_torch "$cmc_tps" "$torch_tps"
ratio ratio_cmc_over_torch_cpu "$cmc_cpu" "$torch_cpu"
echo "cmc_train_gflops_per_s ${cmc_gflops:-unknown}"
echo "fma_peak_gflops_per_s $(awk -v p="$peak" -v t="$threads" 'BEGIN { printf "%.1f", p * t }')"
if [ -n "$cmc_gflops" ] && [ -n "$peak" ]; then
	# the step's share of the threads' FMA peak
	awk -v g="$cmc_gflops" -v p="$peak" -v t="$threads" 'BEGIN { printf "cmc_train_fraction_of_peak %.2f\n", g / (p * t) }'
	# the best ratio over PyTorch at 100% of peak: peak / (flops per token) / PyTorch's rate
	[ -z "$torch_tps" ] || awk -v g="$cmc_gflops" -v tps="$cmc_tps" -v p="$peak" -v t="$threads" -v torch="$torch_tps" \
		'BEGIN { printf "ratio_cmc_over_torch_ceiling %.2f\n", p * t / (g / tps) / torch }'
fi
if [ "${BENCH_110M:-0}" = 1 ]; then
	echo "cmc_110m_tokens_per_s ${cmc110_tps:-unknown}"
	echo "cmc_110m_train_gflops_per_s ${cmc110_gflops:-unknown}"
fi
echo "decode_cmc_tokens_per_s ${dec_cmc:-unknown}"
echo "decode_llama_cpp_tokens_per_s ${dec_llama:-unknown}"
ratio ratio_decode_cmc_over_llama_cpp "$dec_cmc" "$dec_llama"
