#include "models/lora.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "models/checkpoint.h"
#include "models/tokenizer.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

// PEFT wraps the model twice (PeftModel > LoraModel > the HF model), hence this prefix on every key.
const std::string kPeftPrefix = "base_model.model.";
const char* kConfigFile = "adapter_config.json";
const char* kWeightsFile = "adapter_model.safetensors";

// The decoder's projections by full name ("model.layers.3.mlp.up_proj"), in registration order.
std::vector<std::pair<std::string, QwenLinearImpl*>> projections(QwenForCausalLMImpl& model) {
  std::vector<std::pair<std::string, QwenLinearImpl*>> found;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (auto* linear = item.value()->as<QwenLinearImpl>()) found.emplace_back(item.key(), linear);
  return found;
}

// "q_proj" of "model.layers.3.self_attn.q_proj".
std::string short_name(const std::string& full) { return full.substr(full.rfind('.') + 1); }

}  // namespace

void add_lora(QwenForCausalLMImpl& model, const LoraSpec& spec, uint64_t seed, const std::string& base_dir,
              bool rslora) {
  TORCH_CHECK(spec.rank > 0, "add_lora needs a positive rank");
  TORCH_CHECK(!has_lora(model), "the model already has adapters");
  const std::set<std::string> targets(spec.target_modules.begin(), spec.target_modules.end());
  const double scale =
      rslora ? spec.alpha / std::sqrt(static_cast<double>(spec.rank)) : spec.alpha / static_cast<double>(spec.rank);
  auto generator = at::detail::createCPUGenerator(seed);
  const auto options = model.model->embed_tokens->weight.options();
  torch::NoGradGuard no_grad;
  for (auto& [name, linear] : projections(model)) {
    if (!targets.count(short_name(name))) continue;
    const int64_t out = linear->weight.size(0), in = linear->weight.size(1);
    auto a = torch::nn::Linear(torch::nn::LinearOptions(in, spec.rank).bias(false));
    auto b = torch::nn::Linear(torch::nn::LinearOptions(spec.rank, out).bias(false));
    // kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) = 1 / sqrt(in).
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    a->weight.copy_(torch::empty({spec.rank, in}, torch::kFloat32).uniform_(-bound, bound, generator));
    b->weight.zero_();
    a->to(options.device(), options.dtype().toScalarType());
    b->to(options.device(), options.dtype().toScalarType());
    linear->lora_A = linear->register_module("lora_A", a);
    linear->lora_B = linear->register_module("lora_B", b);
    linear->lora_scale = scale;
    linear->lora_dropout = spec.dropout;
    linear->lora_enabled = true;
  }
  model.lora = spec;
  model.lora_rslora = rslora;
  model.lora_base = base_dir.empty() ? base_dir : fs::absolute(base_dir).lexically_normal().string();
}

bool has_lora(const QwenForCausalLMImpl& model) { return model.lora.enabled(); }

std::vector<std::pair<std::string, at::Tensor>> adapter_parameters(QwenForCausalLMImpl& model) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos ||
        (model.is_classifier() && name == "score.weight"))
      params.emplace_back(name, item.value());
  }
  return params;
}

std::vector<std::pair<std::string, at::Tensor>> train_only_adapters(QwenForCausalLMImpl& model) {
  for (auto& p : model.parameters()) p.set_requires_grad(false);
  auto params = adapter_parameters(model);
  for (auto& [name, p] : params) p.set_requires_grad(true);
  return params;
}

AdaptersDisabled::AdaptersDisabled(QwenForCausalLMImpl& model) {
  for (auto& [name, linear] : projections(model))
    if (linear->lora_A && linear->lora_enabled) {
      linear->lora_enabled = false;
      switched_.push_back(linear);
    }
}

AdaptersDisabled::~AdaptersDisabled() {
  for (auto* linear : switched_) linear->lora_enabled = true;
}

