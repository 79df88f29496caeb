#include "trainers/optim.h"

#include <torch/torch.h>

#include <cmath>
#include <map>

#include "core/error.h"

namespace posttrain {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, const TrainSpec& spec)
    : params_(std::move(params)),
      beta1_(spec.beta1),
      beta2_(spec.beta2),
      eps_(spec.eps),
      weight_decay_(spec.weight_decay) {
  for (const auto& [name, p] : params_) {
    exp_avg_.push_back(torch::zeros_like(p, p.options().dtype(torch::kFloat32)));
    exp_avg_sq_.push_back(torch::zeros_like(p, p.options().dtype(torch::kFloat32)));
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias1 = 1.0 - std::pow(beta1_, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(beta2_, static_cast<double>(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i].second;
    if (!p.grad().defined()) continue;
    auto g = p.grad().to(torch::kFloat32);
    exp_avg_[i].mul_(beta1_).add_(g, 1.0 - beta1_);
    exp_avg_sq_[i].mul_(beta2_).addcmul_(g, g, 1.0 - beta2_);
    if (weight_decay_ > 0) p.mul_(1.0 - lr * weight_decay_);
    auto denom = (exp_avg_sq_[i] / bias2).sqrt_().add_(eps_);
    p.add_((exp_avg_[i] / denom).to(p.scalar_type()), -lr / bias1);
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + params_[i].first, exp_avg_[i]);
    out.emplace_back("exp_avg_sq." + params_[i].first, exp_avg_sq_[i]);
  }
  return out;
}

void AdamW::load_state_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                               const std::string& source) {
  std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto* state : {&exp_avg_, &exp_avg_sq_}) {
      const std::string name = (state == &exp_avg_ ? "exp_avg." : "exp_avg_sq.") + params_[i].first;
      auto it = by_name.find(name);
      if (it == by_name.end()) fail(source, "optimizer state lacks '" + name + "'");
      if (it->second.sizes() != (*state)[i].sizes()) fail(source, "optimizer state '" + name + "' has the wrong shape");
      (*state)[i].copy_(it->second);
    }
  }
}

double learning_rate(const TrainSpec& spec, int64_t step) {
  if (step < spec.warmup_steps) return spec.lr * static_cast<double>(step + 1) / static_cast<double>(spec.warmup_steps);
  if (spec.schedule == "constant") return spec.lr;
  const int64_t decay_steps = std::max<int64_t>(1, spec.steps - spec.warmup_steps - 1);
  const double progress =
      std::min(1.0, static_cast<double>(step - spec.warmup_steps) / static_cast<double>(decay_steps));
  const double floor = spec.min_lr_ratio * spec.lr;
  if (spec.schedule == "linear") return floor + (spec.lr - floor) * (1.0 - progress);
  return floor + (spec.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));  // cosine
}

double clip_grad_norm(const std::vector<std::pair<std::string, torch::Tensor>>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  double sum_sq = 0.0;
  for (const auto& [name, p] : params)
    if (p.grad().defined()) sum_sq += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  const double norm = std::sqrt(sum_sq);
  if (max_norm > 0 && norm > max_norm && std::isfinite(norm)) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& [name, p] : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return norm;
}

}  // namespace posttrain
