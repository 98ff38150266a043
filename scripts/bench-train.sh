#!/usr/bin/env bash
# bench-train.sh: where `cmc train` spends its time. A template LLM
# (random Llama, 512 wide, 8 layers, Llama-2 vocabulary, ~58M parameters)
# and a small delta (128 wide, 4 layers, ~5M) train on TinyStories text;
# the per-step CSV splits each step into template time (llama.cpp logits +
# log_softmax, on their own goroutine), delta time (forward, loss,
# backward, AdamW) and wall time. Their ratio is the overlap gained by
# running the template one micro-batch ahead. A second run with
# --template-cache shows the later epochs without the template.
#   scripts/bench-train.sh      # THREADS=1 TEMPLATE_THREADS=1 by default
set -euo pipefail
cd "$(dirname "$0")/.."

fx=${FIXTURES:-../shared/fixtures}
threads=${THREADS:-1}
tthreads=${TEMPLATE_THREADS:-1}
dir=build/bench
mkdir -p "$dir"
make -s build
[ -f "$dir/template.gguf" ] || go run ./scripts/mkrandom --out "$dir/template.gguf" \
	--vocab "$fx/gguf-vocab/ggml-vocab-llama-spm.gguf" --dim 512 --layers 8 --heads 8 --hidden 1376 --f16
head -n 200 "$fx/datasets/tinystories/tinystories_val_sample.txt" >"$dir/train.txt"

train() {
	bin/cmc train --template "$dir/template.gguf" --delta new --dim 128 --layers 4 --heads 4 --hidden 344 \
		--data "$dir/train.txt" --format text --prompt-template raw --max-len 128 \
		--batch 8 --micro-batch 4 --lr 1e-3 --threads "$threads" --template-threads "$tthreads" "$@" 2>/dev/null >/dev/null
}

# summarise CSV FIRST LAST: template, delta and wall seconds of steps FIRST..LAST.
summarise() {
	awk -F, -v first="$2" -v last="$3" 'NR > 1 && $1 >= first && $1 <= last {
		tok += $8; t += $9; d += $10; w += $11
	} END {
		printf "steps %d-%d: %.0f response tokens/s; template %.1f s, delta %.1f s, wall %.1f s; overlap gained %.2fx\n",
			first, last, tok / (w / 1000), t / 1000, d / 1000, w / 1000, (t + d) / w
	}' "$1"
}

echo "== no cache, 2 epochs (threads: delta $threads, template $tthreads)"
rm -f "$dir"/bt.*
train --epochs 2 --out "$dir/bt.gguf"
steps=$(($(wc -l <"$dir/bt.loss.csv") - 1))
summarise "$dir/bt.loss.csv" 1 "$steps"

echo "== --template-cache, 2 epochs: epoch 1 fills the cache, epoch 2 reads it"
rm -rf "$dir/tcache" "$dir"/btc.*
train --epochs 2 --template-cache "$dir/tcache" --out "$dir/btc.gguf"
half=$((steps / 2))
summarise "$dir/btc.loss.csv" 1 "$half"
summarise "$dir/btc.loss.csv" $((half + 1)) "$steps"
echo "final loss: exact $(tail -n 1 "$dir/bt.loss.csv" | cut -d, -f3), cached $(tail -n 1 "$dir/btc.loss.csv" | cut -d, -f3)"
