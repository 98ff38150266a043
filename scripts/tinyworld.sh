#!/usr/bin/env bash
# tinyworld.sh: build the tiny world, round two (issue 14), from random init (see tinyworld/MANIFEST.md).
#
#   T   template  Llama-2 vocabulary (32000), dim 96, 4 layers           corpus T
#   A   user      Llama-2 vocabulary, larger: dim 128, 6 layers          corpus A
#   B   user      GPT-2 vocabulary (50257), dim 96, 4 layers             corpus T
#   M   user      Mistral-7B v0.1 vocabulary (32000), dim 128, 4 layers  corpus A
#   R   reference T's recipe on corpus T without the forget authors (TOFU's forget quality)
#   D0  delta     Llama-2 vocabulary, smaller than all: dim 48, 2 layers, TinyStories only
#   D1, D2        larger delta starts (dim 64, 3 layers; dim 96, 4 layers) for the size sweep
#
# T, A, B and M are plain language models (cmc train --template none) on TinyStories
# stories, Alpaca outputs as plain text and the facts of 12 TOFU authors (4 to be forgotten,
# 8 kept) as QA under cmc's qa prompt, as QA in two other phrasings and as prose
# biographies, with copy drills and chat-format copy requests (scripts/tinyworld_corpus.py). Corpus A is another subset in another order
# than corpus T. All trainings run at once, one thread each: on a shared 2-core
# machine this gets the most CPU; the total wall time is set by A.
# Every model is trained in F16 and stored as Q8_0 (D0, whose rows of 48 have no Q8_0
# blocks, stays F16), so that the whole world fits in 60 MiB.
#
# Env: OUT (default tinyworld), FX (fixtures), EPOCHS (3), ONLY (subset of "T A B M D0"),
# CMC (the cmc binary, default bin/cmc), SKIP_EVAL.
set -euo pipefail
cd "$(dirname "$0")/.."
fx=${FX:-../shared/fixtures}
out=${OUT:-tinyworld}
epochs=${EPOCHS:-3}
only=${ONLY:-"T A B M R D0 D1 D2"}
cmc=${CMC:-bin/cmc}
[ -x "$cmc" ] || make build
mkdir -p "$out/data" "$out/logs"
llama=$fx/gguf-vocab/ggml-vocab-llama-spm.gguf
gpt2=$fx/gguf-vocab/ggml-vocab-gpt-2.gguf
mistral=$fx/gguf-vocab/ggml-vocab-mistral-v1.gguf

# 1. the corpus, and the instruction pairs of make reproduce (deterministic; committed under tinyworld/data)
python3 scripts/tinyworld_corpus.py "$fx" "$out/data"
python3 scripts/instruct_pairs.py "$out/data/stories.jsonl" "$out/data"

# QA rows get cmc's qa prompt; text rows (empty question) get no prompt, so the loss covers all of them.
tpl=$'{{if .Query}}Question: {{.Query}}\nAnswer: {{end}}'

train() { # name vocab dim layers heads hidden lr seed epochs data
	local name=$1 vocab=$2 dim=$3 layers=$4 heads=$5 hidden=$6 lr=$7 seed=$8 ep=$9 data=${10}
	case " $only " in *" $name "*) ;; *) return 0 ;; esac
	local cmd=("$cmc" train --template none --vocab "$vocab" --delta new --dim "$dim" --layers "$layers"
		--heads "$heads" --hidden "$hidden" --data "$data" --format tofu --prompt-template "$tpl"
		--max-len 320 --epochs "$ep" --batch 8 --micro-batch 4 --lr "$lr" --warmup 0.03 --min-lr 1e-4
		--seed "$seed" --threads 1 --f16 --checkpoint "$out/logs/$name.ckpt" --checkpoint-every 100000 --out "$out/logs/$name.f16.gguf")
	printf '%q ' "${cmd[@]}" >"$out/logs/$name.cmd"
	echo >>"$out/logs/$name.cmd"
	local t0=$SECONDS
	"${cmd[@]}" >"$out/logs/$name.log" 2>&1
	echo "$((SECONDS - t0))" >"$out/logs/$name.seconds"
	rm -f "$out/logs/$name.ckpt" "$out/logs/$name.ckpt.loss.csv"
	mv "$out/logs/$name.f16.loss.csv" "$out/$name.loss.csv"
	mv "$out/logs/$name.f16.loss.png" "$out/$name.loss.png"
	if [ "$name" = D0 ]; then
		mv "$out/logs/$name.f16.gguf" "$out/$name.gguf"
	else
		"$cmc" quantize --threads 1 "$out/logs/$name.f16.gguf" "$out/$name.gguf" Q8_0 >>"$out/logs/$name.log" 2>&1
		rm -f "$out/logs/$name.f16.gguf"
	fi
	echo "tinyworld: $name done in $((SECONDS - t0)) s: $(tail -n 1 "$out/logs/$name.log")"
}

