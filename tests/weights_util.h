// Models for tests: a tiny one in memory, and comparing two trained checkpoints for tests that assert
// two ways of training give the same model.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <string>

#include "models/checkpoint.h"
#include "models/config.h"
#include "models/qwen.h"
#include "tests/test_util.h"

namespace test {

// The tiny preset with a 97-token vocabulary and weights drawn from `seed` (HF's init).
inline posttrain::QwenForCausalLM tiny_model(uint64_t seed) {
  posttrain::QwenConfig c = posttrain::preset_config("tiny");
  c.vocab_size = 97;
  posttrain::QwenForCausalLM model(c);
  posttrain::init_weights(*model, seed);
  return model;
}

// ||a - b|| / ||a - base|| over all parameters: how far apart two runs ended, measured against how
// far training moved them. Why not the largest element difference: Adam divides each update by
// sqrt(v), so an element whose gradient is a sum of nearly cancelling terms moves by a visibly
// different amount when the summation order changes (micro-batches, ranks, another CPU's kernels),
// and one such element decides a max. A real fault (a micro-batch weighted wrongly, a rank's
// gradient lost) moves most elements and gives a ratio near 0.1 or more.
inline double relative_weight_difference(const std::string& a_dir, const std::string& b_dir,
                                         const std::string& base_dir = test_cache_dir() + "/bases/tiny-seed0") {
  auto a = posttrain::load_model(a_dir), b = posttrain::load_model(b_dir), base = posttrain::load_model(base_dir);
  auto pb = b->named_parameters(), pbase = base->named_parameters();
  double apart = 0, moved = 0;
  for (const auto& item : a->named_parameters()) {
    apart += (item.value() - pb[item.key()]).to(torch::kFloat64).pow(2).sum().item<double>();
    moved += (item.value() - pbase[item.key()]).to(torch::kFloat64).pow(2).sum().item<double>();
  }
  return std::sqrt(apart) / std::sqrt(moved);
}

}  // namespace test
