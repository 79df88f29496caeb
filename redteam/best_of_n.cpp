// best_of_n: n answers per item from the starting policy, keep the one the scorer likes best. The
// first answer is the policy's greedy one (so n = 1 is the starting policy itself); the others are
// sampled at `temperature`, each item from its own seeded stream. No training: it measures how much
// of the scorer's favour is within the policy's reach by selection alone.
#include <algorithm>

#include "core/error.h"
#include "redteam/attack.h"

namespace posttrain {

namespace {

AttackOutput run_best_of_n(const AttackInput& in, double temperature) {
  if (!in.policy) throw UserError("attack best_of_n needs a starting policy (--policy)");
  const int64_t n = in.budget.samples > 0 ? in.budget.samples : 8;
  AttackOutput out;
  std::vector<double> best_scores;
  for (size_t k = 0; k < in.eval_items.size(); ++k) {
    out.responses.push_back(in.start_responses[in.eval_items[k]]);
    best_scores.push_back(in.scorer.score(in.eval_items[k], out.responses.back()));
  }
  for (int64_t s = 1; s < n; ++s) {
    // Stream s * items + k: every (sample, item) draws its own stream, whatever the batch.
    const auto samples = policy_answers(*in.policy, in.scorer, in.eval_items, temperature, in.seed,
                                        static_cast<uint64_t>(s) * in.scorer.size());
    for (size_t k = 0; k < in.eval_items.size(); ++k) {
      const double score = in.scorer.score(in.eval_items[k], samples[k]);
      if (score > best_scores[k]) best_scores[k] = score, out.responses[k] = samples[k];
    }
    out.curve.push_back({{"step", s + 1}, {"attack_score", score_responses(in.scorer, in.eval_items, out.responses)}});
  }
  out.details["n"] = n;
  out.details["temperature"] = temperature;
  return out;
}

const bool registered = [] {
  register_attack(
      "best_of_n",
      [](YamlSection& options) -> Attack {
        const double temperature = options.get<double>("temperature", 1.0);
        if (!(temperature > 0) || temperature > 10) options.fail_at("temperature", "must be in (0, 10]");
        return [temperature](const AttackInput& in) { return run_best_of_n(in, temperature); };
      },
      {"n samples per item (budget.samples, default 8; the first is greedy), keep the scorer's favourite", true});
  return true;
}();

}  // namespace

}  // namespace posttrain
