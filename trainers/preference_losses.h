// Preference-optimisation losses as pure functions of sequence log-probs, registered by name
// (`dpo.loss:` in a recipe). Each takes per-pair tensors [P] and returns per-pair losses [P].
//
// Log-prob aggregation differs between methods, and frameworks disagree on it, so it is explicit:
// each loss declares whether it wants SUMS over response tokens or MEANS (sum / response length).
//   sigmoid (DPO), cdpo, hinge: sums.   ipo: means (as TRL; the IPO paper's beta is then per token).
//   simpo, orpo: means, and no reference model.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

namespace posttrain {

struct PreferenceLogProbs {
  torch::Tensor policy_chosen, policy_rejected;  // [P] sums or means, per the loss's aggregation
  torch::Tensor reference_chosen, reference_rejected;  // [P]; undefined for reference-free losses
  // [P] soft labels: the probability that chosen is the better response (e.g. an AI judge's averaged
  // preference in RLAIF). Undefined means 1 for every pair. Only the sigmoid / cdpo losses take them.
  torch::Tensor preference;
};

struct PreferenceLossOptions {
  double beta = 0.1;
  double label_smoothing = 0.0;  // cdpo: probability that a pair's label is flipped
  double gamma = 0.5;  // simpo: target margin (in units of beta-scaled mean log-prob)
  double orpo_lambda = 0.1;  // orpo: weight of the odds-ratio term
};

enum class LogProbAggregation { kSum, kMean };

struct PreferenceLoss {
  std::function<torch::Tensor(const PreferenceLogProbs&, const PreferenceLossOptions&)> loss;  // -> [P]
  LogProbAggregation aggregation;
  bool needs_reference;
  std::string description;
  // The dpo: options the loss reads (of beta, label_smoothing, gamma, orpo_lambda): setting another
  // one is refused rather than silently ignored. Empty: every option (a plugin that does not say).
  std::vector<std::string> options;
};

void register_preference_loss(const std::string& name, PreferenceLoss loss);
const PreferenceLoss* find_preference_loss(const std::string& name);
std::vector<std::string> preference_loss_names();

// KTO (Ethayarajh et al. 2024) on unpaired examples, per example [N]: with the implicit reward
// r = log pi(y|x) - log ref(y|x) (sums over response tokens) and the reference point z (a batch
// estimate of KL(pi || ref), detached, >= 0):
//   desirable:   lambda_d (1 - sigmoid(beta (r - z)))
//   undesirable: lambda_u (1 - sigmoid(beta (z - r)))
// `desirable` [N] is 1 / 0.
torch::Tensor kto_loss(const torch::Tensor& policy, const torch::Tensor& reference, const torch::Tensor& desirable,
                       double z, double beta, double lambda_d, double lambda_u);

// The reward model's loss per pair [P] on its scalar rewards: -log sigmoid(r_c - r_r - margin), or
// with soft labels q [P] (undefined: all 1) q times that plus (1 - q) times the same with the pair
// swapped; plus center (r_c + r_r)^2. Training and the held-out eval/loss both use it.
torch::Tensor bradley_terry_loss(const torch::Tensor& chosen, const torch::Tensor& rejected, const torch::Tensor& q,
                                 double margin, double center);

// The implicit reward margin h = (pi_c - ref_c) - (pi_r - ref_r), shared by the DPO family.
torch::Tensor dpo_margin(const PreferenceLogProbs& lp);

}  // namespace posttrain
