#!/usr/bin/env bash
# bench-realsize.sh: cmc at a real user-model size (issue 12). Every number
# is printed beside a baseline measured in the same run, as a ratio.
#
#   user/template: random Llama shaped as Llama-3.2-1B (2048 wide, 16 layers,
#                  32 heads, 8 KV heads, 8192 feed-forward, tied embedding,
#                  Llama-3's 128256-token vocabulary), Q4_K_M by cmc quantize
#   delta:         random, shaped as stories15M (288 wide, 6 layers, 6 heads,
#                  768 feed-forward), Llama-2 vocabulary: a cross-vocabulary
#                  pair, steered through the PM-MinED map
#   100k template: random Llama, 256 wide, 2 layers, DBRX's 100k cl100k
#                  vocabulary, F16: the setting of issue 12's table, where
#                  the vocabulary, not the model, dominates each step
#
# Measured: generation tokens/s alone and with the delta; sampling
# (--temp 0.8 --top-k 0 --top-p 0.9, and --top-k 40) over greedy on both
# user models; time to first token of a ~2k-token prompt, alone and with the
# delta; training with the 1B as template (tokens/s, template/delta split,
# peak RSS) and against the 100k template at micro-batch 4 x 1024 (peak RSS,
# goal under 1 GiB). Models are built once into build/bench/realsize.
#
#   scripts/bench-realsize.sh      # THREADS=2 TOKENS=16 ROUNDS=3 by default
#   CMC=/tmp/me/cmc scripts/bench-realsize.sh    # a cmc built elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."

fx=${FIXTURES:-../shared/fixtures}
threads=${THREADS:-2}
tokens=${TOKENS:-16}
rounds=${ROUNDS:-3}
dir=build/bench/realsize
mkdir -p "$dir"
if [ -z "${CMC:-}" ]; then
	make -s build
	CMC=bin/cmc
fi
echo "== machine: $(nproc) cores, $(uptime)"

# Models, each made once.
vocab3=$dir/llama3-vocab.gguf
[ -f "$vocab3" ] || go run ./scripts/mkllama3vocab --ranks "$fx/tokenizers/llama3/tokenizer.model" --out "$vocab3"
user=$dir/llama1b-q4km.gguf
if [ ! -f "$user" ]; then
	go run ./scripts/mkrandom --vocab "$vocab3" --dim 2048 --layers 16 --heads 32 --kv-heads 8 --hidden 8192 \
		--tied --f16 --ctx 8192 --out "$dir/llama1b-f16.gguf"
	"$CMC" quantize --threads "$threads" "$dir/llama1b-f16.gguf" "$user" Q4_K_M
	rm "$dir/llama1b-f16.gguf"
fi
delta=$dir/delta15m-llama2.gguf
[ -f "$delta" ] || go run ./scripts/mkrandom --vocab "$fx/gguf-vocab/ggml-vocab-llama-spm.gguf" \
	--dim 288 --layers 6 --heads 6 --hidden 768 --tied --ctx 4096 --seed 2 --out "$delta"
user100k=$dir/dbrx-random-f16.gguf
[ -f "$user100k" ] || go run ./scripts/mkrandom --vocab "$fx/gguf-vocab/ggml-vocab-dbrx.gguf" \
	--dim 256 --layers 2 --heads 4 --hidden 768 --f16 --out "$user100k"
# The cross-vocabulary map, built once outside the timed runs.
"$CMC" map --user "$user" --delta "$delta" --cache-dir "$dir/maps" >/dev/null

# gen NAME MODEL ARGS...: one generation with --stats; keeps each NAME's
# best tokens/s (on a shared machine the best run is the least disturbed).
declare -A tps
gen() {
	local name=$1 model=$2
	shift 2
	local log t n
	log=$("$CMC" generate --model "$model" --prompt "Once upon a time" --template raw --delta-template raw \
		--max-tokens "$tokens" --threads "$threads" --map-cache "$dir/maps" --stats "$@" 2>&1 >/dev/null)
	n=$(grep -o ' tokens=[0-9]*' <<<"$log" | cut -d= -f2)
	t=$(grep -o 'elapsed_s=[0-9.]*' <<<"$log" | cut -d= -f2 | awk -v n="$n" '{ printf "%.3f", n / $1 }')
	tps[$name]=$(awk -v a="$t" -v b="${tps[$name]:-0}" 'BEGIN { print (a > b ? a : b) }')
	printf '%-16s %8s tokens/s (%s tokens)\n' "$name" "$t" "$n"
}
greedy=(--temp 0)
topp=(--temp 0.8 --top-k 0 --top-p 0.9 --seed 1)
topk=(--temp 0.8 --top-k 40 --top-p 0.9 --seed 1)

# Interleaved rounds, each starting one configuration later, so that no
# configuration always runs first (after the other model) or last.
# rotate ROUND NAME...: the names, rotated left by ROUND.
rotate() {
	local r=$1
	shift
	local n=$#
	local i
	for i in $(seq 0 $((n - 1))); do
		local j=$(((i + r) % n + 1))
		printf '%s\n' "${!j}"
	done
}
run1b() {
	case $1 in
	greedy) gen 1b-greedy "$user" --no-delta "${greedy[@]}" ;;
	delta) gen 1b-delta "$user" --delta "$delta" "${greedy[@]}" ;;
	topp) gen 1b-topp "$user" --no-delta "${topp[@]}" ;;
	topk) gen 1b-topk "$user" --no-delta "${topk[@]}" ;;
	esac
}
run100k() {
	case $1 in
	greedy) tokens=128 gen 100k-greedy "$user100k" --no-delta "${greedy[@]}" ;;
	topp) tokens=128 gen 100k-topp "$user100k" --no-delta "${topp[@]}" ;;
	topk) tokens=128 gen 100k-topk "$user100k" --no-delta "${topk[@]}" ;;
	esac
}
for round in $(seq "$rounds"); do
	echo "== 1B Q4_K_M, round $round ($tokens tokens, $threads threads)"
	for c in $(rotate "$round" greedy delta topp topk); do run1b "$c"; done
