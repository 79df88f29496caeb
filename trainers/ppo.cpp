// method: ppo. RLHF with PPO (Ziegler et al. 2019, Ouyang et al. 2022). Per step:
//   1. sample responses to the step's prompts from the policy (KV-cache generator, seeded);
//   2. no-grad pass: log-probs under the sampling policy and the frozen reference, values V(s_t)
//      from the critic: a separate Qwen body with a scalar head on every position (critic: separate),
//      or a scalar head on the policy's own final hidden states (critic: shared);
//   3. per-token rewards: r_t = -beta * KL_t (when the KL is placed in the reward), plus the score of
//      the recipe's reward functions on the response's last token (its <|im_end|> when it stopped;
//      there are no tokens after it); missing <|im_end|> costs missing_eos_penalty;
//   4. GAE(gamma, lambda) advantages; returns = advantages + values, taken BEFORE the advantages are
//      whitened (over the whole global batch);
//   5. `epochs` passes over `minibatches` minibatches, each one optimizer update of both models:
//      policy: clipped surrogate -min(rho A, clip(rho, 1-eps, 1+eps) A) (+ beta KL_t if KL in loss);
//      critic: clipped value loss 0.5 max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)
//      (shared body: one backward of L_policy + vf_coef L_value);
//      both summed over response tokens / response tokens of the minibatch (all ranks).
// beta is fixed, or adaptive (kl_target > 0): beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "core/yaml_reader.h"
#include "models/autocast.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "models/lora.h"
#include "trainers/checkpointing.h"
#include "trainers/loop.h"
#include "trainers/rl_math.h"
#include "trainers/rollouts.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

// V(s_t) at every next-token position: the critic's scalar head on each hidden state, [B, T-1].
torch::Tensor token_values(QwenForCausalLMImpl& critic, const LMBatch& batch, bool bf16_autocast) {
  Bf16Autocast autocast(bf16_autocast);
  const auto device = critic.device();
  const int64_t B = batch.input_ids.size(0), T = batch.input_ids.size(1);
  auto hidden = critic.hidden_states(batch.input_ids.to(device), batch.positions.to(device),
                                     causal_mask(batch.key_padding.to(device), B, T, 0, device));  // [B, T, H]
  auto h = hidden.narrow(1, 0, T - 1);
  return critic.score->forward(h.to(critic.score->weight.scalar_type())).squeeze(-1).to(torch::kFloat32);
}

// A shared-body critic's head and AdamW state, as a checkpoint of <critic_dir> (written under a
// .partial name, then renamed; only the newest keep_last are kept).
void save_value_head(const std::string& critic_dir, int64_t step,
                     const std::vector<std::pair<std::string, torch::Tensor>>& params, const AdamW& optimizer,
                     int64_t keep_last) {
  const fs::path dir = checkpoint_dir(critic_dir, step), partial = dir.string() + ".partial";
  fs::remove_all(partial);
  fs::create_directories(partial);
  RemoveOnUnwind remove_partial_on_failure(partial.string());
  auto tensors = params;
  for (const auto& item : optimizer.state_tensors()) tensors.push_back(item);
  write_safetensors((partial / "value_head.safetensors").string(), tensors);
  write_file_atomic((partial / "trainer_state.json").string(),
                    nlohmann::json({{"step", step}, {"optimizer_steps", optimizer.steps_taken()}}).dump() + "\n");
  fs::remove_all(dir);
  fs::rename(partial, dir);
  prune_checkpoints(critic_dir, keep_last);
}

void load_value_head(const std::string& dir, std::vector<std::pair<std::string, torch::Tensor>>& params,
                     AdamW& optimizer) {
  auto tensors = read_safetensors(dir + "/value_head.safetensors");
  torch::NoGradGuard no_grad;
  std::vector<std::pair<std::string, torch::Tensor>> state;
  for (auto& [name, tensor] : tensors) {
    bool is_param = false;
    for (auto& [param_name, param] : params)
      if (param_name == name) {
        param.copy_(tensor);
        is_param = true;
      }
    if (!is_param) state.emplace_back(name, tensor);
  }
  optimizer.load_state_tensors(state, dir + "/value_head.safetensors");
  const auto trainer_state = nlohmann::json::parse(read_file(dir + "/trainer_state.json"));
  optimizer.set_steps_taken(trainer_state.at("optimizer_steps").get<int64_t>());
}

