#!/usr/bin/env bash
# bench-chat.sh: does a long chat re-read its history? A 10-turn chat with
# cmc serve on the benchmark user model of bench-generate.sh (random Llama,
# 768 wide, 12 layers, Llama-2 vocabulary, F16) steered by a
# cross-vocabulary delta (Mistral-7B's vocabulary, PM-MinED map). Every turn
# sends the same-length new message; the script prints each turn's time to
# first token and usage, then
#   ratio_ttft_turn10_over_turn1   (goal: within 1.2)
#   ratio_prefilled_over_new       (tokens the user model decoded from the
#                                   prompts over the tokens it had not seen)
#   scripts/bench-chat.sh          # THREADS=2 TURNS=10 by default; NODELTA=1: no delta
set -euo pipefail
cd "$(dirname "$0")/.."

fx=${FIXTURES:-../shared/fixtures}
threads=${THREADS:-2}
turns=${TURNS:-10}
dir=build/bench
mkdir -p "$dir"
make -s build

mk() { [ -f "$dir/$1" ] || go run ./scripts/mkrandom --out "$dir/$1" "${@:2}"; }
mk user.gguf --vocab "$fx/gguf-vocab/ggml-vocab-llama-spm.gguf" --dim 768 --layers 12 --heads 12 --hidden 2048 --f16
mk delta-cross.gguf --vocab "$fx/gguf-vocab/ggml-vocab-mistral-v1.gguf" --dim 64 --layers 2 --heads 4 --hidden 172 --seed 2
bin/cmc map --user "$dir/user.gguf" --delta "$dir/delta-cross.gguf" --cache-dir "$dir/maps" >/dev/null

port=$((20000 + RANDOM % 20000))
# NODELTA=1 serves the user model alone: the baseline of how much of turn
# 10's extra time is the user model's attention over a longer history.
steer=(--delta "$dir/delta-cross.gguf")
[ -z "${NODELTA:-}" ] || steer=(--no-delta)
bin/cmc serve --model "$dir/user.gguf" "${steer[@]}" --template raw --delta-template open-instruct \
	--threads "$threads" --ctx 4096 --map-cache "$dir/maps" --addr "127.0.0.1:$port" 2>"$dir/serve.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
	sleep 0.2
done
echo "load: $(uptime)"
python3 - "$port" "$turns" <<'PY'
import json, sys, time, urllib.request

port, turns = sys.argv[1], int(sys.argv[2])
message = "Tell me one more thing about the little bird who lived in the old tree by the river."

def request(msgs):
    body = json.dumps({"model": "user", "messages": msgs, "temperature": 0, "max_tokens": 32,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    return urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                  {"Content-Type": "application/json"})

# A warm-up chat about something else: the server's first request pays
# one-time costs (compute buffers, the token map's first use) that are not
# what turn 1 against turn 10 compares.
urllib.request.urlopen(request([{"role": "user", "content": "Say hello to the old fox in the dark green wood."}])).read()

msgs, rows = [], []
for turn in range(1, turns + 1):
    msgs.append({"role": "user", "content": message})
    req = request(msgs)
    start, first, reply, usage = time.perf_counter(), None, "", None
    with urllib.request.urlopen(req) as resp:
        for line in resp:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for ch in chunk.get("choices", []):
                piece = ch.get("delta", {}).get("content") or ""
                if piece and first is None:
                    first = time.perf_counter() - start
                reply += piece
            usage = chunk.get("usage") or usage
    msgs.append({"role": "assistant", "content": reply})
    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    rows.append((turn, first or float("nan"), usage["prompt_tokens"], cached, usage["completion_tokens"]))
    print(f"turn {turn:2d}: ttft {first * 1000:7.1f} ms  prompt {usage['prompt_tokens']:5d}  cached {cached:5d}  completion {usage['completion_tokens']}")

prefilled = sum(p - c for _, _, p, c, _ in rows)
# Tokens the model had not seen: each prompt minus the previous prompt and
# the reply generated for it.
new = rows[0][2] + sum(max(0, rows[i][2] - rows[i - 1][2] - rows[i - 1][4]) for i in range(1, len(rows)))
print(f"ratio_ttft_turn{turns}_over_turn1 {rows[-1][1] / rows[0][1]:.3f}")
print(f"prefilled_tokens {prefilled} new_tokens {new} history_tokens_at_last_turn {rows[-1][2]}")
print(f"ratio_prefilled_over_new {prefilled / new:.3f}")
PY
