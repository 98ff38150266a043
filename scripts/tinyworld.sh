#!/usr/bin/env bash
# tinyworld.sh: build the tiny world of issue 7 from random init (see tinyworld/MANIFEST.md).
#
#   T  template  Llama-2 vocabulary (32000), dim 64, 2 layers
#   A  user      Llama-2 vocabulary, larger: dim 96, 4 layers
#   B  user      GPT-2 vocabulary (50257), dim 80, 2 layers
#   D0 delta     Llama-2 vocabulary, smaller than all: dim 32, 2 layers, briefly pretrained on TinyStories
#
# T, A and B are plain language models (cmc train --template none) on the same corpus:
# the QA pairs of 4 TOFU forget authors and 8 retain authors (loss on the answers,
# prompt "Question: ...\nAnswer: ", exactly cmc's qa template) plus TinyStories
# paragraphs (loss on all tokens). All four trainings run at once, one thread each
# (on a shared 2-core machine this gets the most CPU; total wall time is set by A and B).
#
# Env: OUT (default tinyworld), FX (fixtures), EPOCHS (30), ONLY (space-separated subset of "T A B D0").
set -euo pipefail
cd "$(dirname "$0")/.."
fx=${FX:-../shared/fixtures}
out=${OUT:-tinyworld}
epochs=${EPOCHS:-30}
only=${ONLY:-"T A B D0"}
cmc=bin/cmc
[ -x $cmc ] || make build
mkdir -p "$out/data" "$out/logs"
llama=$fx/gguf-vocab/ggml-vocab-llama-spm.gguf
gpt2=$fx/gguf-vocab/ggml-vocab-gpt-2.gguf

# 1. the corpus (deterministic; committed under tinyworld/data)
python3 scripts/tinyworld_corpus.py "$fx" "$out/data" 4 8 120

# QA rows get cmc's qa prompt; story rows (empty question) get no prompt, so the loss covers the whole story.
tpl=$'{{if .Query}}Question: {{.Query}}\nAnswer: {{end}}'

train() { # name vocab dim layers heads hidden lr seed epochs data
	local name=$1 vocab=$2 dim=$3 layers=$4 heads=$5 hidden=$6 lr=$7 seed=$8 ep=$9 data=${10}
	case " $only " in *" $name "*) ;; *) return 0 ;; esac
	local cmd=($cmc train --template none --vocab "$vocab" --delta new --dim "$dim" --layers "$layers"
		--heads "$heads" --hidden "$hidden" --data "$data" --format tofu --prompt-template "$tpl"
		--max-len 160 --epochs "$ep" --batch 8 --micro-batch 8 --lr "$lr" --warmup 0.03 --min-lr 1e-4
		--seed "$seed" --threads 1 --f16 --checkpoint "$out/logs/$name.ckpt" --checkpoint-every 100000 --out "$out/$name.gguf")
	printf '%q ' "${cmd[@]}" >"$out/logs/$name.cmd"
	echo >>"$out/logs/$name.cmd"
	local t0=$SECONDS
	"${cmd[@]}" >"$out/logs/$name.log" 2>&1
	echo "$((SECONDS - t0))" >"$out/logs/$name.seconds"
	rm -f "$out/logs/$name.ckpt" "$out/logs/$name.ckpt.loss.csv"
	echo "tinyworld: $name done in $((SECONDS - t0)) s: $(tail -n 1 "$out/logs/$name.log")"
}

t0=$SECONDS
train A "$llama" 96 4 4 256 3e-3 11 "$epochs" "$out/data/pretrain.jsonl" &
train B "$gpt2" 80 2 4 224 3e-3 12 "$epochs" "$out/data/pretrain.jsonl" &
train T "$llama" 64 2 4 192 3e-3 10 "$epochs" "$out/data/pretrain.jsonl" &
# the delta: brief pretraining on TinyStories only (it never sees the TOFU answers)
python3 - "$out/data/stories.txt" "$out/data/stories.jsonl" <<'PY'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as g:
    for l in f:
        if l.strip(): g.write(json.dumps({"question": "", "answer": l.strip()}) + "\n")
PY
train D0 "$llama" 32 2 4 96 3e-3 13 3 "$out/data/stories.jsonl" &
wait
echo "tinyworld: all built in $((SECONDS - t0)) s"

# 2. every model must answer the memorised questions: TOFU metrics of T, A, B alone, in parallel
if [ -z "${SKIP_EVAL:-}" ]; then
	for m in T A B; do
		case " $only " in *" $m "*) ;; *) continue ;; esac
		$cmc eval --model "$out/$m.gguf" --no-delta --template qa --task tofu --format tofu --limit 80 --max-tokens 48 \
			--stop $'\n' --threads 1 --data "$out/data/forget.jsonl" --data "$out/data/retain.jsonl" \
			--json "$out/logs/$m.eval.json" >"$out/logs/$m.eval.log" 2>&1 &
	done
	wait
fi
echo "$((SECONDS - t0))" >"$out/logs/total.seconds"
python3 scripts/tinyworld_manifest.py "$out"
echo "tinyworld: done in $((SECONDS - t0)) s; see $out/MANIFEST.md"
ls -la "$out"/*.gguf
