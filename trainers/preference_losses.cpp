#include "trainers/preference_losses.h"

#include <torch/torch.h>

#include <map>

namespace posttrain {

namespace {

std::map<std::string, PreferenceLoss>& registry() {
  static std::map<std::string, PreferenceLoss> losses;
  return losses;
}

// -log sigmoid(x), written with softplus for stability: log(1 + exp(-x)).
torch::Tensor neg_log_sigmoid(const torch::Tensor& x) { return torch::softplus(-x); }

// DPO (Rafailov et al., 2023) with optional label smoothing (cDPO): a fraction eps of labels is
// assumed flipped, so the loss mixes both directions. A soft label q (P(chosen is better)) is the
// same mixture with weight q on the stated direction: the cross-entropy of sigmoid(beta * margin)
// against q; with smoothing too, the weight is q (1 - eps) + (1 - q) eps.
torch::Tensor sigmoid_loss(const PreferenceLogProbs& lp, const PreferenceLossOptions& o) {
  auto z = o.beta * dpo_margin(lp);
  if (!lp.preference.defined())
    return (1.0 - o.label_smoothing) * neg_log_sigmoid(z) + o.label_smoothing * neg_log_sigmoid(-z);
  auto q = lp.preference.to(z.dtype()) * (1.0 - 2.0 * o.label_smoothing) + o.label_smoothing;
  return q * neg_log_sigmoid(z) + (1.0 - q) * neg_log_sigmoid(-z);
}

// IPO (Azar et al., 2023): squared distance of the margin from 1 / (2 beta), on MEAN log-probs.
torch::Tensor ipo_loss(const PreferenceLogProbs& lp, const PreferenceLossOptions& o) {
  return (dpo_margin(lp) - 1.0 / (2.0 * o.beta)).pow(2);
}

// SLiC-style hinge (Zhao et al., 2023): max(0, 1 - beta * margin).
torch::Tensor hinge_loss(const PreferenceLogProbs& lp, const PreferenceLossOptions& o) {
  return torch::relu(1.0 - o.beta * dpo_margin(lp));
}

// SimPO (Meng et al., 2024): reference-free, length-normalised, with a target margin gamma.
torch::Tensor simpo_loss(const PreferenceLogProbs& lp, const PreferenceLossOptions& o) {
  return neg_log_sigmoid(o.beta * (lp.policy_chosen - lp.policy_rejected) - o.gamma);
}

// ORPO (Hong et al., 2024): NLL of the chosen response plus lambda x -log sigmoid(log odds ratio),
// odds(y) = p / (1 - p) with p = exp(mean log-prob).
torch::Tensor orpo_loss(const PreferenceLogProbs& lp, const PreferenceLossOptions& o) {
  auto log_odds = [](const torch::Tensor& mean_logp) {
    return mean_logp - torch::log1p(-torch::exp(mean_logp.clamp_max(-1e-6)));
  };
  auto ratio = log_odds(lp.policy_chosen) - log_odds(lp.policy_rejected);
  return -lp.policy_chosen + o.orpo_lambda * neg_log_sigmoid(ratio);
}

const bool registered = [] {
  register_preference_loss(
      "sigmoid",
      {sigmoid_loss, LogProbAggregation::kSum, true, "DPO: -log sigmoid(beta * margin)", {"beta", "label_smoothing"}});
  register_preference_loss("cdpo", {sigmoid_loss,
                                    LogProbAggregation::kSum,
                                    true,
                                    "DPO with label smoothing (dpo.label_smoothing)",
                                    {"beta", "label_smoothing"}});
  register_preference_loss(
      "ipo", {ipo_loss, LogProbAggregation::kMean, true, "IPO: (margin - 1/(2 beta))^2 on mean log-probs", {"beta"}});
  register_preference_loss(
      "hinge", {hinge_loss, LogProbAggregation::kSum, true, "SLiC hinge: max(0, 1 - beta * margin)", {"beta"}});
  register_preference_loss("simpo", {simpo_loss,
                                     LogProbAggregation::kMean,
                                     false,
                                     "SimPO: reference-free, length-normalised, margin gamma",
                                     {"beta", "gamma"}});
  register_preference_loss(
      "orpo",
      {orpo_loss, LogProbAggregation::kMean, false, "ORPO: chosen NLL + lambda * odds-ratio term", {"orpo_lambda"}});
  return true;
}();

}  // namespace

torch::Tensor bradley_terry_loss(const torch::Tensor& chosen, const torch::Tensor& rejected, const torch::Tensor& q,
                                 double margin, double center) {
  auto bt = neg_log_sigmoid(chosen - rejected - margin);
  if (q.defined()) bt = q * bt + (1 - q) * neg_log_sigmoid(rejected - chosen - margin);
  return bt + center * (chosen + rejected).pow(2);
}

void register_preference_loss(const std::string& name, PreferenceLoss loss) { registry()[name] = std::move(loss); }

const PreferenceLoss* find_preference_loss(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;
}

std::vector<std::string> preference_loss_names() {
  std::vector<std::string> names;
  for (const auto& [name, loss] : registry()) names.push_back(name);
  return names;
}

torch::Tensor kto_loss(const torch::Tensor& policy, const torch::Tensor& reference, const torch::Tensor& desirable,
                       double z, double beta, double lambda_d, double lambda_u) {
  auto r = policy - reference;
  auto d = desirable.to(policy.scalar_type());
  return d * lambda_d * (1 - torch::sigmoid(beta * (r - z))) +
         (1 - d) * lambda_u * (1 - torch::sigmoid(beta * (z - r)));
}

torch::Tensor dpo_margin(const PreferenceLogProbs& lp) {
  return (lp.policy_chosen - lp.reference_chosen) - (lp.policy_rejected - lp.reference_rejected);
}

}  // namespace posttrain
