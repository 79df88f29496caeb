// method: grpo. Group-based policy optimisation without a value model: each prompt gets G sampled
// responses, each scored by the recipe's reward functions; an advantage estimator turns the rewards
// of a group into one advantage per response (grpo: group-normalised, rloo: leave-one-out,
// reinforce++: batch-normalised), shared by all of its tokens. The loss per response token is PPO's
// clipped surrogate plus, when the KL is placed in the loss, beta * k3(policy, reference):
//   L = sum_tokens [ -min(rho A, clip(rho, 1 - eps, 1 + eps) A) + beta KL_t ] / (response tokens of the step)
// with rho = pi / pi_old. The sum runs over every rank and micro-batch of the step, so the result does
// not depend on how the step is split.
#include <torch/torch.h>

#include <chrono>
#include <cmath>

#include "core/yaml_reader.h"
#include "models/autocast.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "models/lora.h"
#include "trainers/loop.h"
#include "trainers/rl_math.h"
#include "trainers/rollouts.h"

namespace posttrain {

void train_grpo(RunContext& ctx) {
  const TrainSpec& spec = ctx.recipe.train;
  YamlSection options(ctx.recipe.method_options, "grpo", ctx.recipe.file, ctx.recipe.overrides);
  const int64_t group = options.get<int64_t>("group_size", 4);
  const std::string estimator_name = options.get<std::string>("estimator", "grpo");
  const double beta = options.get<double>("kl_coef", 0.04);
  const std::string kl_estimator = options.get<std::string>("kl_estimator", "k3");
  const double clip_eps = options.get<double>("clip_eps", 0.2);
  const int64_t epochs = options.get<int64_t>("epochs", 1);
  const double missing_eos_penalty = options.get<double>("missing_eos_penalty", 0.0);
  const GenerationOptions sampling = read_sampling_options(options);
  const int64_t generation_batch = read_generation_batch(options, ctx);
  const AdvantageEstimator* estimator = find_advantage_estimator(estimator_name);
  if (estimator == nullptr) {
    std::string known;
    for (const auto& n : advantage_estimator_names()) known += " " + n;
    options.fail_at("estimator",
                    "\"" + estimator_name + "\" is not a registered advantage estimator (known:" + known + ")");
  }
  const std::string kl_placement = options.get<std::string>("kl_in", estimator->default_kl_placement);
  if (group < 2) options.fail_at("group_size", "must be at least 2 (advantages compare samples of one prompt)");
  if (beta < 0) options.fail_at("kl_coef", "must be >= 0");
  if (kl_estimator != "k1" && kl_estimator != "k3") options.fail_at("kl_estimator", "must be k1 or k3");
  if (kl_placement != "loss" && kl_placement != "reward") options.fail_at("kl_in", "must be loss or reward");
  if (clip_eps <= 0) options.fail_at("clip_eps", "must be positive");
  if (epochs < 1) options.fail_at("epochs", "must be at least 1");
  RewardMix rewards(options.raw("rewards"), "grpo.rewards", ctx.recipe.file, ctx.recipe.overrides,
                    RewardSetup{spec.device, ctx.only_check_options});
  options.finish();
  if (ctx.only_check_options) return;

  LMTraining t = setup_lm_training(ctx, "prompts");
  QwenForCausalLM reference{nullptr};
  if (beta > 0) {
    reference = reference_model(ctx, t);
  }
  const int64_t per_rank = spec.batch_size / ctx.world_size;  // batch_size counts prompts
  for (int64_t step = t.start_step; step < spec.steps; ++step) {
    StepStats stats;
    // 1. Rollouts: G responses to each of this rank's prompts, from the current policy.
    auto clock = std::chrono::steady_clock::now();
    std::vector<double> entropies;
    const auto rollouts = step_rollouts(ctx, t, step, group, sampling, generation_batch, &entropies);
    stats.rank0_values["time/generate_s"] = seconds_since(clock);

    // 2. No-grad pass: log-probs of the sampled tokens under the sampling policy and the reference.
    clock = std::chrono::steady_clock::now();
    std::vector<double> sequence_kl;  // per rollout: sum over its tokens of k1 = log pi - log ref
    const std::vector<RolloutBatch> micro_batches =
        score_rollouts(t, reference ? reference.get() : nullptr, rollouts, group, spec.micro_batch_size,
                       sampling.temperature, &sequence_kl);
    // The KL a reward pays: the sum over the response of the chosen estimator (REINFORCE++'s default
    // k3 included), where the logged `kl` stays k1.
    const std::vector<double> reward_kl = kl_placement == "reward" && kl_estimator != "k1"
                                              ? sequence_kl_estimate(micro_batches, rollouts.size(), kl_estimator)
                                              : sequence_kl;
    double rank_tokens = 0;
    for (const auto& mb : micro_batches) rank_tokens += mb.mask.sum().item<double>();

    // 3. Rewards, then advantages. The KL to the reference is either subtracted from the reward here
    // or added to the loss below.
    std::vector<std::pair<std::string, double>> component_means;
    std::vector<double> reward = rewards.score(rollouts, &component_means);
    for (size_t i = 0; i < rollouts.size(); ++i) {
      if (!rollouts[i].stopped) reward[i] -= missing_eos_penalty;
      stats.metric_sums["reward/mean"] += reward[i];
      if (reference && kl_placement == "reward") reward[i] -= beta * reward_kl[i];
    }
    double sum = 0, sum_sq = 0;
    for (double r : reward) {
      sum += r;
      sum_sq += r * r;
    }
    const Moments moments = global_moments(ctx, sum, sum_sq, static_cast<double>(reward.size()));
    const double mean = moments.mean,  // std with Bessel's correction, as the group std
        std = std::sqrt(moments.variance * moments.count / std::max(1.0, moments.count - 1));
    const auto advantages =
        estimator->advantages(torch::tensor(reward, torch::kFloat64).view({per_rank, group}), mean, std)
            .view({-1})
            .to(t.model->device(), torch::kFloat32);  // [rollouts]
    const double global_tokens = std::max(1.0, ctx.dist->all_reduce_sum(rank_tokens));
    stats.rank0_values["time/score_s"] = seconds_since(clock);

    // 4. Updates: `epochs` passes over the rollouts, one optimizer update each.
    clock = std::chrono::steady_clock::now();
    for (int64_t epoch = 0; epoch < epochs; ++epoch) {
      double epoch_loss = 0, clipped = 0;
      for (const auto& mb : micro_batches) {
        const int64_t B = static_cast<int64_t>(mb.rows.size());
        auto logp = batch_token_logprobs(*t.model, mb.batch, t.bf16_autocast, nullptr, sampling.temperature)
                        .view({B, -1});  // [B, T-1]
        auto rows_advantage = advantages.index_select(0, torch::tensor(mb.rows, torch::kInt64).to(advantages.device()))
                                  .unsqueeze(1);  // [B, 1]
        auto ratio = torch::exp(logp - mb.old_logp);
        auto per_token = clipped_surrogate_loss(logp, mb.old_logp, rows_advantage, clip_eps);
        if (reference && kl_placement == "loss")
          per_token = per_token + beta * kl_estimate(kl_estimator, logp, mb.ref_logp);
        auto loss = (per_token * mb.mask).sum() / global_tokens;
        loss.backward();
        epoch_loss += loss.item<double>();
        clipped += (clip_active(ratio, rows_advantage, clip_eps) * mb.mask).sum().item<double>();
      }
      if (epoch + 1 < epochs) {
        apply_update(ctx, t, step, epoch_loss);
      } else {
        stats.loss = epoch_loss;
        // A token-weighted mean over every rank: finish_step divides the sum over ranks by the
        // global rollout count (metric_count), so each rank adds clipped x rollouts / tokens.
        stats.metric_sums["clip_fraction"] =
            clipped * static_cast<double>(rollouts.size() * static_cast<size_t>(ctx.world_size)) / global_tokens;
      }
    }
    add_rollout_metrics(stats, rollouts, sequence_kl, entropies, component_means);
    for (const auto& mb : micro_batches)
      stats.sequence_length = std::max(stats.sequence_length, mb.batch.input_ids.size(1));
    stats.rank0_values["time/update_s"] = seconds_since(clock);
    stats.rank0_values["reward/std"] = std;  // of the rewards the estimator saw (after an in-reward KL)
    finish_step(ctx, t, step, stats);
  }
  finish_training(ctx, t);
}

namespace {
const bool registered =
    (register_trainer("grpo", train_grpo,
                      "group RL without a critic: grpo / rloo / reinforce++ advantages (grpo.estimator)", "prompts"),
     true);
}

}  // namespace posttrain
