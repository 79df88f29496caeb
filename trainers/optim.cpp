#include "trainers/optim.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <tuple>

#include "core/error.h"
#include "launch/distributed.h"

namespace posttrain {

std::pair<int64_t, int64_t> AdamW::shard_range(int64_t total, int world, int rank) {
  const int64_t chunk = (total + world - 1) / world;
  const int64_t start = std::min(total, rank * chunk);
  return {start, std::min(total, start + chunk) - start};
}

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, const TrainSpec& spec, Distributed* shard_over)
    : params_(std::move(params)),
      beta1_(spec.beta1),
      beta2_(spec.beta2),
      eps_(spec.eps),
      weight_decay_(spec.weight_decay) {
  for (const auto& [name, p] : params_) total_ += p.numel();
  if (shard_over == nullptr || shard_over->world_size() == 1) {
    for (const auto& [name, p] : params_) {
      exp_avg_.push_back(torch::zeros_like(p, p.options().dtype(torch::kFloat32)));
      exp_avg_sq_.push_back(torch::zeros_like(p, p.options().dtype(torch::kFloat32)));
    }
    slice_length_ = total_;
    return;
  }
  dist_ = shard_over;
  const int64_t world = dist_->world_size();
  chunk_ = (total_ + world - 1) / world;
  std::tie(slice_start_, slice_length_) = shard_range(total_, static_cast<int>(world), dist_->rank());
  int64_t first = 0;  // the parameter's first element in the flat layout
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = params_[i].second.numel();
    const int64_t begin = std::max(first, slice_start_), end = std::min(first + n, slice_start_ + slice_length_);
    if (begin < end) pieces_.push_back({i, begin - first, end - begin, begin - slice_start_});
    first += n;
  }
  const auto options = params_.empty() ? torch::TensorOptions() : params_[0].second.options();
  exp_avg_.push_back(torch::zeros({slice_length_}, options.dtype(torch::kFloat32)));
  exp_avg_sq_.push_back(torch::zeros({slice_length_}, options.dtype(torch::kFloat32)));
}

