#!/usr/bin/env bash
# reproduce.sh: the experiments of issue 14 on the committed tiny world (tinyworld/, see
# tinyworld/MANIFEST.md); writes RESULTS.md. Everything runs on CPU, one thread per job.
#
#   1. instruction following: one delta trained with T only on instruction-to-story pairs
#      (scripts/instruct_pairs.py, open-instruct prompt), applied unchanged to T, A, B, M and
#      stories260K on held-out names and creatures (scripts/instruct_eval.py);
#      baseline: each model fine-tuned directly on the same pairs. Every instruct delta trains with
#      --template-jitter INS_JITTER (T at a random temperature per sequence) and --anchor-flatness
#      INS_FLAT (its row held flat where the pairs leave the words to T); two more are trained, each
#      without one of them, for comparison, on T, A, B and M.
#   2. unlearning (grad_diff): one delta trained with T on the forget authors, applied to
#      T, A, B and M; baseline: each model unlearned directly with the same objective and budget.
#   3. unlearning (IDK): one delta trained with T to refuse the forget questions (scripts/idk.sh).
#   Unlearning is scored with TOFU's metrics: forget quality against R (the world's model trained
#   without the forget authors, its eval in WORLD/logs/R.eval.json) and model utility.
#   4. delta size: the instruct delta from each of the three starts D0, D1, D2 (INS_START is the
#      one of sections 1 and 4's alpha sweep, the committed deltas/instruct.gguf), on A, B and M;
#      alpha: the instruct delta at 0.5, 0.75 and 2 on A, B and M, the grad_diff delta at 0.5 and 2 on B; training length: the main instruct delta trained for
#      each of INS_EPOCH_SWEEP's epoch counts instead of INS_EPOCHS, on T, A, B and M.
#
# A job that finished in an earlier run into the same RUN with the same command (its NAME.seconds
# exists and NAME.cmd is unchanged) is not run again, so an interrupted reproduce resumes; the
# inputs' contents are not compared, so after changing a script or the world use FRESH=1 (or
# another RUN), which starts over.
#
# Env: WORLD (tinyworld), RUN (build/reproduce), OUT_MD (RESULTS.md), CMC (bin/cmc), JOBS (2),
# SEED (1), INS_START (D1), INS_EPOCHS (4), INS_JITTER (0.8; 0 for none, and no comparison), INS_FLAT (100; 0 likewise), INS_EPOCH_SWEEP ("2 8 16"; "" for none), INS_LR (3e-3), FT_EPOCHS (1), FT_LR (1e-3), UNL_EPOCHS (30),
# UNL_LR (1e-3), EVAL_N (80), INS_SEEDS ("2": extra seeds of the instruct delta, on A, B, M; "" for none),
# SKIP_UNLEARN, DIRECT (1: also unlearn each model directly with grad_diff, a baseline that adds
# about 20 minutes), SKIP_IDK (3. IDK unlearning, scripts/idk.sh), WAIT_FOR_MODELS (start while the world is still being built: wait for each model file).
set -euo pipefail
cd "$(dirname "$0")/.."
fx=${FX:-../shared/fixtures}
w=${WORLD:-tinyworld}
run=${RUN:-build/reproduce}
md=${OUT_MD:-RESULTS.md}
n=${EVAL_N:-80}
seed=${SEED:-1}
ins_start=${INS_START:-D1}
ins_epochs=${INS_EPOCHS:-4}
ins_sweep=$(printf '%s\n' ${INS_EPOCH_SWEEP-2 8 16} | grep -vx "$ins_epochs" || true)
ins_lr=${INS_LR:-3e-3}
ins_jitter=${INS_JITTER:-0.8}
ins_flat=${INS_FLAT:-100}
ft_epochs=${FT_EPOCHS:-1}
ft_lr=${FT_LR:-1e-3}
unl_epochs=${UNL_EPOCHS:-30}
unl_lr=${UNL_LR:-1e-3}
ins_seeds=${INS_SEEDS-2}
cmc=${CMC:-bin/cmc}
[ -x "$cmc" ] || make build
[ -z "${FRESH:-}" ] || rm -rf "$run"
mkdir -p "$run" "$w/deltas"
: >"$run/commands.sh"
s260=$fx/models/stories260K/stories260K.gguf
forget=$w/data/forget.jsonl
retain=$w/data/retain.jsonl
pairs=$w/data/instruct_train.jsonl
queries=$w/data/instruct_eval.jsonl
seen=$w/data/instruct_seen.jsonl # the control: queries the delta was trained on
declare -A model=([T]=$w/T.gguf [A]=$w/A.gguf [B]=$w/B.gguf [M]=$w/M.gguf [S]=$s260)
# the fluency judge of each writer: a model that did not write the story
declare -A judge=([T]=$w/A.gguf [A]=$w/T.gguf [B]=$w/A.gguf [M]=$w/A.gguf [S]=$w/A.gguf)

