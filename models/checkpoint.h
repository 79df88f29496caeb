// HF model folders: load and save config.json + safetensors (single file or sharded with
// model.safetensors.index.json), F32 / BF16 / F16 storage, tokenizer files copied alongside.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "models/qwen.h"

namespace posttrain {

// Reads every tensor of one safetensors file (validated; see models/safetensors.h), as CPU tensors
// in their stored dtype.
std::map<std::string, torch::Tensor> read_safetensors(const std::string& path);

// Writes tensors (made contiguous, moved to CPU) in the given order, atomically.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

struct LoadOptions {
  c10::ScalarType dtype = c10::kFloat;  // parameters are converted to this on load
  c10::Device device = c10::Device(c10::kCPU);
  // > 0: the result must be a sequence classifier with this many labels. A causal-LM folder becomes
  // one: its body is loaded, lm_head is dropped, and `score` is drawn from normal(0, initializer_range)
  // with head_seed. A classifier folder must already have this many labels.
  int64_t classifier_labels = 0;
  uint64_t head_seed = 0;
  // For a PEFT adapter folder: its base model folder ("" = the adapter's base_model_name_or_path),
  // and whether the adapters stay attached (else they are merged into the weights on load: the same
  // outputs, a plain model that trains, saves and runs like any other).
  std::string adapter_base;
  bool keep_adapters = false;
};

// Loads a HF model folder: config.json and model.safetensors or model.safetensors.index.json. A PEFT
// LoRA adapter folder (adapter_config.json, models/lora.h) loads as its base with the adapters merged
// in (or attached, keep_adapters); the base may itself be an adapter folder.
// Every parameter the config implies must be present with the right shape and no other tensor may
// be (a tied model may carry a redundant lm_head.weight). UserError names file and tensor.
QwenForCausalLM load_model(const std::string& dir, const LoadOptions& options = {});

struct SaveOptions {
  c10::ScalarType dtype = c10::kFloat;  // storage dtype (F32, BF16 or F16)
  int64_t max_shard_bytes = 5ll << 30;  // larger models are split into shards + an index
  std::string tokenizer_dir;  // tokenizer.json + tokenizer_config.json copied from here
};

// Writes a HF model folder into `dir` (which must not exist yet): files go to "<dir>.partial" first
// and the folder is renamed only when complete, so a crash never leaves a folder that looks whole.
void save_model(QwenForCausalLMImpl& model, const std::string& dir, const SaveOptions& options);

// The names save_model writes and load_model expects, in HF order (tied lm_head excluded).
std::vector<std::string> expected_parameter_names(QwenForCausalLMImpl& model);

// "float32" / "bfloat16" / "float16" (also f32, bf16, fp16) -> dtype; UserError otherwise.
c10::ScalarType parse_dtype(const std::string& name, const std::string& where);
std::string dtype_to_hf_name(c10::ScalarType dtype);

// "cpu", "cuda", "cuda:N" -> device; UserError if CUDA is asked for but unavailable.
c10::Device parse_device(const std::string& name);

}  // namespace posttrain
