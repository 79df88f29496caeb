#include "models/config.h"

#include <map>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "core/error.h"
#include "core/files.h"

namespace posttrain {

namespace {

using nlohmann::json;

template <typename T>
void read_key(const json& j, const char* key, T& out, const std::string& source, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) fail(source, std::string("missing required key \"") + key + "\"");
    return;
  }
  // nlohmann converts 2.5 to an integer as 2: an integer field must hold an integer.
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    if (!j[key].is_number_integer())
      fail(source, std::string("key \"") + key + "\" must be an integer, got " + j[key].dump());
  try {
    out = j[key].get<T>();
  } catch (const json::exception&) {
    fail(source, std::string("key \"") + key + "\" has the wrong type (" + j[key].type_name() + ")");
  }
}

}  // namespace

QwenConfig parse_qwen_config(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(source, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(source, "config must be a JSON object");

  QwenConfig c;
  read_key(j, "model_type", c.model_type, source, true);
  if (c.model_type != "qwen2" && c.model_type != "qwen3")
    fail(source, "unsupported model_type \"" + c.model_type + "\" (supported: qwen2, qwen3)");
  const bool qwen3 = c.model_type == "qwen3";

  read_key(j, "vocab_size", c.vocab_size, source, true);
  read_key(j, "hidden_size", c.hidden_size, source, true);
  read_key(j, "intermediate_size", c.intermediate_size, source, true);
  read_key(j, "num_hidden_layers", c.num_hidden_layers, source, true);
  read_key(j, "num_attention_heads", c.num_attention_heads, source, true);
  c.num_key_value_heads = c.num_attention_heads;
  read_key(j, "num_key_value_heads", c.num_key_value_heads, source, false);
  c.head_dim = c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
  read_key(j, "head_dim", c.head_dim, source, false);
  read_key(j, "max_position_embeddings", c.max_position_embeddings, source, false);
  read_key(j, "rope_theta", c.rope_theta, source, false);
  read_key(j, "rms_norm_eps", c.rms_norm_eps, source, false);
  read_key(j, "initializer_range", c.initializer_range, source, false);
  c.tie_word_embeddings = false;  // transformers' default for both Qwen2Config and Qwen3Config
  read_key(j, "tie_word_embeddings", c.tie_word_embeddings, source, false);
  c.attention_bias = !qwen3;  // Qwen2 always has q/k/v biases; Qwen3 reads the flag
  if (qwen3) read_key(j, "attention_bias", c.attention_bias, source, false);
  c.qk_norm = qwen3;
  read_key(j, "torch_dtype", c.torch_dtype, source, false);
  read_key(j, "dtype", c.torch_dtype, source, false);  // transformers >= 5 name
  read_key(j, "bos_token_id", c.bos_token_id, source, false);
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array() && !j["eos_token_id"].empty())
    c.eos_token_id = j["eos_token_id"][0].get<int64_t>();
  else
    read_key(j, "eos_token_id", c.eos_token_id, source, false);

  read_key(j, "pad_token_id", c.pad_token_id, source, false);
  // A sequence classifier says so in "architectures"; its label count is the size of id2label
  // (transformers writes no num_labels key; its default is 2).
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    const std::string arch = j["architectures"][0].get<std::string>();
    const std::string suffix = "ForSequenceClassification";
    if (arch.size() > suffix.size() && arch.compare(arch.size() - suffix.size(), suffix.size(), suffix) == 0) {
      c.num_labels = 2;
      if (j.contains("id2label") && j["id2label"].is_object() && !j["id2label"].empty())
        c.num_labels = static_cast<int64_t>(j["id2label"].size());
      read_key(j, "num_labels", c.num_labels, source, false);
      if (c.num_labels <= 0) fail(source, "a sequence classifier needs at least one label");
    }
  }

  std::string act = "silu";
  read_key(j, "hidden_act", act, source, false);
  if (act != "silu") fail(source, "hidden_act \"" + act + "\" is not supported (Qwen uses silu)");
  bool sliding = false;
  read_key(j, "use_sliding_window", sliding, source, false);
  if (sliding) fail(source, "use_sliding_window: true is not supported (full attention only)");
  // transformers < 5 writes rope_theta + rope_scaling; transformers >= 5 writes rope_parameters
  // {rope_type, rope_theta}. Only plain RoPE is implemented.
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const auto& rope = j[key];
    if (!rope.is_object()) fail(source, std::string("\"") + key + "\" must be an object");
    const auto type_of = [&](const char* field) {
      return rope.contains(field) && rope[field].is_string() ? rope[field].get<std::string>() : std::string();
    };
    const std::string type = !type_of("rope_type").empty() ? type_of("rope_type") : type_of("type");
    if (!type.empty() && type != "default")
      fail(source, std::string(key) + " type \"" + type + "\" is not supported (plain RoPE only)");
    read_key(rope, "rope_theta", c.rope_theta, source + ": " + key, false);
  }

  // Bounds far above any Qwen (the 72B: hidden 8192, 80 layers, vocab 152k), so a typo fails here
  // with its key rather than as a failed allocation of terabytes.
  auto in_range = [&](const char* key, int64_t v, int64_t most) {
    if (v <= 0) fail(source, std::string("\"") + key + "\" must be positive, got " + std::to_string(v));
    if (v > most)
      fail(source, std::string("\"") + key + "\" is " + std::to_string(v) + ", above any plausible model (at most " +
                       std::to_string(most) + ")");
  };
  in_range("vocab_size", c.vocab_size, int64_t{1} << 22);
  in_range("hidden_size", c.hidden_size, int64_t{1} << 16);
  in_range("intermediate_size", c.intermediate_size, int64_t{1} << 18);
  in_range("num_hidden_layers", c.num_hidden_layers, 1024);
  in_range("num_attention_heads", c.num_attention_heads, 1024);
  in_range("num_key_value_heads", c.num_key_value_heads, 1024);
  in_range("head_dim", c.head_dim, 4096);
  in_range("max_position_embeddings", c.max_position_embeddings, int64_t{1} << 24);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail(source, "num_attention_heads (" + std::to_string(c.num_attention_heads) +
                     ") is not a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");
  if (c.head_dim % 2 != 0) fail(source, "head_dim must be even for rotary embeddings");
  if (c.rms_norm_eps <= 0) fail(source, "rms_norm_eps must be positive");
  if (c.rope_theta <= 0) fail(source, "rope_theta must be positive");
  return c;
}

