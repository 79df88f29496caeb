#!/usr/bin/env bash
# The main study, end to end on the CPU: the gold-preference testbed's data and trimmed tokenizer,
# the pre-trained testbed base (recipes/testbed/base.yaml, skipped when already completed), then
# the variant matrix recipes/matrices/testbed.yaml (SFT, DPO, reward model + PPO, reward model +
# GRPO, SL-CAI and RL-CAI; each followed by the eval hooks), the control checks and the report, then
# the base itself under the same evals and best-of-n on it against the matrix's reward model.
#
#   scripts/testbed-study.sh            the full study (runs/testbed/), 3 seeds, under 45 minutes on 2 cores
#   scripts/testbed-study.sh --tiny     the same pipeline on small budgets and 2 seeds (runs/testbed-tiny/),
#                                       a few minutes: it shows the machinery works, not the effects
#   --out DIR                           put everything under DIR instead
# Extra key=value arguments are passed on to `posttrain variants` (e.g. train.steps=30).
# POSTTRAIN names the binary (default build/bin/posttrain).
set -euo pipefail
cd "$(dirname "$0")/.."
posttrain=${POSTTRAIN:-build/bin/posttrain}
out=runs/testbed
out_given=""
base_overrides=()
matrix_overrides=()
best_of_n=(--option n=16)
while [ $# -gt 0 ]; do
  arg=$1
  shift
  case "$arg" in
    --out) out_given=$1; shift ;;
    --tiny)
      out=runs/testbed-tiny
      base_overrides+=(train.steps=40)
      best_of_n=(--option n=4 --option limit=16)
      matrix_overrides+=("seeds=[0, 1]" train.steps=4 evals.0.limit=24 evals.1.limit=16 variants.5.constitutional.max_prompts=8
                         variants.5.constitutional.max_new_tokens=12 variants.6.constitutional.max_prompts=8
                         variants.6.constitutional.max_new_tokens=12)
      ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *=*) matrix_overrides+=("$arg") ;;
    *) echo "testbed-study.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out_given" ] && out=$out_given
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
data=$out/data
# The recipes name runs/testbed/data; every path is set here so any --out works the same way.
base_overrides+=(base.tokenizer="$data/tokenizer" data.train="$data/corpus.jsonl" output_dir="$out/base")
matrix_overrides+=(output_dir="$out/variants" base="$out/base/final" data.sft="$data/sft.jsonl"
                   data.preference="$data/pairs.jsonl" data.prompts="$data/prompts.jsonl"
                   evals.0.data="$data/eval_prompts.jsonl" evals.1.data="$data/eval_refusal.jsonl"
                   evals.2.data="$data/eval_sycophancy.jsonl" redteam.gold_items="$data/eval_prompts.jsonl")

echo "=== 1/4 testbed data and trimmed tokenizer -> $data"
"$posttrain" testbed --out "$data" --seed 0 --length-bias 0.3 \
  --constitution recipes/constitutions/default.yaml > /dev/null

echo "=== 2/4 the fixed base: pre-training on $data/corpus.jsonl -> $out/base"
if grep -q '"status": "completed"' "$out/base/manifest.json" 2>/dev/null; then
  echo "(already completed: delete $out/base to train it again)"
else
  rm -rf "$out/base"
  "$posttrain" run recipes/testbed/base.yaml "${base_overrides[@]}"
fi

echo "=== 3/4 the variants, their evals, the controls and the report -> $out/variants"
"$posttrain" variants recipes/matrices/testbed.yaml "${matrix_overrides[@]}"

echo "=== 4/4 the base itself (no post-training) under the same evals, and best-of-n on it against the"
echo "    proxy reward model, scored by gold -> $out/base-evals"
limit=()
[ ${#best_of_n[@]} -gt 2 ] && limit=(--option limit=24)  # --tiny
"$posttrain" eval --model "$out/base/final" --suite gold --option data="$data/eval_prompts.jsonl" \
  --option max_new_tokens=24 "${limit[@]}" --out "$out/base-evals"
"$posttrain" eval --model "$out/base/final" --suite refusal --option data="$data/eval_refusal.jsonl" \
  "${limit[@]}" --out "$out/base-evals"
"$posttrain" eval --model "$out/base/final" --suite sycophancy --option data="$data/eval_sycophancy.jsonl" \
  --out "$out/base-evals"
"$posttrain" eval --model "$out/base/final" --suite best_of_n --option data="$data/eval_prompts.jsonl" \
  --option reward_model="$out/variants/reward/seed-0/final" --option max_new_tokens=24 "${best_of_n[@]}" \
  --out "$out/base-evals"
echo "report: $out/variants/report.md and report.html; the base's evals: $out/base-evals/evals/*.json"
