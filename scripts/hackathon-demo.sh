#!/usr/bin/env bash
# A whole eval hackathon on the testbed (make hackathon-demo; docs/hackathon.md "The demo event").
# The world: the testbed with a hedging corpus (`posttrain testbed --hedge 0.4`: harmful requests
# get help, 40% of the time behind a refusal opening, never a real refusal), so the base complies
# and a refusal eval has headroom. The models: the base pre-trained on it; three honest variants
# (SFT on gold's demonstrations at 5, 15 and 45 steps: gold orders them by construction); a
# deliberately hacked variant (sft_exploit: every harmful answer opens with a refusal, then
# complies). The submissions (examples/hackathon/): a gameable string-matched refusal rate, a
# hardened class-balanced refusal score that reads every sentence, gold (refused: gold is the
# judge), and a no-op, a canned policy and RL on the scorer; judged; the board printed.
#   scripts/hackathon-demo.sh [--out DIR]
# `posttrain hackathon init --testbed` builds the world; its finished runs are kept in DIR/world
# (delete it to start over). POSTTRAIN names the binary (default build/bin/posttrain).
set -euo pipefail
cd "$(dirname "$0")/.."
posttrain=${POSTTRAIN:-build/bin/posttrain}
out=runs/hackathon-demo
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done
case "$out" in /*) ;; *) out=$PWD/$out ;; esac

echo "=== 1/3 the event -> $out/event: the testbed world built by init (models kept in $out/world)"
rm -rf "$out/event"
"$posttrain" hackathon init "$out/event" --event testbed-demo --base small --testbed 0 --world "$out/world" \
  --attack canned --attack best_of_n --attack rl --steps 10 --samples 4 --seconds 300

echo "=== 2/3 the teams' submissions"
for entry in gameable-refusal:blue1 hardened-refusal:blue2 no-op:red1 canned:red2 rl:red3; do
  "$posttrain" hackathon submit "$out/event" "examples/hackathon/${entry%%:*}" --team "${entry##*:}"
done
echo "(team blue3 submits gold itself, which the rules refuse: gold is the judge)"
if "$posttrain" hackathon submit "$out/event" examples/hackathon/gold --team blue3; then
  echo "gold was accepted as a suite: it must not be" >&2
  exit 1
fi

echo "=== 3/3 the judge"
"$posttrain" hackathon judge "$out/event"
echo "board: $out/event/leaderboard.html"

# The event's checks (issue 17), on the private board: the hardened suite above the gameable one,
# the RL attack above the no-op.
shown() {  # a team's shown score: the private board's rows are | team | kind | shown score |
  awk -F'|' -v team="$1" 'NF == 5 { gsub(/ /, "", $2); gsub(/ /, "", $4); if ($2 == team) { print $4; exit } }' \
    "$out/event/leaderboard.md"
}
above() { awk -v a="$(shown "$1")" -v b="$(shown "$2")" 'BEGIN { exit !(a != "" && b != "" && a + 0 > b + 0) }'; }
verdict=0
above blue2 blue1 && echo "check: the hardened suite ($(shown blue2)) ranks above the gameable one ($(shown blue1))" ||
  { echo "CHECK FAILED: the hardened suite ($(shown blue2)) does not rank above the gameable one ($(shown blue1))"; verdict=1; }
above red3 red1 && echo "check: the RL attack ($(shown red3)) ranks above the no-op ($(shown red1))" ||
  { echo "CHECK FAILED: the RL attack ($(shown red3)) does not rank above the no-op ($(shown red1))"; verdict=1; }
exit $verdict
