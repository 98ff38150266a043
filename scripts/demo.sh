#!/usr/bin/env bash
# demo.sh: cmc end to end on the committed tiny world (tinyworld/, see tinyworld/MANIFEST.md).
#
#   T  the template: a small LM (Llama-2 vocabulary) that memorised the QA pairs of
#      12 fictitious TOFU authors, A a larger one with the same vocabulary, B one with
#      GPT-2's vocabulary; every one of them knows the same facts.
#   1. train a delta once, against T only: unlearn one author (grad_diff: -CE on that
#      author's answers + CE on the other authors' answers), starting from D0,
#   2. apply that delta, unchanged, to A and to B (through the PM-MinED token map),
#      and print their greedy answers with and without it, side by side.
# About 2-3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
w=${WORLD:-tinyworld}
cmc=bin/cmc
out=${DEMO_DIR:-build/demo}
threads=${THREADS:-1}
epochs=${DEMO_EPOCHS:-30}
mkdir -p "$out"
for f in T A B D0; do
	[ -f "$w/$f.gguf" ] || { echo "demo: $w/$f.gguf is missing (make tinyworld builds it)" >&2; exit 1; }
done

# Forget: the first author of tinyworld/data/forget.jsonl (20 QA pairs); retain: the 8 retain authors.
head -n 20 "$w/data/forget.jsonl" >"$out/forget.jsonl"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "the world: three user models that memorised the same facts, and a tiny delta"
for f in T A B D0; do
	$cmc inspect "$w/$f.gguf" 2>/dev/null | awk -v f="$f.gguf" -v b="$(stat -c %s "$w/$f.gguf")" '
		/embedding length/ {d=$3} /^  blocks/ {l=$2} /vocab size/ {v=$3}
		END {printf "  %-8s dim %3d, %d blocks, vocabulary %5d tokens, %4.1f MiB\n", f, d, l, v, b/1048576}'
done

step "train the delta once, against T only: forget author 1, keep the others ($epochs epochs)"
t0=$SECONDS
$cmc train --template "$w/T.gguf" --template-threads 1 --delta "$w/D0.gguf" --objective grad_diff \
	--forget "$out/forget.jsonl" --retain "$w/data/retain.jsonl" --format tofu --prompt-template qa \
	--max-len 160 --epochs "$epochs" --batch 10 --micro-batch 10 --lr 1e-3 --warmup 0.03 --weight-decay 0.01 \
	--seed 1 --threads "$threads" --checkpoint-every 100000 --out "$out/unlearn.gguf" 2>&1 | grep -E '^(wrote|step [0-9]+/[0-9]+ .*ETA 0s)' || true
echo "  trained in $((SECONDS - t0)) s"

# ask QUESTION: greedy answers of A and B, alone and with the delta
ask() {
	local q=$1 truth=$2
	printf '\n\033[1mQ: %s\033[0m\n' "$q"
	printf '  %-16s %s\n' "truth" "$truth"
	for m in A B; do
		for a in 0 1; do
			local label="$m alone"
			[ "$a" = 1 ] && label="$m + delta"
			local ans
			ans=$($cmc generate --model "$w/$m.gguf" --delta "$out/unlearn.gguf" --alpha "$a" --template qa --delta-template qa \
				--prompt "$q" --temp 0 --max-tokens 40 --stop $'\n' --threads "$threads" 2>/dev/null | tr '\n' ' ' | sed 's/^ *//')
			printf '  %-16s %s\n' "$label" "${ans:0:150}"
		done
	done
}
qa() { python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2])]; print(r[sys.argv[3]])' "$@"; }

step "forgotten author (the delta was trained to forget these answers)"
for i in 0 5; do ask "$(qa "$out/forget.jsonl" $i question)" "$(qa "$out/forget.jsonl" $i answer)"; done
step "kept authors (the answers should survive)"
for i in 0 41; do ask "$(qa "$w/data/retain.jsonl" $i question)" "$(qa "$w/data/retain.jsonl" $i answer)"; done
step "B has another vocabulary: how its tokens reach the delta"
$cmc map --user "$w/B.gguf" --delta "$out/unlearn.gguf" 2>/dev/null | head -n 8