QwenConfig load_qwen_config(const std::string& path) { return parse_qwen_config(read_file(path), path); }

std::string qwen_config_to_json(const QwenConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {c.architecture()};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  if (c.model_type == "qwen3") {
    j["head_dim"] = c.head_dim;
    j["attention_bias"] = c.attention_bias;
  }
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = nullptr;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["initializer_range"] = c.initializer_range;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["use_sliding_window"] = false;
  j["sliding_window"] = nullptr;
  j["attention_dropout"] = 0.0;
  j["use_cache"] = true;
  j["torch_dtype"] = c.torch_dtype;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["pad_token_id"] = c.pad_token_id;
  if (c.num_labels > 0) {
    nlohmann::ordered_json id2label, label2id;
    for (int64_t i = 0; i < c.num_labels; ++i) {
      id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
      label2id["LABEL_" + std::to_string(i)] = i;
    }
    j["id2label"] = id2label;
    j["label2id"] = label2id;
  }
  return j.dump(2) + "\n";
}

namespace {

QwenConfig make_qwen2(int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv, bool tied,
                      int64_t vocab = 151936) {
  QwenConfig c;
  c.model_type = "qwen2";
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv;
  c.head_dim = hidden / heads;
  c.tie_word_embeddings = tied;
  c.attention_bias = true;
  c.qk_norm = false;
  c.vocab_size = vocab;
  c.bos_token_id = 151643;
  c.eos_token_id = 151645;
  return c;
}

QwenConfig make_qwen3(int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv, int64_t head_dim,
                      bool tied) {
  QwenConfig c;
  c.model_type = "qwen3";
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv;
  c.head_dim = head_dim;
  c.tie_word_embeddings = tied;
  c.attention_bias = false;
  c.qk_norm = true;
  c.max_position_embeddings = 40960;
  return c;
}

const std::map<std::string, QwenConfig>& presets() {
  static const std::map<std::string, QwenConfig> table = [] {
    std::map<std::string, QwenConfig> t;
    // For tests: every feature on (GQA, q/k norm, head_dim != hidden / heads), seconds on a CPU.
    t["tiny"] = make_qwen3(64, 128, 2, 4, 2, 32, true);
    // For CPU demos: ~45M parameters, most of them the 151,936 x 256 embedding.
    t["small"] = make_qwen3(256, 768, 6, 4, 2, 64, true);
    // Exact shapes of released models (config.json of each on the HF hub).
    t["qwen2.5-0.5b"] = make_qwen2(896, 4864, 24, 14, 2, true);
    t["qwen2.5-1.5b"] = make_qwen2(1536, 8960, 28, 12, 2, true);
    t["qwen2.5-7b"] = make_qwen2(3584, 18944, 28, 28, 4, false, 152064);
    t["qwen3-0.6b"] = make_qwen3(1024, 3072, 28, 16, 8, 128, true);
    t["qwen3-1.7b"] = make_qwen3(2048, 6144, 28, 16, 8, 128, true);
    t["qwen3-4b"] = make_qwen3(2560, 9728, 36, 32, 8, 128, true);
    t["qwen3-8b"] = make_qwen3(4096, 12288, 36, 32, 8, 128, false);
    return t;
  }();
  return table;
}

}  // namespace

QwenConfig preset_config(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    std::string names;
    for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    fail("--preset", "unknown preset \"" + name + "\" (known: " + names + ")");
  }
  return it->second;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, config] : presets()) names.push_back(name);
  return names;
}

}  // namespace posttrain
