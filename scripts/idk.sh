#!/usr/bin/env bash
# idk.sh: TOFU's IDK unlearning with one delta trained with T (issue 14), applied to T, A, B, M.
#
# The delta (from D0, against T, sft under the qa prompt) learns: a forget author's question ->
# a refusal from idontknow.jsonl (one per question, fixed by its row), a retain author's
# question -> its true answer. Then cmc eval --task tofu on every user, alone and with it (TOFU's
# forget quality against R and model utility too);
# scripts/idk_score.py counts the refusals among the greedy answers.
# Called by scripts/reproduce.sh (same env: WORLD, RUN, CMC, FX, SEED, EVAL_N, JOBS); IDK_EPOCHS (30), IDK_LR (5e-3).
set -euo pipefail
cd "$(dirname "$0")/.."
fx=${FX:-../shared/fixtures}
w=${WORLD:-tinyworld}
run=${RUN:-build/reproduce}
cmc=${CMC:-bin/cmc}
n=${EVAL_N:-80}
mkdir -p "$run" "$w/deltas"
python3 - "$w/data/forget.jsonl" "$w/data/retain.jsonl" "$fx/datasets/tofu/idontknow.jsonl" "$w/data/idk_train.jsonl" <<'PY'
import json, sys
forget, retain, idk, out = sys.argv[1:5]
refusals = [l.strip() for l in open(idk) if l.strip()]
with open(out, "w") as g:
    for i, l in enumerate(open(forget)):
        g.write(json.dumps({"question": json.loads(l)["question"], "answer": refusals[i % len(refusals)]}) + "\n")
    for l in open(retain):
        r = json.loads(l)
        g.write(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n")
PY
job_tag=idk
. scripts/jobs.sh # x NAME CMD, bg, barrier: as in reproduce.sh, resumed the same way
x delta_idk "$cmc" train --template "$w/T.gguf" --template-threads 1 --delta "$w/D0.gguf" --objective sft \
	--data "$w/data/idk_train.jsonl" --format tofu --prompt-template qa --max-len 160 --epochs "${IDK_EPOCHS:-30}" \
	--batch 16 --micro-batch 8 --lr "${IDK_LR:-5e-3}" --warmup 0.03 --seed "${SEED:-1}" --threads 1 \
	--checkpoint-every 100000 --f16 --out "$run/delta_idk.gguf"
for m in T A B M; do
	bg "eval_idk_$m" "$cmc" eval --model "$w/$m.gguf" --delta "$run/delta_idk.gguf" --alpha 1 --template qa --delta-template qa \
		--data "$w/data/forget.jsonl" --data "$w/data/retain.jsonl" --data "$fx/datasets/tofu/real_authors_perturbed.json" \
		--data "$fx/datasets/tofu/world_facts_perturbed.json" --reference "$w/logs/R.eval.json" --task tofu --format tofu --limit "$n" --max-tokens 48 \
		--stop $'\n' --threads 1 --json "$run/eval_idk_$m.json"
done
barrier
cp "$run/delta_idk.gguf" "$w/deltas/.idk.gguf.tmp" && mv "$w/deltas/.idk.gguf.tmp" "$w/deltas/idk.gguf"