# the job runner: x NAME CMD (run and time one job, resumed if it finished before), bg, barrier
job_tag=reproduce
. scripts/jobs.sh
# need FILE: with WAIT_FOR_MODELS set, wait for a model that make tinyworld is still writing.
need() {
	[ -n "${WAIT_FOR_MODELS:-}" ] || return 0
	while [ ! -s "$1" ]; do sleep 10; done
}

# the instruction pairs: the world's data (make tinyworld writes them with scripts/instruct_pairs.py)
for f in "$pairs" "$queries" "$seen"; do
	need "$f"
	[ -s "$f" ] || { echo "reproduce: $f is missing: make tinyworld (scripts/tinyworld.sh) writes it" >&2; exit 1; }
done
need "$w/D0.gguf"

# Phase 1: every training (one thread each, $JOBS at a time). A model fine-tuned directly
# brings its own tokenizer (--vocab MODEL: the vocabulary it was trained with, settings included).
ins=(--objective sft --data "$pairs" --format tofu --prompt-template open-instruct --max-len 160 --batch 8
	--micro-batch 8 --warmup 0.03 --threads 1 --checkpoint-every 100000 --f16)
# the instruct deltas' recipe: the pairs' and, against T, its jitter and the anchor's flatness
insd=("${ins[@]}" --template-jitter "$ins_jitter" --anchor-flatness "$ins_flat")
unl=(--objective grad_diff --forget "$forget" --retain "$retain" --format tofu --prompt-template qa
	--max-len 160 --epochs "$unl_epochs" --batch 16 --micro-batch 8 --warmup 0.03
	--weight-decay 0.01 --threads 1 --checkpoint-every 100000 --f16 --lr "$unl_lr" --seed "$seed")
# instruct_delta NAME START EPOCHS SEED RECIPE...: an instruct delta from WORLD/START.gguf,
# trained against T into RUN/NAME.gguf
instruct_delta() {
	local name=$1 start=$2 ep=$3 s=$4
	shift 4
	bg "$name" "$cmc" train --template "$w/T.gguf" --template-threads 1 --delta "$w/$start.gguf" "$@" \
		--epochs "$ep" --lr "$ins_lr" --seed "$s" --template-cache "$run/tcache" --out "$run/$name.gguf"
}
# what needs only T and the delta starts first, so that it can overlap a world still training (WAIT_FOR_MODELS)
need "$w/T.gguf"
instruct_delta delta_instruct "$ins_start" "$ins_epochs" "$seed" "${insd[@]}"
[ "$ins_jitter" = 0 ] || instruct_delta delta_instruct_j0 "$ins_start" "$ins_epochs" "$seed" "${ins[@]}" --anchor-flatness "$ins_flat"
[ "$ins_flat" = 0 ] || instruct_delta delta_instruct_f0 "$ins_start" "$ins_epochs" "$seed" "${ins[@]}" --template-jitter "$ins_jitter"
sizes=$(printf '%s\n' D0 D1 D2 | grep -vx "$ins_start")
for d in $sizes; do
	need "$w/$d.gguf"
	instruct_delta "delta_instruct_$d" "$d" "$ins_epochs" "$seed" "${insd[@]}"
done
for e in $ins_sweep; do
	instruct_delta "delta_instruct_e$e" "$ins_start" "$e" "$seed" "${insd[@]}"
done
for s in $ins_seeds; do
	instruct_delta "delta_instruct_s$s" "$ins_start" "$ins_epochs" "$s" "${insd[@]}"
done
[ -n "${SKIP_UNLEARN:-}" ] || bg delta_unlearn "$cmc" train --template "$w/T.gguf" --template-threads 1 --delta "$w/D0.gguf" "${unl[@]}" --out "$run/delta_unlearn.gguf"
for m in T S M B A; do
	need "${model[$m]}"
	bg "ft_$m" "$cmc" train --template none --vocab "${model[$m]}" --delta "${model[$m]}" "${ins[@]}" \
		--epochs "$ft_epochs" --lr "$ft_lr" --seed "$seed" --out "$run/ft_$m.gguf"
	case $m in S) continue ;; esac
	if [ -z "${SKIP_UNLEARN:-}" ] && [ -n "${DIRECT:-}" ]; then
		bg "direct_$m" "$cmc" train --template none --vocab "${model[$m]}" --delta "${model[$m]}" "${unl[@]}" --out "$run/direct_$m.gguf"
	fi
done
barrier