namespace {

struct AdamWScalars {
  float beta1, beta2, eps, decay;  // decay = 1 - lr * weight_decay
  float bias2, step_size;  // step_size = lr / bias1
};

bool fusable(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m, const torch::Tensor& v) {
  return p.device().is_cpu() && p.scalar_type() == torch::kFloat32 && g.scalar_type() == torch::kFloat32 &&
         p.is_contiguous() && g.is_contiguous() && m.is_contiguous() && v.is_contiguous();
}

// The update for a float32 CPU parameter in one pass: each element's p, g, m and v are read and
// written once. The op-by-op form below makes ~10 passes and two temporaries of the parameter's size,
// which at small batch took a tenth of a CPU training step. Elements are independent, so the result
// does not depend on how parallel_for splits them.
void adamw_fused_cpu(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  at::parallel_for(0, n, 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      m[i] = s.beta1 * m[i] + (1.0f - s.beta1) * g[i];
      v[i] = s.beta2 * v[i] + (1.0f - s.beta2) * g[i] * g[i];
      const float denom = std::sqrt(v[i] / s.bias2) + s.eps;
      p[i] = p[i] * s.decay - s.step_size * (m[i] / denom);
    }
  });
}

}  // namespace

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias1 = 1.0 - std::pow(beta1_, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(beta2_, static_cast<double>(steps_));
  const AdamWScalars scalars{static_cast<float>(beta1_), static_cast<float>(beta2_),
                             static_cast<float>(eps_),   static_cast<float>(1.0 - lr * weight_decay_),
                             static_cast<float>(bias2),  static_cast<float>(lr / bias1)};
  // One element range of a parameter with its moments: the same update whether it is the whole
  // parameter or this rank's piece of it.
  const auto update = [&](torch::Tensor p, const torch::Tensor& grad, torch::Tensor m, torch::Tensor v) {
    if (fusable(p, grad, m, v)) {
      adamw_fused_cpu(p.data_ptr<float>(), grad.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), p.numel(),
                      scalars);
      return;
    }
    auto g = grad.to(torch::kFloat32);
    m.mul_(beta1_).add_(g, 1.0 - beta1_);
    v.mul_(beta2_).addcmul_(g, g, 1.0 - beta2_);
    if (weight_decay_ > 0) p.mul_(1.0 - lr * weight_decay_);
    auto denom = (v / bias2).sqrt_().add_(eps_);
    p.add_((m / denom).to(p.scalar_type()), -lr / bias1);
  };
  if (!sharded()) {
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i].second;
      if (p.grad().defined()) update(p, p.grad(), exp_avg_[i], exp_avg_sq_[i]);
    }
    return;
  }
  // This rank's slice, then every rank's updated slice to every rank.
  auto local = torch::zeros({chunk_}, exp_avg_[0].options());  // [chunk], padded past slice_length
  for (const auto& piece : pieces_) {
    auto& p = params_[piece.param].second;
    auto flat = p.view({-1}).narrow(0, piece.offset, piece.length);  // a view: updated in place
    if (p.grad().defined())
      update(flat, p.grad().reshape({-1}).narrow(0, piece.offset, piece.length),
             exp_avg_[0].narrow(0, piece.slice_offset, piece.length),
             exp_avg_sq_[0].narrow(0, piece.slice_offset, piece.length));
    local.narrow(0, piece.slice_offset, piece.length).copy_(flat);
  }
  auto global = torch::empty({chunk_ * dist_->world_size()}, local.options());  // [world * chunk]
  dist_->all_gather(local, global);
  int64_t first = 0;
  for (auto& [name, p] : params_) {
    p.view({-1}).copy_(global.narrow(0, first, p.numel()));
    first += p.numel();
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_) {
    if (!p.grad().defined()) continue;
    // On the CPU the gradient buffers are kept and zeroed: freed, they would go back to the kernel
    // (they sit at the top of the heap) and fault in afresh, page by page, in the next backward.
    // On CUDA the caching allocator keeps freed memory, so dropping them saves the memset.
    if (p.grad().device().is_cpu())
      p.mutable_grad().zero_();
    else
      p.mutable_grad() = torch::Tensor();
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state_tensors() const {
  if (sharded()) return {{"exp_avg", exp_avg_[0]}, {"exp_avg_sq", exp_avg_sq_[0]}};
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
  if (sharded()) {  // lay the named moments end to end and keep this rank's slice
    std::vector<torch::Tensor> m, v;
    for (const auto& [name, p] : params_)
      for (auto* out : {&m, &v}) {
        const std::string key = (out == &m ? "exp_avg." : "exp_avg_sq.") + name;
        auto it = by_name.find(key);
        if (it == by_name.end()) fail(source, "optimizer state lacks '" + key + "'");
        if (it->second.sizes() != p.sizes()) fail(source, "optimizer state '" + key + "' has the wrong shape");
        out->push_back(it->second.reshape({-1}).to(torch::kFloat32));
      }
    load_flat_state(torch::cat(m), torch::cat(v), source);
    return;
  }
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

void AdamW::load_flat_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, const std::string& source) {
  torch::NoGradGuard no_grad;
  for (const auto* t : {&exp_avg, &exp_avg_sq})
    if (t->dim() != 1 || t->numel() != total_)
      fail(source, "optimizer state holds " + std::to_string(t->numel()) + " elements per moment; this run's " +
                       "parameters have " + std::to_string(total_) + " (a checkpoint of another model?)");
  if (sharded()) {
    exp_avg_[0].copy_(exp_avg.narrow(0, slice_start_, slice_length_));
    exp_avg_sq_[0].copy_(exp_avg_sq.narrow(0, slice_start_, slice_length_));
    return;
  }
  int64_t first = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = params_[i].second.numel();
    exp_avg_[i].copy_(exp_avg.narrow(0, first, n).view(exp_avg_[i].sizes()));
    exp_avg_sq_[i].copy_(exp_avg_sq.narrow(0, first, n).view(exp_avg_sq_[i].sizes()));
    first += n;
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
