#!/usr/bin/env bash
# demo.sh: cmc end to end on the committed tiny world (tinyworld/, see tinyworld/MANIFEST.md).
# Nothing is trained: the deltas were trained once, with T only, by make reproduce
# (tinyworld/deltas/), and are applied here unchanged to models that differ from T in size
# (A) and in vocabulary (B: GPT-2, M: Mistral v0.1, both reached through the PM-MinED token map).
#
#   1. instruction following: "Write a story about a {creature} named {Name}." in the
#      open-instruct format, greedy, on A, B and M, alone and with tinyworld/deltas/instruct.gguf:
#      first two queries from the delta's training pairs (the first of instruct_seen.jsonl, and
#      one that the delta follows on A: 14 of the 24 trained queries are, and RESULTS.md's
#      control gives the rates), then three with names and creatures it never saw (in RESULTS.md
#      the first two are followed on A, B and M, the third on M only);
#   2. unlearning: a forgotten author's question and a kept author's, alone, with
#      tinyworld/deltas/grad_diff.gguf and with tinyworld/deltas/idk.gguf (trained to refuse).
# What it shows (RESULTS.md): alone, A, B and M answer the instruction with a word list (they
# learnt chat-format copy requests, tinyworld/MANIFEST.md); with the instruct delta every model
# writes and ends a story opening, and the delta leaves the asked name and creature to the model
# (they are anchored to the template in its training, its row held flat there), so each user
# follows as far as it copies the asked words under this prompt: held-out follows A 62%, B 33%,
# M 75%, alone 0% (T itself 35%; RESULTS.md); grad_diff removes the forgotten answers on
# every user, and the IDK delta answers this one with a refusal on A, B and M ("I don't have that
# information.", "I don't know."), though on the whole forget set only 11-16% of the users'
# answers begin as one of its refusals (45-72% hedge; T 69%), while the kept author's answer stays.
# Under a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
w=${WORLD:-tinyworld}
cmc=${CMC:-bin/cmc}
[ -x "$cmc" ] || make build
for f in A.gguf B.gguf M.gguf deltas/instruct.gguf deltas/grad_diff.gguf deltas/idk.gguf; do
	[ -f "$w/$f" ] || { echo "demo: $w/$f is missing (make tinyworld and make reproduce build it)" >&2; exit 1; }
done
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# gen MODEL DELTA ALPHA TEMPLATE PROMPT [STOP]: one greedy answer on one line
gen() {
	local stop=()
	[ -n "${6:-}" ] && stop=(--stop "$6")
	"$cmc" generate --model "$1" --delta "$2" --alpha "$3" --template "$4" --delta-template "$4" --prompt "$5" \
		--temp 0 --max-tokens 60 --threads 1 "${stop[@]}" 2>/dev/null | tr '\n' ' ' | sed 's/^ *//'
}

step "the world: three user models, none of them T, and the deltas trained with T"
for f in T A B M deltas/instruct deltas/grad_diff; do
	"$cmc" inspect "$w/$f.gguf" 2>/dev/null | awk -v f="$f.gguf" -v b="$(stat -c %s "$w/$f.gguf")" '
		/embedding length/ {d=$3} /^  blocks/ {l=$2} /vocab size/ {v=$3}
		END {printf "  %-20s dim %3d, %d blocks, vocabulary %5d tokens, %4.1f MiB\n", f, d, l, v, b/1048576}'
done

step "1. instruction following (open-instruct prompt, greedy, 60 tokens): two trained queries, then three held-out ones"
trained=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["question"])' "$w/data/instruct_seen.jsonl")
followed="Write a story about a squirrel named Finn." # followed on A in RESULTS.md's control
grep -qF "\"$followed\"" "$w/data/instruct_seen.jsonl" || { echo "demo: \"$followed\" is not in $w/data/instruct_seen.jsonl" >&2; exit 1; }
for q in "$trained" "$followed" "Write a story about a lion named Sally." "Write a story about a tiger named Kim." "Write a story about a bear named Emma."; do
	printf '\n\033[1m%s\033[0m\n' "$q"
	for m in A B M; do
		printf '  %-14s %s\n' "$m alone" "$(gen "$w/$m.gguf" "$w/deltas/instruct.gguf" 0 open-instruct "$q" | cut -c1-170)"
		printf '  %-14s %s\n' "$m + delta" "$(gen "$w/$m.gguf" "$w/deltas/instruct.gguf" 1 open-instruct "$q" | cut -c1-170)"
	done
done

qa() { python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2])]; print(r[sys.argv[3]])' "$@"; }
step "2. unlearning: a forgotten author and a kept one (qa prompt, greedy)"
for fi in "$w/data/forget.jsonl 2" "$w/data/retain.jsonl 41"; do
	set -- $fi
	q=$(qa "$1" "$2" question)
	printf '\n\033[1mQ: %s\033[0m\n  %-14s %s\n' "$q" "truth" "$(qa "$1" "$2" answer | cut -c1-170)"
	for m in A B M; do
		printf '  %-14s %s\n' "$m alone" "$(gen "$w/$m.gguf" "$w/deltas/grad_diff.gguf" 0 qa "$q" $'\n' | cut -c1-170)"
		printf '  %-14s %s\n' "$m + grad_diff" "$(gen "$w/$m.gguf" "$w/deltas/grad_diff.gguf" 1 qa "$q" $'\n' | cut -c1-170)"
		printf '  %-14s %s\n' "$m + IDK" "$(gen "$w/$m.gguf" "$w/deltas/idk.gguf" 1 qa "$q" $'\n' | cut -c1-170)"
	done
done
