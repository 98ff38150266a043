#!/usr/bin/env bash
# reproduce.sh: the experiments of issue 7 on the committed tiny world (tinyworld/, see
# tinyworld/MANIFEST.md); writes RESULTS.md. Everything runs on CPU, one thread per job.
#
#   1. unlearning: one delta trained once with T (grad_diff on the forget authors),
#      applied unchanged to T, A (bigger, same vocabulary) and B (GPT-2 vocabulary);
#      baseline: each model unlearned directly with the same objective and budget.
#   2. format transfer: one delta trained with T on the retain authors' QA in the
#      open-instruct chat format; measured on A and B on the (held-out) forget authors.
#   3. alpha sweep of the unlearning delta on one user model.
#
# Env: WORLD (tinyworld), RUN (build/reproduce), OUT_MD (RESULTS.md), EVAL_N (80: examples
# per eval file), UNL_EPOCHS/UNL_LR, FMT_EPOCHS/FMT_LR, SWEEP_MODEL (B), SEED (1), JOBS (2),
# DIRECT_LR2 (1e-4: a gentler direct baseline), NOISE_SEEDS ("2": extra seeds of the CMC delta, on A and B),
# SKIP_FORMAT, SKIP_SWEEP.
set -euo pipefail
cd "$(dirname "$0")/.."
fx=${FX:-../shared/fixtures}
w=${WORLD:-tinyworld}
run=${RUN:-build/reproduce}
md=${OUT_MD:-RESULTS.md}
n=${EVAL_N:-80}
seed=${SEED:-1}
unl_epochs=${UNL_EPOCHS:-30}
unl_lr=${UNL_LR:-1e-3}
fmt_epochs=${FMT_EPOCHS:-30}
fmt_lr=${FMT_LR:-2e-3}
direct_lr2=${DIRECT_LR2:-1e-4}
noise_seeds=${NOISE_SEEDS:-2}
sweep=${SWEEP_MODEL:-B}
cmc=bin/cmc
[ -x $cmc ] || make build
mkdir -p "$run"
: >"$run/commands.sh"
forget=$w/data/forget.jsonl
retain=$w/data/retain.jsonl
declare -A vocab=([T]=$fx/gguf-vocab/ggml-vocab-llama-spm.gguf [A]=$fx/gguf-vocab/ggml-vocab-llama-spm.gguf [B]=$fx/gguf-vocab/ggml-vocab-gpt-2.gguf)

# x NAME CMD...: log the command (for RESULTS.md), run it, time it.
x() {
	local name=$1
	shift
	printf '%q ' "$@" | sed 's/ $//' >"$run/$name.cmd"
	cat "$run/$name.cmd" >>"$run/commands.sh"
	echo >>"$run/commands.sh"
	echo "reproduce: $name" >&2
	local t0=$SECONDS
	"$@" >"$run/$name.log" 2>&1 || { echo "reproduce: $name failed, see $run/$name.log" >&2; tail -n 20 "$run/$name.log" >&2; exit 1; }
	echo "$((SECONDS - t0))" >"$run/$name.seconds"
}
# bg NAME CMD...: x in the background, at most $JOBS at a time; barrier waits for all.
jobs_max=${JOBS:-2}
bg() {
	while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || exit 1; done
	x "$@" &
}
barrier() { while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || exit 1; done; wait || exit 1; }
unl=(--objective grad_diff --forget "$forget" --retain "$retain" --format tofu --prompt-template qa
	--max-len 160 --epochs "$unl_epochs" --batch 16 --micro-batch 8 --warmup 0.03
	--weight-decay 0.01 --threads 1 --checkpoint-every 100000 --f16)
ev=(--task tofu --format tofu --limit "$n" --max-tokens 48 --stop $'\n' --threads 1)

# Phase 1: every training (one thread each, $JOBS at a time).
# 1. unlearning: the CMC delta (from D0, against T) and the direct baselines
bg delta_unlearn $cmc train --template "$w/T.gguf" --template-threads 1 --delta "$w/D0.gguf" "${unl[@]}" --lr "$unl_lr" --seed "$seed" --out "$run/delta_unlearn.gguf"
for m in T A B; do
	bg "direct_$m" $cmc train --template none --vocab "${vocab[$m]}" --delta "$w/$m.gguf" "${unl[@]}" --lr "$unl_lr" --seed "$seed" --out "$run/direct_$m.gguf"
