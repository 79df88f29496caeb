#!/usr/bin/env bash
# The main job, as far as the project goes today: a Qwen3-shaped base model from a seed, then the
# tokenizer, log-probs and generation on it. Everything runs on a CPU in well under a minute.
set -euo pipefail
posttrain=${1:-build/bin/posttrain}
out=${QUICKSTART_DIR:-runs/quickstart}
mkdir -p "$out"

if [ ! -d "$out/base-small" ]; then
  "$posttrain" init-base --preset small --seed 0 --out "$out/base-small"
fi
echo "--- tokenize"
echo '{"text": "<|im_start|>user\nWhat is 2+2?<|im_end|>"}' | "$posttrain" tokenize --model "$out/base-small"
echo "--- logprobs (per token, of an untrained base: about -log(151936) = -11.9)"
"$posttrain" logprobs --model "$out/base-small" --text "The quick brown fox jumps over the lazy dog."
echo "--- generate (greedy, then sampled; an untrained base produces noise)"
"$posttrain" generate --model "$out/base-small" --prompt "What is 2+2?" --chat --max-new-tokens 8
"$posttrain" generate --model "$out/base-small" --prompt "What is 2+2?" --chat --max-new-tokens 8 --temperature 0.8 --top-p 0.95 --seed 1
