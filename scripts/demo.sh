#!/usr/bin/env bash
# demo.sh: cmc end to end on the models that ship in ../shared/fixtures.
#
#   1. train a small delta once against stories260K (the frozen template)
#      on TinyStories text,
#   2. measure held-out NLL of the template alone and with the delta,
#   3. generate with alpha 0 (the template's own greedy text) and alpha 1,
#   4. apply the same delta, unchanged, to a model with another vocabulary
#      (Llama-2's 32000 tokens) through the PM-MinED token map.
set -euo pipefail
cd "$(dirname "$0")/.."

fx=${FIXTURES:-../shared/fixtures}
if [ ! -d "$fx" ]; then
	echo "demo: the fixtures are not at $fx (set FIXTURES=...)" >&2
	exit 1
fi
cmc=bin/cmc
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"
tmpl=$fx/models/stories260K/stories260K.gguf
other=$fx/models/llama-2-tiny-random/llama-2-tiny-random.gguf
stories=$fx/datasets/tinystories/tinystories_val_sample.txt
threads=${THREADS:-1}

# Training and held-out text: disjoint slices of the TinyStories sample.
head -n 600 "$stories" >"$out/train.txt"
sed -n '2000,2060p' "$stories" >"$out/heldout.txt"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "the template: $tmpl"
$cmc inspect "$tmpl" | head -n 14

step "train a delta (new, 2 layers) against the frozen template on TinyStories"
$cmc train --template "$tmpl" --delta new --dim 48 --layers 2 --heads 4 --hidden 128 \
	--data "$out/train.txt" --format text --prompt-template raw --max-len 128 \
	--epochs 1 --batch 16 --micro-batch 8 --lr 2e-3 --warmup 0.05 \
	--threads "$threads" --out "$out/delta.gguf"

step "held-out NLL: the template alone vs template + delta"
$cmc eval --model "$tmpl" --delta "$out/delta.gguf" --data "$out/heldout.txt" --format text \
	--template raw --delta-template raw --threads "$threads"

step "alpha 0: exactly the template's own greedy story"
$cmc generate --model "$tmpl" --delta "$out/delta.gguf" --alpha 0 --delta-template raw \
	--prompt "Once upon a time" --temp 0 --max-tokens 60 --threads "$threads"

step "alpha 1: the same prompt steered by the delta"
$cmc generate --model "$tmpl" --delta "$out/delta.gguf" --alpha 1 --delta-template raw \
	--prompt "Once upon a time" --temp 0 --max-tokens 60 --threads "$threads"

step "the same delta on a model with another vocabulary (Llama-2, 32000 tokens)"
$cmc map --user "$other" --delta "$out/delta.gguf" | head -n 12
$cmc generate --model "$other" --delta "$out/delta.gguf" --alpha 1 --delta-template raw \
	--prompt "Once upon a time" --temp 0.8 --seed 1 --max-tokens 30 --threads "$threads" --stats