done
for round in $(seq $((2 * rounds))); do
	echo "== 100k-vocabulary template as the user, round $round (128 tokens)"
	for c in $(rotate "$round" greedy topp topk); do run100k "$c"; done
done

# Time to first token: --stats's elapsed_s of a one-token generation after
# a long prompt (the prompt's decode and the first token; loading is not
# counted). About 8400 characters of TinyStories: ~2k Llama-3 tokens.
long=$(head -c 8400 "$fx/datasets/tinystories/tinystories_val_sample.txt" | tr '\n' ' ')
ttft() {
	"$CMC" generate --model "$user" --template raw --delta-template raw --max-tokens 1 --temp 0 --threads "$threads" \
		--map-cache "$dir/maps" --echo=false --stats --prompt "$long" "$@" 2>&1 >/dev/null | grep -o 'elapsed_s=[0-9.]*' | cut -d= -f2
}
echo "== time to first token, ~2k-token prompt (${#long} characters)"
ttft_alone=$(ttft --no-delta)
ttft_delta=$(ttft --delta "$delta")
echo "seconds: alone $ttft_alone, with the delta $ttft_delta"

# train NAME ARGS...: cmc train under /usr/bin/time; prints tokens/s of the
# whole run and its split from the loss CSV, and the peak RSS.
declare -A rss
train() {
	local name=$1
	shift
	local log
	rm -f "$dir/$name".*
	log=$(/usr/bin/time -f 'maxrss_kib %M' "$CMC" train --delta new --format text --prompt-template raw \
		--epochs 1 --lr 1e-3 --threads 1 --template-threads "$threads" --checkpoint-every 100000 \
		--out "$dir/$name.gguf" "$@" 2>&1 >/dev/null)
	rss[$name]=$(awk '$1 == "maxrss_kib" { print $2 }' <<<"$log")
	awk -F, -v name="$name" -v rss="${rss[$name]}" 'NR > 1 { tok += $8; t += $9; d += $10; w += $11; n++ } END {
		printf "%s: %d steps, %d tokens: %.1f tokens/s; template %.1f s (%.1f tokens/s), delta %.1f s (%.1f tokens/s), wall %.1f s; peak RSS %.0f MiB\n",
			name, n, tok, tok / (w / 1000), t / 1000, tok / (t / 1000), d / 1000, tok / (d / 1000), w / 1000, rss / 1024
	}' "$dir/$name.loss.csv"
}
echo "== training against the 1B Q4_K_M template (delta: new, 15M-shaped, its vocabulary)"
awk 'length > 500 && n++ < 8' "$fx/datasets/tinystories/tinystories_val_sample.txt" >"$dir/train-short.txt"
train train1b --template "$user" --dim 288 --layers 6 --heads 6 --hidden 768 \
	--data "$dir/train-short.txt" --max-len 128 --batch 4 --micro-batch 4
echo "== training against the 100k template, micro-batch 4 x 1024 (delta: new, 64 wide, 2 layers)"
# Eight documents of ~6000 characters (over 1024 tokens each).
awk 'NF { doc = doc $0 " "; if (length(doc) > 6000) { printf "%s\n<|endoftext|>\n", doc; doc = ""; if (++n == 8) exit } }' \
	"$fx/datasets/tinystories/tinystories_val_sample.txt" >"$dir/train-long.txt"
train train100k --template "$user100k" --dim 64 --layers 2 --heads 4 --hidden 172 \
	--data "$dir/train-long.txt" --max-len 1024 --batch 4 --micro-batch 4

echo "== summary (best of $rounds rounds; 100k rows best of $((2 * rounds)); load now: $(uptime | sed 's/.*load/load/'))"
awk -v g="${tps[1b-greedy]}" -v d="${tps[1b-delta]}" -v p="${tps[1b-topp]}" -v k="${tps[1b-topk]}" \
	-v g2="${tps[100k-greedy]}" -v p2="${tps[100k-topp]}" -v k2="${tps[100k-topk]}" \
	-v ta="$ttft_alone" -v td="$ttft_delta" -v r="${rss[train100k]}" -v r1="${rss[train1b]}" 'BEGIN {
	printf "1b_tokens_per_s greedy %s, with delta %s, top-p %s, top-k 40 %s\n", g, d, p, k
	printf "ratio_1b_delta_over_alone %.3f\n", d / g
	printf "ratio_1b_topp_over_greedy %.3f   (goal >= 0.8)\n", p / g
	printf "ratio_1b_topk40_over_greedy %.3f   (goal >= 0.95)\n", k / g
	printf "100k_tokens_per_s greedy %s, top-p %s, top-k 40 %s\n", g2, p2, k2
	printf "ratio_100k_topp_over_greedy %.3f   (goal >= 0.8)\n", p2 / g2
	printf "ratio_100k_topk40_over_greedy %.3f   (goal >= 0.95)\n", k2 / g2
	printf "ttft_2k_s alone %s, with delta %s; ratio_ttft_delta_over_alone %.3f\n", ta, td, td / ta
	printf "train_1b_peak_rss_mib %.0f\n", r1 / 1024
	printf "train_100k_peak_rss_mib %.0f; ratio_over_1gib %.3f   (goal < 1)\n", r / 1024, r / 1048576
}'
