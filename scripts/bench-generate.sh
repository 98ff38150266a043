#!/usr/bin/env bash
# bench-generate.sh: generation speed and memory of a user LLM steered by
# a delta, against the same user model alone, through the same binary.
#
#   user:  random Llama, 768 wide, 12 layers, Llama-2 vocabulary, F16 (~134M parameters)
#   delta: random Llama, 64 wide, 2 layers (~2.2M parameters, 61x smaller),
#          once with the same vocabulary (identity map) and once with
#          Mistral-7B's (PM-MinED map: every inexact token re-tokenises)
#
# Runs ROUNDS rounds of the three, interleaved, and keeps each one's best
# tokens/s (on a shared machine the best run is the one least disturbed);
# prints the ratios the targets are stated in, and the extra peak RSS of
# user+delta over the user alone.
#   scripts/bench-generate.sh     # THREADS=1 TOKENS=128 ROUNDS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."

fx=${FIXTURES:-../shared/fixtures}
threads=${THREADS:-1}
tokens=${TOKENS:-128}
rounds=${ROUNDS:-5}
dir=build/bench
mkdir -p "$dir"
make -s build

mk() { [ -f "$dir/$1" ] || go run ./scripts/mkrandom --out "$dir/$1" "${@:2}"; }
mk user.gguf --vocab "$fx/gguf-vocab/ggml-vocab-llama-spm.gguf" --dim 768 --layers 12 --heads 12 --hidden 2048 --f16
mk delta-same.gguf --vocab "$fx/gguf-vocab/ggml-vocab-llama-spm.gguf" --dim 64 --layers 2 --heads 4 --hidden 172 --seed 2
mk delta-cross.gguf --vocab "$fx/gguf-vocab/ggml-vocab-mistral-v1.gguf" --dim 64 --layers 2 --heads 4 --hidden 172 --seed 2
# Build the cross-vocabulary map once, outside the timed runs.
bin/cmc map --user "$dir/user.gguf" --delta "$dir/delta-cross.gguf" --cache-dir "$dir/maps" >/dev/null

# run NAME ARGS...: one generation; keeps the best tokens/s and the peak RSS (KiB).
declare -A tps rss
run() {
	local name=$1
	shift
	local log
	log=$(/usr/bin/time -f 'maxrss_kib %M' bin/cmc generate --model "$dir/user.gguf" --prompt "Once upon a time" \
		--template raw --delta-template raw --temp 0 --max-tokens "$tokens" --threads "$threads" \
		--map-cache "$dir/maps" --stats "$@" 2>&1 >/dev/null)
	local t
	t=$(grep -o 'tokens_per_s=[0-9.]*' <<<"$log" | cut -d= -f2)
	tps[$name]=$(awk -v a="$t" -v b="${tps[$name]:-0}" 'BEGIN { print (a > b ? a : b) }')
	rss[$name]=$(awk '$1 == "maxrss_kib" { print $2 }' <<<"$log")
	printf '%-12s %8s tokens/s  peak RSS %8s KiB  %s\n' "$name" "$t" "${rss[$name]}" \
		"$(grep -o 'delta_retokenised=[0-9]* delta_redecoded=[0-9]*' <<<"$log")"
}

for round in $(seq "$rounds"); do
	echo "== round $round (threads $threads, $tokens tokens)"
	run alone --no-delta
	run same --delta "$dir/delta-same.gguf"
	run cross --delta "$dir/delta-cross.gguf"
done

echo "== summary (best of $rounds rounds)"
printf 'best tokens/s: alone %s, same vocabulary %s, cross vocabulary %s\n' "${tps[alone]}" "${tps[same]}" "${tps[cross]}"
awk -v a="${tps[alone]}" -v s="${tps[same]}" -v c="${tps[cross]}" 'BEGIN {
	printf "ratio_same_vocab_over_alone %.3f\n", s / a
	printf "ratio_cross_over_same_vocab %.3f\n", c / s
}'
echo "extra_rss_same_kib $(( ${rss[same]} - ${rss[alone]} ))"
echo "extra_rss_cross_kib $(( ${rss[cross]} - ${rss[alone]} ))"
