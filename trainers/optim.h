// Optimizer pieces shared by every trainer: AdamW, the learning-rate schedule, global-norm clipping.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/recipe.h"

namespace posttrain {

class Distributed;

// AdamW with decoupled weight decay, as torch.optim.AdamW: p -= lr * wd * p, then the Adam update
// with bias correction. Written out (not torch::optim) so its state is plain named tensors that
// checkpoints store in safetensors and restore bit for bit.
//
// Sharded (ZeRO stage 1, train.zero: 1): lay every parameter end to end as one vector of
// total_elements(); rank r keeps the moments of one contiguous slice of it (1/world_size, the last
// slice shorter), updates the parameters' elements in its slice after the gradient all-reduce, and
// all-gathers the updated slices so every rank ends the step with every parameter. The update of an
// element is the same arithmetic as unsharded, so 2 ranks equal 1.
class AdamW {
 public:
  // shard_over: a world of more than one rank shards the state over it (nullptr: not sharded).
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, const TrainSpec& spec,
        Distributed* shard_over = nullptr);
  void step(double lr);  // uses each parameter's .grad()
  void zero_grad();

  // Unsharded: exp_avg.<name> and exp_avg_sq.<name> for every parameter. Sharded: "exp_avg" and
  // "exp_avg_sq" of this rank's slice, [slice_length()].
  std::vector<std::pair<std::string, at::Tensor>> state_tensors() const;
  // The unsharded format (a sharded optimizer takes its slice of it).
  void load_state_tensors(const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& source);
  // The moments of every parameter as one vector each [total_elements()], in parameter order; a
  // sharded optimizer keeps its slice. (Loads a checkpoint written at any world size.)
  void load_flat_state(const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq, const std::string& source);
  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps) { steps_ = steps; }

  // Rank `rank`'s slice {start, length} of `total` elements over `world` ranks: ceil(total / world)
  // each, the last one shorter (or empty).
  static std::pair<int64_t, int64_t> shard_range(int64_t total, int world, int rank);
  bool sharded() const { return dist_ != nullptr; }
  int64_t total_elements() const { return total_; }
  int64_t slice_start() const { return slice_start_; }
  int64_t slice_length() const { return slice_length_; }

 private:
  // The part of parameter `param` that lies in this rank's slice: elements [offset, offset + length)
  // of the flattened parameter, at slice_offset in the slice.
  struct Piece {
    size_t param;
    int64_t offset, length, slice_offset;
  };
  std::vector<std::pair<std::string, at::Tensor>> params_;
  // Unsharded: per parameter, its shape; sharded: one tensor [slice_length()]. float32.
  std::vector<at::Tensor> exp_avg_;
  std::vector<at::Tensor> exp_avg_sq_;
  double beta1_, beta2_, eps_, weight_decay_;
  int64_t steps_ = 0;
  Distributed* dist_ = nullptr;
  int64_t total_ = 0;  // elements of all parameters
  int64_t chunk_ = 0;  // ceil(total / world): every rank's slice, padded to this for the all-gather
  int64_t slice_start_ = 0, slice_length_ = 0;
  std::vector<Piece> pieces_;
};

// Learning rate at optimizer step `step` (0-based): linear warmup over warmup_steps, then cosine,
// linear or constant decay to min_lr_ratio x lr at the last step.
double learning_rate(const TrainSpec& spec, int64_t step);

// Global L2 norm of all gradients (before clipping); scales them down to max_norm when above it
// (max_norm <= 0: no clipping).
double clip_grad_norm(const std::vector<std::pair<std::string, at::Tensor>>& params, double max_norm);

}  // namespace posttrain