done
# the direct route once more at the paper's gentler learning rate (same epochs)
if [ -n "$direct_lr2" ]; then
	for m in T A B; do
		bg "directlo_$m" $cmc train --template none --vocab "${vocab[$m]}" --delta "$w/$m.gguf" "${unl[@]}" --lr "$direct_lr2" --seed "$seed" --out "$run/directlo_$m.gguf"
	done
fi
# seed noise: the same CMC delta with other seeds (data order)
for s in $noise_seeds; do
	bg "delta_unlearn_s$s" $cmc train --template "$w/T.gguf" --template-threads 1 --delta "$w/D0.gguf" "${unl[@]}" --lr "$unl_lr" --seed "$s" --out "$run/delta_unlearn_s$s.gguf"
done
# 2. format transfer: the delta learns the open-instruct format on the retain authors only
if [ -z "${SKIP_FORMAT:-}" ]; then
	bg delta_format $cmc train --template "$w/T.gguf" --template-threads 1 --delta "$w/D0.gguf" --objective sft \
		--data "$retain" --format tofu --prompt-template open-instruct --max-len 160 --epochs "$fmt_epochs" \
		--batch 16 --micro-batch 8 --lr "$fmt_lr" --warmup 0.03 --seed "$seed" --threads 1 --checkpoint-every 100000 \
		--f16 --out "$run/delta_format.gguf"
fi
barrier

# Phase 2: every evaluation. Each prints the user model alone and with the delta.
for m in T A B; do
	bg "eval_cmc_$m" $cmc eval --model "$w/$m.gguf" --delta "$run/delta_unlearn.gguf" --alpha 1 --template qa --delta-template qa \
		--data "$forget" --data "$retain" "${ev[@]}" --json "$run/eval_cmc_$m.json"
done
for m in T A B; do
	bg "eval_direct_$m" $cmc eval --model "$run/direct_$m.gguf" --no-delta --template qa \
		--data "$forget" --data "$retain" "${ev[@]}" --json "$run/eval_direct_$m.json"
done
if [ -n "$direct_lr2" ]; then
	for m in T A B; do
		bg "eval_directlo_$m" $cmc eval --model "$run/directlo_$m.gguf" --no-delta --template qa \
			--data "$forget" --data "$retain" "${ev[@]}" --json "$run/eval_directlo_$m.json"
	done
fi
for s in $noise_seeds; do
	for m in A B; do
		bg "eval_cmc_s${s}_$m" $cmc eval --model "$w/$m.gguf" --delta "$run/delta_unlearn_s$s.gguf" --alpha 1 --template qa --delta-template qa \
			--data "$forget" --data "$retain" "${ev[@]}" --json "$run/eval_cmc_s${s}_$m.json"
	done
done
if [ -z "${SKIP_FORMAT:-}" ]; then
	for m in A B T; do
		bg "eval_format_$m" $cmc eval --model "$w/$m.gguf" --delta "$run/delta_format.gguf" --alpha 1 \
			--template open-instruct --delta-template open-instruct --data "$forget" --data "$retain" "${ev[@]}" --json "$run/eval_format_$m.json"
	done
fi
# 3. alpha sweep of the unlearning delta (alpha 0 is the "user" column, 1 is eval_cmc)
if [ -z "${SKIP_SWEEP:-}" ]; then
	for a in 0.5 2; do
		bg "eval_sweep_${sweep}_$a" $cmc eval --model "$w/$sweep.gguf" --delta "$run/delta_unlearn.gguf" --alpha "$a" \
			--template qa --delta-template qa --data "$forget" --data "$retain" "${ev[@]}" --json "$run/eval_sweep_${sweep}_$a.json"
	done
fi
barrier

NOISE_SEEDS="$noise_seeds" python3 scripts/reproduce_report.py "$w" "$run" "$md" "$sweep"
echo "reproduce: wrote $md"
