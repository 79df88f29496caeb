#!/usr/bin/env bash
# The red-team study (make redteam): every attack on every shipped suite, from the testbed's
# pre-trained base: gold (held-out prompts), refusal (balanced, with the string matcher) and the
# refusal rate on the harmful half with canned, best_of_n, prefix_search and rl; mc and sycophancy
# with choice_dpo. Results: OUT/redteam/*/redteam.json and the lines printed (docs/redteam.md).
#   scripts/redteam-study.sh [--out DIR]     (default runs/redteam-study; reuses runs/testbed's base)
set -euo pipefail
cd "$(dirname "$0")/.."
posttrain=${POSTTRAIN:-build/bin/posttrain}
out=runs/redteam-study
testbed=runs/testbed
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --testbed) testbed=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--testbed STUDY_DIR]" >&2; exit 2 ;;
  esac
done
data=$testbed/data
mkdir -p "$out"

echo "=== 1/3 the testbed data and its pre-trained base (reused when complete) -> $testbed"
[ -f "$data/testbed.json" ] || "$posttrain" testbed --seed 0 --out "$data"
if ! grep -q '"status": "completed"' "$testbed/base/manifest.json" 2>/dev/null; then
  rm -rf "$testbed/base"
  "$posttrain" run recipes/testbed/base.yaml base.tokenizer="$data/tokenizer" data.train="$data/corpus.jsonl" \
    output_dir="$testbed/base"
fi

echo "=== 2/3 the harmful half of the refusal set (a refusal rate) -> $out/harmful.jsonl"
grep '"unsafe"' "$data/eval_refusal.jsonl" > "$out/harmful.jsonl"

echo "=== 3/3 the attacks -> $out/redteam"
common=(--policy "$testbed/base/final" --gold-items "$data/eval_prompts.jsonl" --seed 0
        --attack canned --attack best_of_n --attack prefix_search --attack rl
        --samples 8 --steps 30 --attack-option rl.lr=1e-4)
"$posttrain" redteam --suite gold --option data="$data/eval_prompts.jsonl" --option max_new_tokens=24 \
  "${common[@]}" --out "$out/redteam/gold"
"$posttrain" redteam --suite refusal --option data="$data/eval_refusal.jsonl" "${common[@]}" \
  --out "$out/redteam/refusal"
"$posttrain" redteam --suite refusal --option data="$out/harmful.jsonl" "${common[@]}" \
  --out "$out/redteam/refusal-harmful"
# The log-likelihood suites: choice_dpo toward the credited option (pairs: scorer) and toward the
# surface feature that best predicts it on the attack split (pairs: auto).
for suite in mc sycophancy; do
  for pairs in scorer auto; do
    "$posttrain" redteam --suite $suite --option data="$data/eval_$suite.jsonl" --policy "$testbed/base/final" \
      --gold-items "$data/eval_prompts.jsonl" --seed 0 --attack choice_dpo --steps 30 \
      --attack-option choice_dpo.pairs=$pairs --attack-option choice_dpo.lr=1e-4 --out "$out/redteam/$suite-$pairs"
  done
done
echo "results: $out/redteam/{gold,refusal,refusal-harmful,mc-scorer,mc-auto,sycophancy-scorer,sycophancy-auto}/redteam.json"
