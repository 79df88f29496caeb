// Reinforcement-learning arithmetic as pure functions on tensors, each checked against hand-worked
// numbers in tests/trainers/test_rl_math.cpp: KL estimators, group advantage estimators (registered by
// name: `grpo.estimator:`), GAE, and masked whitening.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

namespace posttrain {

// Per-token estimate of KL(policy || reference) from the log-probs of the sampled tokens, with
// r = logp_ref - logp (Schulman, "Approximating KL divergence"):
//   k1 = -r                (unbiased, can be negative)
//   k3 = exp(r) - r - 1    (unbiased, never negative, lower variance)
// estimator: "k1" or "k3".
torch::Tensor kl_estimate(const std::string& estimator, const torch::Tensor& logp, const torch::Tensor& ref_logp);

// Sequence-level advantages for P prompts x G samples. rewards [P, G] -> advantages [P, G].
// batch_mean / batch_std: of every reward of the global batch (all ranks), for batch-normalising
// estimators; group estimators ignore them.
struct AdvantageEstimator {
  std::function<torch::Tensor(const torch::Tensor& rewards, double batch_mean, double batch_std)> advantages;
  std::string default_kl_placement;  // "loss" (k3 term in the loss) or "reward" (KL subtracted from it)
  std::string description;
};

void register_advantage_estimator(const std::string& name, AdvantageEstimator estimator);
const AdvantageEstimator* find_advantage_estimator(const std::string& name);
std::vector<std::string> advantage_estimator_names();

// PPO's clipped surrogate as a per-token loss: -min(rho A, clip(rho, 1 - eps, 1 + eps) A), with
// rho = exp(logp - old_logp). Shapes broadcast (A may be per sequence [B, 1] or per token [B, T]).
torch::Tensor clipped_surrogate_loss(const torch::Tensor& logp, const torch::Tensor& old_logp,
                                     const torch::Tensor& advantages, double clip_eps);

// 1 where the clip is active, i.e. where the clipped term is the one min() takes and its gradient is
// 0: rho > 1 + eps with A > 0, or rho < 1 - eps with A < 0 (TRL's clip ratio); else 0. Float, the
// broadcast shape of ratio and advantages.
torch::Tensor clip_active(const torch::Tensor& ratio, const torch::Tensor& advantages, double clip_eps);

// Generalised advantage estimation over the response tokens of each row. rewards, values, mask:
// [B, T]; mask is 1 on one contiguous run of response tokens per row. The value after a row's last
// response token is 0 (the episode ends there). Returns advantages [B, T], 0 off the mask; the
// returns (value targets) are advantages + values, computed BEFORE any whitening.
torch::Tensor gae_advantages(const torch::Tensor& rewards, const torch::Tensor& values, const torch::Tensor& mask,
                             double gamma, double lambda);

// (x - mean) / sqrt(variance + 1e-8) on the masked entries, 0 off the mask, with given statistics
// (e.g. of the whole global batch).
torch::Tensor whiten(const torch::Tensor& values, const torch::Tensor& mask, double mean, double variance);

// whiten() with the mean and population variance of the masked entries themselves.
torch::Tensor masked_whiten(const torch::Tensor& values, const torch::Tensor& mask);

}  // namespace posttrain