# Phase 2: every evaluation.
need "$w/logs/R.eval.json"
# ins_eval NAME QUERIES USER MODEL DELTA|none [PREFIX...]: scripts/instruct_eval.py of MODEL (USER's
# file or one made from it) into RUN/NAME.json, judged by USER's judge; PREFIX (env VAR=...) runs it
ins_eval() {
	local name=$1 qs=$2 u=$3 mf=$4 d=$5
	shift 5
	bg "$name" "$@" python3 scripts/instruct_eval.py "$cmc" "$qs" "$run/$name.json" "$mf" "$d" "${judge[$u]}"
}
for m in A B M T S; do
	ins_eval "ins_alone_$m" "$queries" "$m" "${model[$m]}" none
	ins_eval "ins_delta_$m" "$queries" "$m" "${model[$m]}" "$run/delta_instruct.gguf"
	ins_eval "ins_ft_$m" "$queries" "$m" "$run/ft_$m.gguf" none
	case $m in S) continue ;; esac
	[ "$ins_jitter" = 0 ] || ins_eval "ins_delta_j0_$m" "$queries" "$m" "${model[$m]}" "$run/delta_instruct_j0.gguf"
	[ "$ins_flat" = 0 ] || ins_eval "ins_delta_f0_$m" "$queries" "$m" "${model[$m]}" "$run/delta_instruct_f0.gguf"
	for e in $ins_sweep; do
		ins_eval "ins_delta_e${e}_$m" "$queries" "$m" "${model[$m]}" "$run/delta_instruct_e$e.gguf"
	done
	case $m in T) continue ;; esac
	for d in $sizes; do
		ins_eval "ins_delta_${d}_$m" "$queries" "$m" "${model[$m]}" "$run/delta_instruct_$d.gguf"
	done
	for s in $ins_seeds; do
		ins_eval "ins_delta_s${s}_$m" "$queries" "$m" "${model[$m]}" "$run/delta_instruct_s$s.gguf"
	done
done
# the control, on A, B, M
for m in A B M; do
	ins_eval "seen_alone_$m" "$seen" "$m" "${model[$m]}" none
	ins_eval "seen_delta_$m" "$seen" "$m" "${model[$m]}" "$run/delta_instruct.gguf"
done
# 4. alpha sweeps (alpha 0 and 1 are the rows above): the instruct delta on A, B and M, on the
# held-out queries and on the trained ones (where an alpha can be chosen without the held-out
# ones); the unlearning delta on B
for a in 0.5 0.75 2; do
	for m in A B M; do
		ins_eval "sweep_ins_${m}_$a" "$queries" "$m" "${model[$m]}" "$run/delta_instruct.gguf" env INSTRUCT_ALPHA="$a"
		ins_eval "sweep_seen_${m}_$a" "$seen" "$m" "${model[$m]}" "$run/delta_instruct.gguf" env INSTRUCT_ALPHA="$a"
	done
done
for a in 0.5 2; do
	[ -n "${SKIP_UNLEARN:-}" ] || bg "sweep_unl_B_$a" "$cmc" eval --model "${model[B]}" --delta "$run/delta_unlearn.gguf" --alpha "$a" --template qa --delta-template qa \
		--data "$forget" --data "$retain" --task tofu --format tofu --limit "$n" --max-tokens 48 --stop $'\n' --threads 1 --json "$run/sweep_unl_B_$a.json"
done
# the fluency scale: the reference openings themselves under each judge
python3 - "$queries" "$run/reference.jsonl" <<'PY'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as g:
    for l in f:
        g.write(json.dumps({"question": "", "answer": json.loads(l)["answer"]}) + "\n")
PY
for m in A T; do
	bg "ref_ppl_$m" "$cmc" eval --model "$w/$m.gguf" --no-delta --template raw --task nll --format tofu --threads 1 \
		--data "$run/reference.jsonl" --json "$run/ref_ppl_$m.json"
done
# TOFU's sets: forget and retain, and the real-authors and world-facts sets of model utility;
# forget quality against R, which never saw the forget authors
tofu=(--data "$forget" --data "$retain" --data "$fx/datasets/tofu/real_authors_perturbed.json"
	--data "$fx/datasets/tofu/world_facts_perturbed.json" --reference "$w/logs/R.eval.json")
ev=(--task tofu --format tofu --limit "$n" --max-tokens 48 --stop $'\n' --threads 1 "${tofu[@]}")
if [ -z "${SKIP_UNLEARN:-}" ]; then
	for m in A B M T; do
		bg "eval_cmc_$m" "$cmc" eval --model "${model[$m]}" --delta "$run/delta_unlearn.gguf" --alpha 1 --template qa --delta-template qa \
			"${ev[@]}" --json "$run/eval_cmc_$m.json"
		[ -z "${DIRECT:-}" ] || bg "eval_direct_$m" "$cmc" eval --model "$run/direct_$m.gguf" --no-delta --template qa \
			"${ev[@]}" --json "$run/eval_direct_$m.json"
	done
fi
barrier
cp "$run/delta_instruct.gguf" "$w/deltas/instruct.gguf.new" && mv "$w/deltas/instruct.gguf.new" "$w/deltas/instruct.gguf"
[ -f "$run/delta_unlearn.gguf" ] && cp "$run/delta_unlearn.gguf" "$w/deltas/grad_diff.gguf"

[ -n "${SKIP_IDK:-}" ] || WORLD="$w" RUN="$run" CMC="$cmc" FX="$fx" SEED="$seed" EVAL_N="$n" scripts/idk.sh
CMC="$cmc" INS_SEEDS="$ins_seeds" EVAL_N="$n" FX="$fx" python3 scripts/reproduce_report.py "$w" "$run" "$md"
echo "reproduce: wrote $md"
