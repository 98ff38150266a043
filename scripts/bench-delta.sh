#!/usr/bin/env bash
# bench-delta.sh: delta training throughput of cmc against PyTorch, on this
# machine's CPU, with the same model (stories15M shape), batch (4×256) and
# thread count. Prints both throughputs and their ratio.
#
#   scripts/bench-delta.sh            # THREADS=2 by default
#
# PyTorch is Debian's (apt-get install python3-torch libopenblas0-pthread),
# which runs under /usr/bin/python3; without it the baseline is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=${THREADS:-2}
python=/usr/bin/python3

echo "== PyTorch: scripts/bench_torch.py --threads $threads"
torch_tps=
if "$python" -c 'import torch' 2>/dev/null; then
	# OpenBLAS reads these to override its CPU detection; they are unset
	# for this one command so that it picks its own kernels for this CPU.
	out=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" scripts/bench_torch.py --threads "$threads")
	echo "$out"
	torch_tps=$(awk '$1 == "torch_tokens_per_s" { print $2 }' <<<"$out")
else
	echo "skipped: $python cannot import torch (apt-get install python3-torch libopenblas0-pthread)"
fi

echo "== cmc: go test ./delta -bench BenchmarkTrainStep15M (GOMAXPROCS=$threads)"
out=$(GOMAXPROCS=$threads go test ./delta -run XXX -bench 'BenchmarkTrainStep15M' -benchtime 5x)
echo "$out"
cmc_tps=$(grep -o '[0-9.e+]* tokens/s' <<<"$out" | head -n 1 | awk '{ print $1 }')

# The llama.cpp inference comparison (cmc generate against llama.cpp) goes
# here; the lead adds it.

echo "== summary"
echo "cmc_tokens_per_s ${cmc_tps:-unknown}"
echo "torch_tokens_per_s ${torch_tps:-skipped}"
if [ -n "$cmc_tps" ] && [ -n "$torch_tps" ]; then
	awk -v cmc="$cmc_tps" -v torch="$torch_tps" 'BEGIN { printf "ratio_cmc_over_torch %.2f\n", cmc / torch }'
fi
