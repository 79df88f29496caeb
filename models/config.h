// QwenConfig: the decoder's shape and flags, read from / written to a HF config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace posttrain {

// One config covers Qwen2, Qwen2.5 and Qwen3; the differences are flags, not subclasses.
struct QwenConfig {
  std::string model_type = "qwen3";  // "qwen2" (also Qwen2.5) or "qwen3"
  int64_t vocab_size = 151936;
  int64_t hidden_size = 64;
  int64_t intermediate_size = 128;
  int64_t num_hidden_layers = 2;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 2;
  int64_t head_dim = 16;  // explicit in Qwen3; hidden_size / num_attention_heads in Qwen2
  int64_t max_position_embeddings = 32768;
  double rope_theta = 1000000.0;
  double rms_norm_eps = 1e-6;
  double initializer_range = 0.02;
  bool tie_word_embeddings = true;
  bool attention_bias = false;  // q/k/v projection biases: always on in Qwen2, a flag in Qwen3
  bool qk_norm = true;  // per-head RMSNorm on q and k (Qwen3)
  std::string torch_dtype = "float32";
  int64_t bos_token_id = 151643;
  int64_t eos_token_id = 151645;
  int64_t pad_token_id = 151643;  // <|endoftext|>; a sequence classifier pools the last non-pad token
  // 0: causal LM (lm_head). > 0: sequence classifier / reward model, HF's Qwen*ForSequenceClassification:
  // the same body with `score` [num_labels, hidden] in place of lm_head (a reward model has 1 label).
  int64_t num_labels = 0;

  int64_t num_key_value_groups() const { return num_attention_heads / num_key_value_heads; }
  std::string architecture() const {
    return std::string(model_type == "qwen2" ? "Qwen2" : "Qwen3") +
           (num_labels > 0 ? "ForSequenceClassification" : "ForCausalLM");
  }
};

// Parses config.json text; UserError naming `source` and the key on anything we cannot honour
// (unknown model_type, sliding-window attention, rope scaling, inconsistent head counts).
QwenConfig parse_qwen_config(const std::string& json_text, const std::string& source);
QwenConfig load_qwen_config(const std::string& path);

// HF config.json text for this config (readable by transformers' Qwen2Config / Qwen3Config).
std::string qwen_config_to_json(const QwenConfig& config);

// Named shapes: "tiny", "small" and the exact shapes of released Qwen models.
QwenConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace posttrain