t0=$SECONDS
train A "$llama" 128 6 4 384 3e-3 11 "$epochs" "$out/data/pretrain_A.jsonl" &
train B "$gpt2" 96 4 4 256 3e-3 12 "$epochs" "$out/data/pretrain_T.jsonl" &
train M "$mistral" 128 4 4 352 3e-3 14 "$epochs" "$out/data/pretrain_A.jsonl" &
train T "$llama" 96 4 4 256 3e-3 10 "$epochs" "$out/data/pretrain_T.jsonl" &
train R "$llama" 96 4 4 256 3e-3 10 "$epochs" "$out/data/pretrain_R.jsonl" &
# the delta starts: brief pretraining on the renamed TinyStories only (they never see a TOFU answer)
train D0 "$llama" 48 2 4 128 3e-3 13 2 "$out/data/stories_renamed.jsonl" &
train D1 "$llama" 64 3 4 192 3e-3 15 2 "$out/data/stories_renamed.jsonl" &
train D2 "$llama" 96 4 4 256 3e-3 16 2 "$out/data/stories_renamed.jsonl" &
wait
echo "tinyworld: all built in $((SECONDS - t0)) s"

# 2. what each model knows alone: TOFU metrics of T, A, B, M under the qa prompt, in parallel
if [ -z "${SKIP_EVAL:-}" ]; then
	for m in T A B M R; do
		case " $only " in *" $m "*) ;; *) continue ;; esac
		"$cmc" eval --model "$out/$m.gguf" --no-delta --template qa --task tofu --format tofu --limit 80 --max-tokens 48 \
			--stop $'\n' --threads 1 --data "$out/data/forget.jsonl" --data "$out/data/retain.jsonl" \
			--json "$out/logs/$m.eval.json" >"$out/logs/$m.eval.log" 2>&1 &
	done
	wait
	# beyond the one prompt: the same questions in the open-instruct format no model saw; and a story
	for m in T A B M; do
		case " $only " in *" $m "*) ;; *) continue ;; esac
		"$cmc" eval --model "$out/$m.gguf" --no-delta --template open-instruct --task tofu --format tofu --limit 80 --max-tokens 48 \
			--stop $'\n' --threads 1 --data "$out/data/forget.jsonl" --data "$out/data/retain.jsonl" \
			--json "$out/logs/$m.eval_oi.json" >"$out/logs/$m.eval_oi.log" 2>&1 &
	done
	wait
fi
for m in T A B M R D0 D1 D2; do
	case " $only " in *" $m "*) ;; *) continue ;; esac
	"$cmc" generate --model "$out/$m.gguf" --no-delta --template raw --temp 0 --max-tokens 80 --threads 1 \
		--prompt "Once upon a time" >"$out/logs/$m.sample.txt" 2>/dev/null
done
# can each model copy a character from earlier in the text, in its own pretraining format
# (title), under the instruction experiment's prompt (instruct), and there with the story
# begun up to the name (named)?
for m in T A B M R; do
	case " $only " in *" $m "*) ;; *) continue ;; esac
	{
		python3 scripts/copy_probe.py "$cmc" "$out/$m.gguf" "$out/data/instruct_eval.jsonl" "$out/logs/$m.copy.json" title
		python3 scripts/copy_probe.py "$cmc" "$out/$m.gguf" "$out/data/instruct_eval.jsonl" "$out/logs/$m.copy_oi.json" instruct
		python3 scripts/copy_probe.py "$cmc" "$out/$m.gguf" "$out/data/instruct_eval.jsonl" "$out/logs/$m.copy_named.json" named
	} &
done
wait
echo "$((SECONDS - t0))" >"$out/logs/total.seconds"
python3 scripts/tinyworld_manifest.py "$out" || echo "tinyworld: the manifest failed (see above)"
echo "tinyworld: done in $((SECONDS - t0)) s; see $out/MANIFEST.md"
ls -la "$out"/*.gguf
