// method: reward. A Bradley-Terry reward model: the base's body with a scalar head `score` read at
// the last token of prompt + response (its <|im_end|>), trained so that chosen outscores rejected:
//   loss = -log sigmoid(r_chosen - r_rejected - margin) + center * (r_chosen + r_rejected)^2
// (with a soft label q, "preference" in the data, the first term is q times itself plus (1 - q) times
// the same with chosen and rejected swapped)
// `center` (TRL's center_rewards_coefficient) keeps rewards near 0, so scores are comparable across
// runs. A held-out share of the pairs, never trained on, gives the pairwise accuracy.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "core/yaml_reader.h"
#include "models/autocast.h"
#include "trainers/loop.h"
#include "trainers/preference_losses.h"

namespace posttrain {

namespace {

// Rewards [N] of dataset examples (one row each).
torch::Tensor example_rewards(QwenForCausalLMImpl& model, const TokenizedDataset& data,
                              const std::vector<int64_t>& examples, int32_t pad_id, bool bf16_autocast) {
  const LMBatch batch = make_lm_batch(data, examples, pad_id);
  Bf16Autocast autocast(bf16_autocast);
  return last_token_scores(model, batch.input_ids, batch.key_padding).select(1, 0).to(torch::kFloat32);  // [N]
}

// The pairs' soft labels q [P] when the data has them, else undefined (every label is hard).
torch::Tensor soft_labels(const TokenizedDataset& data, const std::vector<int64_t>& pairs,
                          const torch::Device& device) {
  if (data.preferences.empty()) return {};
  std::vector<float> q;
  for (int64_t p : pairs) q.push_back(data.preferences[static_cast<size_t>(p)]);
  return torch::tensor(q).to(device);
}

struct HeldOut {
  double accuracy = 0, loss = 0, margin = 0;
  int64_t pairs = 0;
};

// Every rank scores its share of the held-out pairs; the sums are added across ranks.
HeldOut evaluate(RunContext& ctx, LMTraining& t, const std::vector<int64_t>& eval_pairs, double margin, double center) {
  torch::NoGradGuard no_grad;
  double correct = 0, loss = 0, margins = 0;
  std::vector<int64_t> mine;
  for (size_t i = static_cast<size_t>(ctx.rank); i < eval_pairs.size(); i += static_cast<size_t>(ctx.world_size))
    mine.push_back(eval_pairs[i]);
  for (const auto& chunk : split_micro_batches(mine, ctx.recipe.train.micro_batch_size)) {
    auto r = example_rewards(*t.model, t.data, pair_examples(chunk), t.tokenizer.pad_id(), t.bf16_autocast)
                 .view({-1, 2});  // [P, 2]
    auto diff = r.select(1, 0) - r.select(1, 1);
    correct += (diff > 0).sum().item<double>();
    loss += bradley_terry_loss(r.select(1, 0), r.select(1, 1), soft_labels(t.data, chunk, r.device()), margin, center)
                .sum()
                .item<double>();
    margins += diff.sum().item<double>();
  }
  HeldOut out;
  out.pairs = static_cast<int64_t>(eval_pairs.size());
  const double n = std::max<double>(1, static_cast<double>(out.pairs));
  out.accuracy = ctx.dist->all_reduce_sum(correct) / n;
  out.loss = ctx.dist->all_reduce_sum(loss) / n;
  out.margin = ctx.dist->all_reduce_sum(margins) / n;
  return out;
}

}  // namespace

void train_reward(RunContext& ctx) {
  const TrainSpec& spec = ctx.recipe.train;
  YamlSection options(ctx.recipe.method_options, "reward", ctx.recipe.file, ctx.recipe.overrides);
  const double margin = options.get<double>("margin", 0.0);
  const double center = options.get<double>("center_coefficient", 0.0);
  const double eval_fraction = options.get<double>("eval_fraction", 0.1);
  const int64_t eval_every = options.get<int64_t>("eval_every", 0);
  if (center < 0) options.fail_at("center_coefficient", "must be >= 0");
  if (eval_fraction < 0 || eval_fraction >= 1) options.fail_at("eval_fraction", "must be in [0, 1)");
  if (eval_every < 0) options.fail_at("eval_every", "must be >= 0 (0: only at the end)");
  options.finish();
  if (ctx.only_check_options) return;

  LMTraining t = setup_lm_training(ctx, "preference", /*classifier_labels=*/1);
  // Held-out pairs: the last eval_fraction of a seeded permutation, the same on every rank.
  const int64_t pair_count = t.data.size() / 2;
  std::vector<int64_t> order(static_cast<size_t>(pair_count));
  for (int64_t i = 0; i < pair_count; ++i) order[static_cast<size_t>(i)] = i;
  uint64_t state = ctx.recipe.seed ^ 0x5eed5eedULL;
  for (int64_t i = pair_count - 1; i > 0; --i)  // Fisher-Yates with splitmix64
    std::swap(order[static_cast<size_t>(i)], order[splitmix64(state) % static_cast<uint64_t>(i + 1)]);
  const int64_t eval_count = static_cast<int64_t>(std::ceil(eval_fraction * static_cast<double>(pair_count)));
  if (pair_count - eval_count < 1)
    throw UserError(ctx.recipe.data.train + ": " + std::to_string(pair_count) +
                    " pairs leave none to train on with reward.eval_fraction=" + std::to_string(eval_fraction));
  const std::vector<int64_t> train_pairs(order.begin(), order.end() - eval_count);
  const std::vector<int64_t> eval_pairs(order.end() - eval_count, order.end());
  ctx.manifest["reward"] = {{"train_pairs", train_pairs.size()}, {"eval_pairs", eval_pairs.size()}};

  auto log_eval = [&](int64_t step) {
    if (eval_pairs.empty()) return;
    const HeldOut held = evaluate(ctx, t, eval_pairs, margin, center);
    ctx.log_metrics({{"step", step},
                     {"eval/accuracy", held.accuracy},
                     {"eval/loss", held.loss},
                     {"eval/margin", held.margin},
                     {"eval/pairs", held.pairs}});
    ctx.manifest["reward"]["eval_accuracy"] = held.accuracy;
  };

  for (int64_t step = t.start_step; step < spec.steps; ++step) {
    StepStats stats;
    std::vector<int64_t> pairs;  // batch_size counts pairs; the draws index the training pairs
    for (int64_t i : rank_share(ctx, step_batch(ctx, static_cast<int64_t>(train_pairs.size()), step)))
      pairs.push_back(train_pairs[static_cast<size_t>(i)]);
    for (const auto& micro : split_micro_batches(pairs, spec.micro_batch_size)) {
      const auto examples = pair_examples(micro);
      auto r = example_rewards(*t.model, t.data, examples, t.tokenizer.pad_id(), t.bf16_autocast).view({-1, 2});
      auto chosen = r.select(1, 0), rejected = r.select(1, 1);  // [P]
      auto per_pair = bradley_terry_loss(chosen, rejected, soft_labels(t.data, micro, chosen.device()), margin, center);
      // Sum over this micro-batch / pairs in the whole step: micro-steps and ranks add up to the mean.
      auto loss = per_pair.sum() / static_cast<double>(spec.batch_size);
      loss.backward();
      stats.loss += loss.item<double>();
      for (int64_t e : examples) stats.tokens += t.data.length(e);
      for (int64_t e : examples) stats.sequence_length = std::max(stats.sequence_length, t.data.length(e));
      add_pair_reward_metrics(stats, chosen, rejected);
    }
    finish_step(ctx, t, step, stats);
    if (eval_every > 0 && (step + 1) % eval_every == 0 && step + 1 < spec.steps) log_eval(step + 1);
  }
  log_eval(spec.steps);
  finish_training(ctx, t);
}

namespace {
const bool registered =
    (register_trainer("reward", train_reward, "reward model: Bradley-Terry on preference pairs, scalar head `score`",
                      "preference"),
     true);
}

}  // namespace posttrain
