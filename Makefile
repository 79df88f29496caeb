# Thin wrapper: every target installs what it needs first, so each works on a fresh Debian 12 machine.
#   make quickstart   deps + tokenizer + build, then the main job (scripts/quickstart.sh)
#   make test         deps + tokenizer + build, then every test (ctest)
#   make study        the testbed study: base, seven post-training variants x 3 seeds, evals, report (< 45 min)
#   make study-tiny   the same pipeline on small budgets (a few minutes)
#   make redteam      the red-team study: every attack on every attackable suite from the testbed base
#   make hackathon-demo  an eval hackathon on the testbed world built by hackathon init --testbed, judged and checked (docs/hackathon.md)
#   make bench        benchmarks in bench/ (results go to docs/performance.md by hand)
#   make fuzz         libFuzzer + ASan on every parser of outside input (FUZZ_SECONDS each; FUZZ_TARGETS)
BUILD_DIR ?= build
JOBS ?= 2
FUZZ_SECONDS ?= 60

.PHONY: deps build test quickstart study study-tiny redteam hackathon-demo bench fuzz format clean

deps:
	bash scripts/install-deps.sh
	bash scripts/fetch-tokenizer.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

quickstart: build
	bash scripts/quickstart.sh $(BUILD_DIR)/bin/posttrain

study: build
	POSTTRAIN=$(BUILD_DIR)/bin/posttrain bash scripts/testbed-study.sh

study-tiny: build
	POSTTRAIN=$(BUILD_DIR)/bin/posttrain bash scripts/testbed-study.sh --tiny

redteam: build
	POSTTRAIN=$(BUILD_DIR)/bin/posttrain bash scripts/redteam-study.sh

hackathon-demo: build
	POSTTRAIN=$(BUILD_DIR)/bin/posttrain bash scripts/hackathon-demo.sh

bench: build
	$(BUILD_DIR)/bin/bench_tokenizer
	$(BUILD_DIR)/bin/bench_model --preset small
	$(BUILD_DIR)/bin/bench_model --preset qwen2.5-0.5b --batch 1 --seq 512 --new-tokens 16
	$(BUILD_DIR)/bin/bench_decode --preset qwen2.5-0.5b
	$(BUILD_DIR)/bin/bench_sft --preset small
	$(BUILD_DIR)/bin/bench_sft --preset qwen2.5-0.5b --batch 4 --micro 2 --steps 4
	$(BUILD_DIR)/bin/bench_sft --preset qwen2.5-0.5b --batch 4 --micro 2 --steps 4 --lora 16
	$(BUILD_DIR)/bin/bench_rollouts --preset small

fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD_DIR)
