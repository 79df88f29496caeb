// LoRA adapters on the Qwen decoder, in PEFT's format: attach them (A drawn as PEFT draws it, B
// zero), switch them off for a reference forward, merge them into the base weights, and read and
// write PEFT adapter folders (adapter_config.json + adapter_model.safetensors) that PEFT and vLLM
// load unchanged.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/lora_spec.h"
#include "models/qwen.h"

namespace posttrain {

// An adapter's settings as adapter_config.json holds them.
struct AdapterConfig {
  LoraSpec lora;
  bool rslora = false;  // use_rslora: scale alpha / sqrt(rank) instead of alpha / rank
  std::string base_model;  // base_model_name_or_path as written
  bool classifier = false;  // task_type SEQ_CLS: the `score` head is trained and saved whole (modules_to_save)
};

// Registers lora_A [rank, in] and lora_B [out, rank] on every targeted projection of every layer.
// A is drawn from PEFT's default, kaiming-uniform with a = sqrt(5) (uniform in +-1/sqrt(in)), from
// a CPU generator seeded with `seed`; B is zero, so the model's outputs are the base's exactly.
// `base_dir` is the folder the adapters' base was loaded from (recorded in saved adapters).
void add_lora(QwenForCausalLMImpl& model, const LoraSpec& spec, uint64_t seed, const std::string& base_dir,
              bool rslora = false);

bool has_lora(const QwenForCausalLMImpl& model);

// The tensors an adapter trains and saves, with the model's names: every lora_A / lora_B weight and,
// for a sequence classifier, the score head (trained whole, PEFT's modules_to_save).
std::vector<std::pair<std::string, at::Tensor>> adapter_parameters(QwenForCausalLMImpl& model);

// Freezes every other weight (requires_grad false: no gradient, no optimizer state) and returns the
// adapter parameters, which alone train.
std::vector<std::pair<std::string, at::Tensor>> train_only_adapters(QwenForCausalLMImpl& model);

// While alive, the model runs as its base: every adapter is bypassed (a reference model without a
// second copy of the weights). A model without adapters is left as it is.
class AdaptersDisabled {
 public:
  explicit AdaptersDisabled(QwenForCausalLMImpl& model);
  ~AdaptersDisabled();
  AdaptersDisabled(const AdaptersDisabled&) = delete;
  AdaptersDisabled& operator=(const AdaptersDisabled&) = delete;

 private:
  std::vector<QwenLinearImpl*> switched_;
};

// Folds every adapter into its projection (W += scale * B A) and removes the adapters: the model is
// a plain one whose outputs equal the adapted model's up to rounding.
void merge_lora(QwenForCausalLMImpl& model);

// True when `dir` holds adapter_config.json (a PEFT adapter folder rather than a full model).
bool is_adapter_dir(const std::string& dir);

// Reads and validates adapter_config.json: a LoRA adapter on projections of the Qwen decoder, with
// no option posttrain does not implement (DoRA, bias training, per-layer ranks, ...); UserError
// naming the file and the field otherwise.
AdapterConfig read_adapter_config(const std::string& dir);

// The folder of the adapter's base model: base_model_name_or_path, relative to the adapter folder
// when relative; UserError when it is not a model folder on this machine.
std::string adapter_base_dir(const std::string& adapter_dir, const AdapterConfig& config);

// Writes `dir` (which must not exist) as PEFT writes an adapter: adapter_config.json (from the
// model's lora settings and base folder) and adapter_model.safetensors with keys
// "base_model.model.<name>", float32; plus the tokenizer files from tokenizer_dir when given.
// Atomic: written under <dir>.partial and renamed.
void save_adapter(QwenForCausalLMImpl& model, const std::string& dir, const std::string& tokenizer_dir = "");

// Copies an adapter folder's weights into a model that already has adapters of the same shapes:
// every adapter tensor must be in the file with its shape, and nothing else. UserError naming the
// file and the tensor otherwise.
void load_adapter_weights(QwenForCausalLMImpl& model, const std::string& dir);

}  // namespace posttrain
