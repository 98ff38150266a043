#!/usr/bin/env bash
# GPU check of cmc's CUDA path, for a machine with an NVIDIA GPU, CMake and
# nvcc but no Go (such as the device machine some tasks are lent).
#
#   scripts/device-check.sh prepare   # here: bin/cmc, the pinned ggml sources
#                                     # and the test models into build/device/
#   scripts/device-check.sh run       # there, from the repository root
#
# `run` builds the CUDA backend of the same pinned ggml with CMake for the
# GPU it finds, loads it into bin/cmc through CMC_LIBRARY_PATH, compares the
# GPU's and the CPU's held-out NLL (the mean of every position's log-prob,
# so a wrong logit anywhere shows) on stories260K and a tiny-world model, and
# times greedy generation with --gpu-layers -1 against the CPU. It prints one
# line per check and exits non-zero if any fails; about 5 minutes, most of it
# the CUDA compile. Until it has passed on a GPU, the README says CUDA is
# unverified.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=build/device

case "${1:-}" in
prepare)
	make build
	ollama=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama)
	rm -rf "$dev" && mkdir -p "$dev/models"
	# The top-level CMakeLists of the module builds ggml and its backends
	# exactly as ollama does; only its ggml tree and cmake helpers travel.
	mkdir -p "$dev/src/ml/backend/ggml"
	cp "$ollama/CMakeLists.txt" "$dev/src/"
	cp -r "$ollama/ml/backend/ggml/ggml" "$dev/src/ml/backend/ggml/"
	[ -d "$ollama/cmake" ] && cp -r "$ollama/cmake" "$dev/src/"
	chmod -R u+w "$dev/src"
	cp bin/cmc "$dev/cmc"
	cp ../shared/fixtures/models/stories260K/stories260K.gguf "$dev/models/"
	cp tinyworld/A.gguf "$dev/models/"
	head -c 4000 ../shared/fixtures/datasets/tinystories/tinystories_val_sample.txt >"$dev/heldout.txt"
	du -sh "$dev"
	echo "now: run 'bash scripts/device-check.sh run' on the GPU machine, carrying $dev"
	;;
run)
	nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
	arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
	cmake -S "$dev/src" -B "$dev/cuda" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" >"$dev/cmake.log" 2>&1 ||
		{ tail -30 "$dev/cmake.log"; exit 1; }
	cmake --build "$dev/cuda" --target ggml-cuda -j "$(nproc)" >"$dev/build.log" 2>&1 ||
		{ tail -30 "$dev/build.log"; exit 1; }
	mkdir -p "$dev/lib"
	find "$dev/cuda" -name 'libggml-*.so*' -exec cp -P {} "$dev/lib/" \;
	export CMC_LIBRARY_PATH=$PWD/$dev/lib
	"$dev/cmc" inspect "$dev/models/stories260K.gguf" | grep -i -A3 device || true
	fail=0
	for m in stories260K A; do
		model=$dev/models/$m.gguf
		# cmc eval --json writes rows {file, metric, user, ...}: take the NLL.
		nll() {
			"$dev/cmc" eval --task nll --model "$model" --data "$dev/heldout.txt" --gpu-layers "$1" --json "$dev/nll.json" >/dev/null
			python3 -c 'import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows.get("results", rows) if isinstance(rows, dict) else rows
print(next(r["user"] for r in rows if "nll" in r["metric"].lower()))' "$dev/nll.json"
		}
		cpu=$(nll 0)
		gpu=$(nll -1)
		ok=$(awk -v a="$cpu" -v b="$gpu" 'BEGIN { d = a - b; if (d < 0) d = -d; print (d <= 1e-3 * (a < 0 ? -a : a) + 1e-4) ? "ok" : "FAIL" }')
		echo "nll $m: cpu $cpu gpu $gpu $ok"
		[ "$ok" = ok ] || fail=1
		for layers in 0 -1; do
			start=$(date +%s.%N)
			"$dev/cmc" generate --model "$model" --prompt "Once upon a time" --temp 0 --max-tokens 200 --gpu-layers "$layers" >/dev/null
			end=$(date +%s.%N)
			echo "generate $m --gpu-layers $layers: $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f s for 200 tokens", e - s }')"
		done
	done
	exit $fail
	;;
*)
	sed -n '2,16p' "$0"
	exit 2
	;;
esac
