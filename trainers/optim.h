// Optimizer pieces shared by every trainer: AdamW, the learning-rate schedule, global-norm clipping.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/recipe.h"

namespace posttrain {

// AdamW with decoupled weight decay, as torch.optim.AdamW: p -= lr * wd * p, then the Adam update
// with bias correction. Written out (not torch::optim) so its state is plain named tensors that
// checkpoints store in safetensors and restore bit for bit.
class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, const TrainSpec& spec);
  void step(double lr);  // uses each parameter's .grad()
  void zero_grad();

  // exp_avg.<name> and exp_avg_sq.<name> for every parameter.
  std::vector<std::pair<std::string, at::Tensor>> state_tensors() const;
  void load_state_tensors(const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& source);
  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps) { steps_ = steps; }

 private:
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::vector<at::Tensor> exp_avg_;  // per parameter, its shape, float32
  std::vector<at::Tensor> exp_avg_sq_;  // per parameter, its shape, float32
  double beta1_, beta2_, eps_, weight_decay_;
  int64_t steps_ = 0;
};

// Learning rate at optimizer step `step` (0-based): linear warmup over warmup_steps, then cosine,
// linear or constant decay to min_lr_ratio x lr at the last step.
double learning_rate(const TrainSpec& spec, int64_t step);

// Global L2 norm of all gradients (before clipping); scales them down to max_norm when above it
// (max_norm <= 0: no clipping).
double clip_grad_norm(const std::vector<std::pair<std::string, at::Tensor>>& params, double max_norm);

}  // namespace posttrain
