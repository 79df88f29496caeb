// The `lora:` section of a recipe, apart from the recipe so that models/ can use it without YAML.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace posttrain {

// LoRA (Hu et al. 2021, as PEFT implements it): each targeted projection W gains a low-rank update,
// y = W x + (alpha / rank) * B A dropout(x), with A [rank, in] drawn like PEFT (kaiming-uniform) and
// B [out, rank] zero, so training starts at the base exactly. The base weights stay frozen and out
// of the optimizer. rank 0 (no `lora:` section) trains every weight.
struct LoraSpec {
  int64_t rank = 0;
  double alpha = 16;
  double dropout = 0;  // on the adapter's input only, in training
  std::vector<std::string> target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};
  bool enabled() const { return rank > 0; }
};

}  // namespace posttrain
