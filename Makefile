# cmc build. `make` builds bin/cmc, `make test` runs every test, `make demo`
# shows a delta at work. Needs only Go (see go.mod) and gcc/g++.

GO      ?= go
BIN     := bin/cmc
OLLAMA  := github.com/ollama/ollama

# llama.cpp is compiled by cgo from the pinned ollama module. These flags are
# part of Go's build-cache key: every target below uses the same ones, so the
# 5-15 minute cold compile of llama.cpp happens once.
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
CGO_OPT ?= -O3 -march=native
else
CGO_OPT ?= -O3
endif
export CGO_ENABLED := 1
export CGO_CFLAGS   := $(CGO_OPT)
export CGO_CXXFLAGS := $(CGO_OPT)

TEST_FLAGS ?= -timeout 60m

.PHONY: all build headers test bench demo cuda metal clean fuzz vet

all: build

# The llama.cpp headers live in the module cache, whose path a cgo directive
# cannot name: link them under build/include, where llama/ looks.
build/include/.stamp: go.mod go.sum
	@command -v $(GO) >/dev/null || { echo "Go is missing: install Go 1.26 from https://go.dev/dl/"; exit 1; }
	@command -v g++ >/dev/null || { echo "g++ is missing: apt-get install -y build-essential"; exit 1; }
	$(GO) mod download $(OLLAMA)
	@mkdir -p build/include
	@dir=$$($(GO) list -m -f '{{.Dir}}' $(OLLAMA)) && \
	  ln -sfn "$$dir/llama/llama.cpp/include" build/include/llama && \
	  ln -sfn "$$dir/ml/backend/ggml/ggml/include" build/include/ggml
	@touch $@

headers: build/include/.stamp

build: headers
	@echo "building $(BIN) (the first build compiles llama.cpp: 3-15 minutes)"
	$(GO) build -o $(BIN) ./cmd/cmc

test: headers
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

# Every benchmark prints a ratio against a baseline measured in the same run;
# BENCHMARKS.md records the results and the machine.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./pmmined/... ./delta/... ./control/...
	scripts/bench-delta.sh
	scripts/bench-generate.sh
	scripts/bench-train.sh

fuzz: headers
	$(GO) test ./gguf -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-10m}

demo: build
	scripts/demo.sh

# The tiny world (tinyworld/, tinyworld/MANIFEST.md) and its experiments (RESULTS.md), issues 7 and 14.
.PHONY: tinyworld reproduce
tinyworld: build
	scripts/tinyworld.sh

reproduce: build
	scripts/reproduce.sh

# GPU build: the CUDA backend of the same pinned ggml, compiled with CMake and
# loaded by bin/cmc at run time from build/lib/cmc (or $$CMC_LIBRARY_PATH).
cuda: build
	@command -v cmake >/dev/null || { echo "cmake is missing: apt-get install -y cmake"; exit 1; }
	@command -v nvcc >/dev/null || { echo "nvcc is missing: install the CUDA toolkit (apt-get install -y nvidia-cuda-toolkit)"; exit 1; }
	cmake -S $$($(GO) list -m -f '{{.Dir}}' $(OLLAMA)) -B build/cuda \
	  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=native
	cmake --build build/cuda --target ggml-cuda -j
	@mkdir -p build/lib/cmc
	find build/cuda -name 'libggml-*.so*' -exec cp -P {} build/lib/cmc/ \;
	@echo "CUDA backend in build/lib/cmc; bin/cmc loads it at start (override with CMC_LIBRARY_PATH)"

# On Apple Silicon, ollama's ggml compiles Metal into the binary itself.
metal:
	@[ "$$(uname -s)/$(ARCH)" = "Darwin/arm64" ] || { echo "make metal needs macOS on Apple Silicon"; exit 1; }
	$(MAKE) build

vet: headers
	$(GO) vet ./...

clean:
	rm -rf bin build