void merge_lora(QwenForCausalLMImpl& model) {
  torch::NoGradGuard no_grad;
  for (auto& [name, linear] : projections(model)) {
    if (!linear->lora_A) continue;
    // In float64, so the merged weight rounds once (to the weight's dtype), not at every product.
    auto delta = torch::matmul(linear->lora_B->weight.to(torch::kFloat64), linear->lora_A->weight.to(torch::kFloat64)) *
                 linear->lora_scale;  // [out, in]
    linear->weight.copy_((linear->weight.to(torch::kFloat64) + delta).to(linear->weight.scalar_type()));
    linear->unregister_module("lora_A");
    linear->unregister_module("lora_B");
    linear->lora_A = nullptr;
    linear->lora_B = nullptr;
    linear->lora_scale = 0;
  }
  model.lora = LoraSpec{};
  model.lora_rslora = false;
}

bool is_adapter_dir(const std::string& dir) { return fs::exists(fs::path(dir) / kConfigFile); }

AdapterConfig read_adapter_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / kConfigFile).string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(path, "must be a JSON object");
  const auto field = [&](const char* key) -> const nlohmann::json& {
    static const nlohmann::json null_value;
    return j.contains(key) ? j[key] : null_value;
  };
  const auto unsupported = [&](const char* key, const std::string& what) {
    fail(path, std::string(key) + ": " + what + " is not supported by posttrain (merge it with PEFT first)");
  };
  if (field("peft_type") != "LORA")
    fail(path, "peft_type must be \"LORA\" (got " + field("peft_type").dump() + "): only LoRA adapters are supported");
  AdapterConfig c;
  if (!field("r").is_number_integer() || field("r").get<int64_t>() <= 0) fail(path, "r must be a positive integer");
  c.lora.rank = field("r").get<int64_t>();
  c.lora.alpha = field("lora_alpha").is_number() ? field("lora_alpha").get<double>() : 8.0;  // PEFT's default
  if (c.lora.alpha <= 0) fail(path, "lora_alpha must be positive");
  c.lora.dropout = field("lora_dropout").is_number() ? field("lora_dropout").get<double>() : 0.0;
  if (c.lora.dropout < 0 || c.lora.dropout >= 1) fail(path, "lora_dropout must be in [0, 1)");
  if (field("use_dora") == true) unsupported("use_dora", "DoRA");
  if (!field("bias").is_null() && field("bias") != "none") unsupported("bias", "training biases");
  if (field("fan_in_fan_out") == true) unsupported("fan_in_fan_out", "transposed (Conv1D) weights");
  if (!field("layers_to_transform").is_null()) unsupported("layers_to_transform", "adapting only some layers");
  if (!field("layer_replication").is_null()) unsupported("layer_replication", "layer replication");
  for (const char* pattern : {"rank_pattern", "alpha_pattern"})
    if (field(pattern).is_object() && !field(pattern).empty()) unsupported(pattern, "per-module ranks or alphas");
  c.rslora = field("use_rslora") == true;
  if (field("target_modules").is_string())
    unsupported("target_modules", "a regular expression (" + field("target_modules").dump() + ")");
  if (!field("target_modules").is_array() || field("target_modules").empty())
    fail(path, "target_modules must be a non-empty list of projection names");
  const LoraSpec every;
  c.lora.target_modules.clear();
  for (const auto& name : field("target_modules")) {
    if (!name.is_string() || std::find(every.target_modules.begin(), every.target_modules.end(),
                                       name.get<std::string>()) == every.target_modules.end())
      fail(path, "target_modules: " + name.dump() +
                     " is not a projection of the Qwen decoder (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                     "down_proj)");
    c.lora.target_modules.push_back(name.get<std::string>());
  }
  const std::string task = field("task_type").is_string() ? field("task_type").get<std::string>() : "CAUSAL_LM";
  if (task != "CAUSAL_LM" && task != "SEQ_CLS")
    fail(path, "task_type must be CAUSAL_LM or SEQ_CLS (got \"" + task + "\")");
  c.classifier = task == "SEQ_CLS";
  if (field("modules_to_save").is_array())
    for (const auto& module : field("modules_to_save"))
      if (!(c.classifier && (module == "score" || module == "classifier")))
        unsupported("modules_to_save", "saving " + module.dump() + " whole");
  c.base_model =
      field("base_model_name_or_path").is_string() ? field("base_model_name_or_path").get<std::string>() : "";
  return c;
}

