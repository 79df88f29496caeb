#include "trainers/rl_math.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"

namespace posttrain {

torch::Tensor kl_estimate(const std::string& estimator, const torch::Tensor& logp, const torch::Tensor& ref_logp) {
  auto r = ref_logp - logp;
  if (estimator == "k1") return -r;
  if (estimator == "k3") return torch::exp(r) - r - 1;
  throw UserError("unknown KL estimator \"" + estimator + "\" (use k1 or k3)");
}

namespace {

std::map<std::string, AdvantageEstimator>& estimators() {
  static std::map<std::string, AdvantageEstimator> table;
  return table;
}

// GRPO (DeepSeekMath): (r - group mean) / (group std + eps), std with Bessel's correction as TRL's
// torch.std. A group whose samples all scored the same gets 0, not 0/0.
torch::Tensor grpo_advantages(const torch::Tensor& rewards, double, double) {
  const int64_t G = rewards.size(1);
  auto centred = rewards - rewards.mean(1, /*keepdim=*/true);
  if (G < 2) return torch::zeros_like(rewards);
  auto std = rewards.std(1, /*unbiased=*/true, /*keepdim=*/true);
  return centred / (std + 1e-4);
}

// RLOO: each sample's baseline is the mean of the OTHER G-1 samples of its prompt:
// r_i - (sum - r_i) / (G - 1) = G / (G - 1) * (r_i - mean).
torch::Tensor rloo_advantages(const torch::Tensor& rewards, double, double) {
  const int64_t G = rewards.size(1);
  if (G < 2) return torch::zeros_like(rewards);
  auto others = (rewards.sum(1, /*keepdim=*/true) - rewards) / static_cast<double>(G - 1);
  return rewards - others;
}

// REINFORCE++: no per-prompt baseline; the global batch's mean and std normalise every reward (the
// KL penalty is in the reward by default).
torch::Tensor reinforce_pp_advantages(const torch::Tensor& rewards, double batch_mean, double batch_std) {
  return (rewards - batch_mean) / (batch_std + 1e-4);
}

const bool registered = [] {
  register_advantage_estimator("grpo", {grpo_advantages, "loss", "group-normalised: (r - mean_g) / (std_g + 1e-4)"});
  register_advantage_estimator("rloo", {rloo_advantages, "loss", "leave-one-out baseline: r - mean of the others"});
  register_advantage_estimator(
      "reinforce++", {reinforce_pp_advantages, "reward", "global-batch normalised, KL penalty in the reward"});
  return true;
}();

}  // namespace

void register_advantage_estimator(const std::string& name, AdvantageEstimator estimator) {
  estimators()[name] = std::move(estimator);
}

const AdvantageEstimator* find_advantage_estimator(const std::string& name) {
  auto it = estimators().find(name);
  return it == estimators().end() ? nullptr : &it->second;
}

std::vector<std::string> advantage_estimator_names() {
  std::vector<std::string> names;
  for (const auto& item : estimators()) names.push_back(item.first);
  return names;
}

torch::Tensor clipped_surrogate_loss(const torch::Tensor& logp, const torch::Tensor& old_logp,
                                     const torch::Tensor& advantages, double clip_eps) {
  auto ratio = torch::exp(logp - old_logp);
  return -torch::min(ratio * advantages, torch::clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages);
}

torch::Tensor clip_active(const torch::Tensor& ratio, const torch::Tensor& advantages, double clip_eps) {
  return ((ratio > 1 + clip_eps).logical_and(advantages > 0))
      .logical_or((ratio < 1 - clip_eps).logical_and(advantages < 0))
      .to(torch::kFloat32);
}

torch::Tensor gae_advantages(const torch::Tensor& rewards, const torch::Tensor& values, const torch::Tensor& mask,
                             double gamma, double lambda) {
  const int64_t T = rewards.size(1);
  auto m = mask.to(rewards.scalar_type());
  auto advantages = torch::zeros_like(rewards);
  auto next_value = torch::zeros({rewards.size(0)}, rewards.options());  // V(s_{t+1}), 0 past the end
  auto next_advantage = torch::zeros({rewards.size(0)}, rewards.options());
  for (int64_t t = T - 1; t >= 0; --t) {
    auto mt = m.select(1, t);
    auto delta = rewards.select(1, t) + gamma * next_value - values.select(1, t);
    auto a = (delta + gamma * lambda * next_advantage) * mt;
    advantages.select(1, t).copy_(a);
    // Off the mask (prompt, padding) the recursion restarts: nothing flows across a row's ends.
    next_value = values.select(1, t) * mt;
    next_advantage = a;
  }
  return advantages;
}

torch::Tensor whiten(const torch::Tensor& values, const torch::Tensor& mask, double mean, double variance) {
  return (values - mean) * (1.0 / std::sqrt(variance + 1e-8)) * mask.to(values.scalar_type());
}

torch::Tensor masked_whiten(const torch::Tensor& values, const torch::Tensor& mask) {
  auto m = mask.to(values.scalar_type());
  const double n = std::max(1.0, m.sum().item<double>());
  const double mean = (values * m).sum().item<double>() / n;
  const double variance = ((values - mean).pow(2) * m).sum().item<double>() / n;
  return whiten(values, mask, mean, variance);
}

}  // namespace posttrain