struct PpoBatch {
  RolloutBatch rollout;
  torch::Tensor old_values;  // [B, T-1]
  torch::Tensor advantages;  // [B, T-1], whitened
  torch::Tensor returns;  // [B, T-1], value targets
};

}  // namespace

void train_ppo(RunContext& ctx) {
  const TrainSpec& spec = ctx.recipe.train;
  YamlSection options(ctx.recipe.method_options, "ppo", ctx.recipe.file, ctx.recipe.overrides);
  const int64_t samples = options.get<int64_t>("samples_per_prompt", 1);
  double beta = options.get<double>("kl_coef", 0.05);
  const double kl_target = options.get<double>("kl_target", 0.0);
  const double kl_horizon = options.get<double>("kl_horizon", 10000.0);
  const std::string kl_placement = options.get<std::string>("kl_in", "reward");
  // k1 per token in the reward (the classic RLHF penalty); k3 in the loss (low variance, >= 0).
  const std::string kl_estimator = options.get<std::string>("kl_estimator", kl_placement == "loss" ? "k3" : "k1");
  const double gamma = options.get<double>("gamma", 1.0);
  const double lambda = options.get<double>("lambda", 0.95);
  const double clip_eps = options.get<double>("clip_eps", 0.2);
  const double value_clip = options.get<double>("value_clip", 0.2);
  const double critic_lr_scale = options.get<double>("critic_lr_scale", 1.0);
  const std::string critic_mode = options.get<std::string>("critic", "separate");
  const std::string critic_init = options.get<std::string>("critic_init", "base");
  const double vf_coef = options.get<double>("vf_coef", 0.1);
  const int64_t epochs = options.get<int64_t>("epochs", 2);
  const int64_t minibatches = options.get<int64_t>("minibatches", 1);
  const double missing_eos_penalty = options.get<double>("missing_eos_penalty", 0.0);
  const GenerationOptions sampling = read_sampling_options(options);
  const int64_t generation_batch = read_generation_batch(options, ctx);
  if (samples < 1) options.fail_at("samples_per_prompt", "must be at least 1");
  if (beta < 0) options.fail_at("kl_coef", "must be >= 0");
  if (kl_target < 0) options.fail_at("kl_target", "must be >= 0 (0: fixed kl_coef)");
  if (kl_horizon <= 0) options.fail_at("kl_horizon", "must be positive");
  if (kl_estimator != "k1" && kl_estimator != "k3") options.fail_at("kl_estimator", "must be k1 or k3");
  if (kl_placement != "loss" && kl_placement != "reward") options.fail_at("kl_in", "must be loss or reward");
  if (gamma < 0 || gamma > 1) options.fail_at("gamma", "must be in [0, 1]");
  if (lambda < 0 || lambda > 1) options.fail_at("lambda", "must be in [0, 1]");
  if (clip_eps <= 0) options.fail_at("clip_eps", "must be positive");
  if (value_clip <= 0) options.fail_at("value_clip", "must be positive");
  if (critic_lr_scale <= 0) options.fail_at("critic_lr_scale", "must be positive");
  if (critic_mode != "separate" && critic_mode != "shared") options.fail_at("critic", "must be separate or shared");
  if (critic_mode == "shared" && critic_init != "base")
    options.fail_at("critic_init",
                    "a shared critic lives on the policy's body; critic_init applies to critic: separate");
  if (vf_coef <= 0) options.fail_at("vf_coef", "must be positive");
  if (epochs < 1) options.fail_at("epochs", "must be at least 1");
  const int64_t per_rank = spec.batch_size / ctx.world_size;  // batch_size counts prompts
  if (minibatches < 1 || per_rank % minibatches != 0 || (per_rank / minibatches) % spec.micro_batch_size != 0)
    options.fail_at("minibatches",
                    "must split each rank's " + std::to_string(per_rank) +
                        " prompts into equal minibatches of whole micro-batches (train.micro_batch_size " +
                        std::to_string(spec.micro_batch_size) + ")");
  RewardMix rewards(options.raw("rewards"), "ppo.rewards", ctx.recipe.file, ctx.recipe.overrides,
                    RewardSetup{spec.device, ctx.only_check_options});
  options.finish();
  if (ctx.only_check_options) return;

  LMTraining t = setup_lm_training(ctx, "prompts");
  if (t.method_state.contains("kl_coef")) beta = t.method_state["kl_coef"].get<double>();  // resumed
  QwenForCausalLM reference = reference_model(ctx, t);
  // The critic, with its own AdamW: separate, the base's body (or a reward model's) with a scalar
  // head; shared, a scalar head [1, hidden] (+ bias) on the policy's final hidden states.
  const bool shared = critic_mode == "shared";
  LMTraining critic{t.tokenizer};
  torch::nn::Linear value_head{nullptr};
  if (shared) {
    value_head = torch::nn::Linear(torch::nn::LinearOptions(t.model->config.hidden_size, 1).bias(true));
    torch::NoGradGuard no_grad;
    auto generator = at::detail::createCPUGenerator(ctx.recipe.seed + 1);
    value_head->weight.copy_(at::normal(0.0, t.model->config.initializer_range, value_head->weight.sizes(), generator,
                                        torch::TensorOptions().dtype(torch::kFloat32)));
    value_head->bias.zero_();
    value_head->to(t.model->device());
    critic.params = {{"value_head.weight", value_head->weight}, {"value_head.bias", value_head->bias}};
  } else {
    LoadOptions critic_load;
    critic_load.device = t.model->device();
    critic_load.classifier_labels = 1;
    critic_load.head_seed = ctx.recipe.seed + 1;
    critic.model = load_model(critic_init == "base" ? ctx.base_dir : critic_init, critic_load);
    critic.model->train();
    for (const auto& item : critic.model->named_parameters()) critic.params.emplace_back(item.key(), item.value());
  }
  critic.optimizer = std::make_unique<AdamW>(critic.params, spec);
  const std::string critic_dir = ctx.run_dir + "/critic";
  if (t.start_step > 0) {  // the critic's checkpoint is written just before the policy's, same step
    if (shared)
      load_value_head(checkpoint_dir(critic_dir, t.start_step), critic.params, *critic.optimizer);
    else
      load_training_checkpoint(checkpoint_dir(critic_dir, t.start_step), *critic.model, *critic.optimizer);
  }
  auto save_critic = [&](int64_t steps_done) {
    if (ctx.rank != 0) return;
    if (shared)
      save_value_head(critic_dir, steps_done, critic.params, *critic.optimizer, ctx.recipe.checkpoint.keep_last);
    else
      save_training_checkpoint(*critic.model, *critic.optimizer, steps_done, critic_dir, ctx.tokenizer_dir,
                               ctx.recipe.checkpoint.keep_last);
  };
  // V(s_t) [B, T-1]; `policy_hidden` is the policy's [B, T-1, H] for the shared head.
  auto values_of = [&](const LMBatch& batch, const torch::Tensor& policy_hidden) {
    if (shared) return value_head->forward(policy_hidden.to(torch::kFloat32)).squeeze(-1);
    return token_values(*critic.model, batch, t.bf16_autocast);
  };

  for (int64_t step = t.start_step; step < spec.steps; ++step) {
    StepStats stats;
    // 1. Rollouts: responses to each of this rank's prompts, from the current policy.
    auto clock = std::chrono::steady_clock::now();
    std::vector<double> entropies;
    const auto rollouts = step_rollouts(ctx, t, step, samples, sampling, generation_batch, &entropies);
    stats.rank0_values["time/generate_s"] = seconds_since(clock);

    // 2. No-grad pass: sampling-policy and reference log-probs, critic values.
    clock = std::chrono::steady_clock::now();
    std::vector<std::pair<std::string, double>> component_means;
    std::vector<double> score = rewards.score(rollouts, &component_means);
    std::vector<double> sequence_kl;
    std::vector<torch::Tensor> hidden;  // shared critic: the policy's hidden states per micro-batch
    std::vector<RolloutBatch> scored = score_rollouts(t, reference.get(), rollouts, samples, spec.micro_batch_size,
                                                      sampling.temperature, &sequence_kl, shared ? &hidden : nullptr);
    std::vector<PpoBatch> batches;
    double adv_sum = 0, adv_sq = 0, adv_count = 0;
    for (size_t m = 0; m < scored.size(); ++m) {
      torch::NoGradGuard no_grad;
      PpoBatch pb;
      pb.rollout = std::move(scored[m]);
      const RolloutBatch& mb = pb.rollout;
      pb.old_values = values_of(mb.batch, shared ? hidden[m] : torch::Tensor()) * mb.mask;
      // 3. Token rewards: -beta KL_t on every response token, the score on the last one.
      auto kl = kl_estimate(kl_estimator, mb.old_logp, mb.ref_logp) * mb.mask;  // [B, T-1]
      auto token_rewards = kl_placement == "reward" ? -beta * kl : torch::zeros_like(kl);
      const int64_t Tm1 = mb.mask.size(1);
      auto last =
          (torch::arange(Tm1, torch::TensorOptions().dtype(torch::kInt64).device(mb.mask.device())).unsqueeze(0) *
           mb.mask.to(torch::kInt64))
              .argmax(1);  // [B]
      std::vector<double> row_scores;
      for (int64_t row : mb.rows) {
        const auto i = static_cast<size_t>(row);
        row_scores.push_back(score[i] - (rollouts[i].stopped ? 0.0 : missing_eos_penalty));
      }
      token_rewards.scatter_add_(
          1, last.unsqueeze(1),
          torch::tensor(row_scores, torch::kFloat64).to(mb.mask.device(), torch::kFloat32).unsqueeze(1));
      // 4. GAE; returns before whitening.
      pb.advantages = gae_advantages(token_rewards, pb.old_values, mb.mask, gamma, lambda);
      pb.returns = pb.advantages + pb.old_values;
      adv_sum += pb.advantages.sum().item<double>();
      adv_sq += pb.advantages.pow(2).sum().item<double>();
      adv_count += mb.mask.sum().item<double>();
      batches.push_back(std::move(pb));
    }
    // Whitening over the global batch (every rank's response tokens).
    const Moments adv = global_moments(ctx, adv_sum, adv_sq, adv_count);
    for (auto& pb : batches) pb.advantages = whiten(pb.advantages, pb.rollout.mask, adv.mean, adv.variance);
    stats.rank0_values["time/score_s"] = seconds_since(clock);

    // 5. Updates.
    clock = std::chrono::steady_clock::now();
    const size_t per_minibatch = batches.size() / static_cast<size_t>(minibatches);
    double value_loss_sum = 0, clipped = 0, approx_kl = 0, token_count = 0;
    for (int64_t epoch = 0; epoch < epochs; ++epoch) {
      for (int64_t mbi = 0; mbi < minibatches; ++mbi) {
        const bool last_update = epoch + 1 == epochs && mbi + 1 == minibatches;
        double local_tokens = 0;
        for (size_t i = mbi * per_minibatch; i < (mbi + 1) * per_minibatch; ++i)
          local_tokens += batches[i].rollout.mask.sum().item<double>();
        const double minibatch_tokens = std::max(1.0, ctx.dist->all_reduce_sum(local_tokens));
        double policy_loss = 0, critic_loss = 0;
        for (size_t i = mbi * per_minibatch; i < (mbi + 1) * per_minibatch; ++i) {
          const PpoBatch& pb = batches[i];
          const RolloutBatch& mb = pb.rollout;
          const int64_t B = static_cast<int64_t>(mb.rows.size());
          torch::Tensor hidden;
          auto logp = batch_token_logprobs(*t.model, mb.batch, t.bf16_autocast, shared ? &hidden : nullptr,
                                           sampling.temperature)
                          .view({B, -1});
          auto ratio = torch::exp(logp - mb.old_logp);
          auto per_token = clipped_surrogate_loss(logp, mb.old_logp, pb.advantages, clip_eps);
          if (kl_placement == "loss") per_token = per_token + beta * kl_estimate(kl_estimator, logp, mb.ref_logp);
          auto loss = (per_token * mb.mask).sum() / minibatch_tokens;
          policy_loss += loss.item<double>();

          auto values = values_of(mb.batch, hidden);
          auto values_clipped = pb.old_values + torch::clamp(values - pb.old_values, -value_clip, value_clip);
          auto value_loss = 0.5 * torch::max((values - pb.returns).pow(2), (values_clipped - pb.returns).pow(2));
          auto vloss = (value_loss * mb.mask).sum() / minibatch_tokens;
          critic_loss += vloss.item<double>();
          if (shared) {  // one backward: the value loss shapes the shared body too
            (loss + vf_coef * vloss).backward();
          } else {
            loss.backward();
            vloss.backward();
          }
          if (last_update) {
            torch::NoGradGuard no_grad;
            clipped += (clip_active(ratio, pb.advantages, clip_eps) * mb.mask).sum().item<double>();
            approx_kl += (0.5 * (logp - mb.old_logp).pow(2) * mb.mask).sum().item<double>();
            value_loss_sum += (value_loss * mb.mask).sum().item<double>();
            token_count += mb.mask.sum().item<double>();
          }
        }
        apply_update(ctx, critic, step, critic_loss, critic_lr_scale);
        if (!last_update) {
          apply_update(ctx, t, step, policy_loss);
        } else {
          stats.loss = policy_loss;
        }
      }
    }
    token_count = std::max(1.0, ctx.dist->all_reduce_sum(token_count));
    stats.rank0_values["clip_fraction"] = ctx.dist->all_reduce_sum(clipped) / token_count;
    stats.rank0_values["approx_kl"] = ctx.dist->all_reduce_sum(approx_kl) / token_count;
    stats.rank0_values["value_loss"] = ctx.dist->all_reduce_sum(value_loss_sum) / token_count;
    stats.rank0_values["kl_coef"] = beta;
    stats.rank0_values["time/update_s"] = seconds_since(clock);
    double score_sum = 0, score_sq = 0, kl_sum = 0;
    for (size_t i = 0; i < rollouts.size(); ++i) {
      stats.metric_sums["reward/mean"] += score[i];
      score_sum += score[i];
      score_sq += score[i] * score[i];
      kl_sum += sequence_kl[i];
    }
    add_rollout_metrics(stats, rollouts, sequence_kl, entropies, component_means);
    for (const auto& pb : batches)
      stats.sequence_length = std::max(stats.sequence_length, pb.rollout.batch.input_ids.size(1));
    // Global reward std and mean KL (for the adaptive controller), the same on every rank.
    const Moments scores = global_moments(ctx, score_sum, score_sq, static_cast<double>(rollouts.size()));
    const double n = scores.count;
    const double kl_mean = ctx.dist->all_reduce_sum(kl_sum) / n;
    stats.rank0_values["reward/std"] = std::sqrt(scores.variance);
    if (kl_target > 0) {
      const double error = std::clamp(kl_mean / kl_target - 1.0, -0.2, 0.2);
      beta *= 1.0 + error * n / kl_horizon;
    }
    t.method_state["kl_coef"] = beta;
    const CheckpointSpec& checkpoint = ctx.recipe.checkpoint;
    if (checkpoint.every > 0 && (step + 1) % checkpoint.every == 0 && step + 1 < spec.steps) save_critic(step + 1);
    finish_step(ctx, t, step, stats);
  }
  save_critic(spec.steps);
  finish_training(ctx, t);
}

namespace {
const bool registered =
    (register_trainer("ppo", train_ppo, "RLHF with PPO: critic, GAE, KL penalty (fixed or adaptive), clipped losses",
                      "prompts"),
     true);
}

}  // namespace posttrain