std::string adapter_base_dir(const std::string& adapter_dir, const AdapterConfig& config) {
  const std::string path = (fs::path(adapter_dir) / kConfigFile).string();
  if (config.base_model.empty()) fail(path, "base_model_name_or_path is empty: name the base folder (--base)");
  fs::path base(config.base_model);
  if (base.is_relative()) base = fs::path(adapter_dir) / base;
  if (!fs::exists(base / "config.json"))
    fail(path, "base_model_name_or_path \"" + config.base_model +
                   "\" is not a model folder on this machine (no config.json there); pass the base folder (--base)");
  return base.lexically_normal().string();
}

void save_adapter(QwenForCausalLMImpl& model, const std::string& dir, const std::string& tokenizer_dir) {
  TORCH_CHECK(has_lora(model), "save_adapter: the model has no adapters");
  AdapterConfig config;
  config.lora = model.lora;
  config.rslora = model.lora_rslora;
  config.base_model = model.lora_base;
  config.classifier = model.is_classifier();
  if (fs::exists(dir)) fail(dir, "output folder already exists; choose a new one or remove it");
  const fs::path partial = dir + ".partial";
  fs::remove_all(partial);
  fs::create_directories(partial);
  RemoveOnUnwind remove_partial_on_failure(partial.string());

  // PEFT's LoraConfig fields, in its (sorted) order; the ones posttrain does not use at their defaults.
  nlohmann::ordered_json j;
  j["alpha_pattern"] = nlohmann::json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = config.base_model;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["loftq_config"] = nlohmann::json::object();
  // PEFT types lora_alpha as an int; a whole alpha is written as one.
  if (config.lora.alpha == std::floor(config.lora.alpha))
    j["lora_alpha"] = static_cast<int64_t>(config.lora.alpha);
  else
    j["lora_alpha"] = config.lora.alpha;
  j["lora_dropout"] = config.lora.dropout;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = config.classifier ? nlohmann::json::array({"score"}) : nlohmann::json(nullptr);
  j["peft_type"] = "LORA";
  j["r"] = config.lora.rank;
  j["rank_pattern"] = nlohmann::json::object();
  j["revision"] = nullptr;
  j["target_modules"] = config.lora.target_modules;
  j["task_type"] = config.classifier ? "SEQ_CLS" : "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = config.rslora;
  write_file_atomic((partial / kConfigFile).string(), j.dump(2) + "\n");

  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, tensor] : adapter_parameters(model))
    tensors.emplace_back(kPeftPrefix + name, tensor.detach().to(torch::kFloat32));
  write_safetensors((partial / kWeightsFile).string(), tensors);

  if (!tokenizer_dir.empty()) copy_tokenizer_files(tokenizer_dir, partial.string());
  fs::rename(partial, dir);
}

void load_adapter_weights(QwenForCausalLMImpl& model, const std::string& dir) {
  const std::string path = (fs::path(dir) / kWeightsFile).string();
  if (!fs::exists(path)) fail(dir, std::string("no ") + kWeightsFile + " in this adapter folder");
  auto stored = read_safetensors(path);
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& [name, param] : adapter_parameters(model)) {
    auto it = stored.find(kPeftPrefix + name);
    if (it == stored.end()) fail(path, "missing tensor '" + kPeftPrefix + name + "' that adapter_config.json implies");
    if (it->second.sizes() != param.sizes())
      fail(path, "tensor '" + it->first + "' has shape " + c10::str(it->second.sizes()) + " but the adapter implies " +
                     c10::str(param.sizes()));
    if (!it->second.is_floating_point()) fail(path, "tensor '" + it->first + "' is not floating point");
    param.copy_(it->second);
    used.insert(it->first);
  }
  for (const auto& [name, tensor] : stored)
    if (!used.count(name))
      fail(path, "unexpected tensor '" + name + "' (not an adapter of the projections adapter_config.json names)");
}

}  // namespace posttrain
