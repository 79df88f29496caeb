// HF folder IO: names mirror HF, load -> save -> load is bit-exact, sharding, and bad input gets one
// clear error line (file + problem) with exit code 2.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "core/error.h"
#include "models/checkpoint.h"
#include "models/safetensors.h"
#include "tests/test_util.h"

namespace {

posttrain::QwenConfig small_qwen2() {
  posttrain::QwenConfig c;
  c.model_type = "qwen2";
  c.vocab_size = 64;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.attention_bias = true;
  c.qk_norm = false;
  c.tie_word_embeddings = true;
  return c;
}

void expect_same_parameters(posttrain::QwenForCausalLMImpl& a, posttrain::QwenForCausalLMImpl& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (const auto& item : pa) {
    INFO(item.key());
    REQUIRE(pb.contains(item.key()));
    CHECK(torch::equal(item.value(), pb[item.key()]));
  }
}

// Saves a random model with the given options and returns the folder.
std::string save_random(const posttrain::QwenConfig& config, const std::string& dir,
                        posttrain::SaveOptions options = {}) {
  posttrain::QwenForCausalLM model(config);
  posttrain::init_weights(*model, 7);
  posttrain::save_model(*model, dir, options);
  return dir;
}

}  // namespace

TEST_CASE("parameter names are HF's, one to one", "[models][checkpoint]") {
  posttrain::QwenForCausalLM qwen2(small_qwen2());
  auto names = posttrain::expected_parameter_names(*qwen2);
  // Qwen2: q/k/v biases, no q/k norm, tied head (no lm_head.weight).
  const std::vector<std::string> layer0 = {
      "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
      "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.k_proj.bias",
      "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.v_proj.bias",
      "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
      "model.layers.0.mlp.up_proj.weight",      "model.layers.0.mlp.down_proj.weight",
      "model.layers.0.input_layernorm.weight",  "model.layers.0.post_attention_layernorm.weight"};
  for (const auto& n : layer0) CHECK(std::find(names.begin(), names.end(), n) != names.end());
  CHECK(names.front() == "model.embed_tokens.weight");
  CHECK(std::find(names.begin(), names.end(), "model.norm.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "lm_head.weight") == names.end());
  CHECK(names.size() == 1 + 2 * 12 + 1);

  auto config3 = posttrain::preset_config("tiny");  // Qwen3: q/k norm, no biases
  config3.vocab_size = 64;
  config3.tie_word_embeddings = false;
  posttrain::QwenForCausalLM qwen3(config3);
  auto names3 = posttrain::expected_parameter_names(*qwen3);
  CHECK(std::find(names3.begin(), names3.end(), "model.layers.1.self_attn.q_norm.weight") != names3.end());
  CHECK(std::find(names3.begin(), names3.end(), "model.layers.1.self_attn.k_norm.weight") != names3.end());
  CHECK(std::find(names3.begin(), names3.end(), "model.layers.1.self_attn.q_proj.bias") == names3.end());
  CHECK(names3.back() == "lm_head.weight");
}

TEST_CASE("load -> save -> load is bit-exact, in F32 and BF16, single file and sharded", "[models][checkpoint]") {
  test::TempDir tmp("roundtrip");
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const std::string tag = dtype == torch::kFloat32 ? "f32" : "bf16";
    posttrain::SaveOptions options;
    options.dtype = dtype;
    const std::string first = save_random(small_qwen2(), tmp / ("a-" + tag), options);
    auto loaded = posttrain::load_model(first, {dtype});
    posttrain::save_model(*loaded, tmp / ("b-" + tag), options);
    auto reloaded = posttrain::load_model(tmp / ("b-" + tag), {dtype});
    expect_same_parameters(*loaded, *reloaded);
    // Saving the same weights twice gives the same bytes.
    CHECK(test::read_text(first + "/model.safetensors") == test::read_text(tmp / ("b-" + tag) + "/model.safetensors"));
    CHECK(nlohmann::json::parse(test::read_text(first + "/config.json"))["torch_dtype"] ==
          (tag == "f32" ? "float32" : "bfloat16"));
  }

  // Sharded: a small shard limit splits the model; the index maps every tensor to its shard.
  posttrain::SaveOptions sharded;
  sharded.max_shard_bytes = 4096;
  const std::string dir = save_random(small_qwen2(), tmp / "sharded", sharded);
  CHECK_FALSE(test::fs::exists(dir + "/model.safetensors"));
  auto index = nlohmann::json::parse(test::read_text(dir + "/model.safetensors.index.json"));
  std::set<std::string> shards;
  for (auto& [name, file] : index["weight_map"].items()) shards.insert(file.get<std::string>());
  CHECK(shards.size() > 2);
  CHECK(shards.count("model-00001-of-" + std::string(5 - std::to_string(shards.size()).size(), '0') +
                     std::to_string(shards.size()) + ".safetensors"));
  auto from_shards = posttrain::load_model(dir);
  auto from_single = posttrain::load_model(tmp / "a-f32");
  expect_same_parameters(*from_shards, *from_single);
  CHECK_FALSE(test::fs::exists(dir + ".partial"));
}

TEST_CASE("header parser rejects what the format forbids", "[models][safetensors]") {
  auto header_file = [](const std::string& json, size_t data_bytes) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
    return out + json + std::string(data_bytes, '\0');
  };
  auto parse = [](const std::string& bytes) {
    return posttrain::parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                               "x.safetensors");
  };
  CHECK(parse(header_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8)).tensors.size() == 1);
  CHECK_THROWS_WITH(parse("abc"), Catch::Contains("shorter than the 8-byte header length"));
  CHECK_THROWS_WITH(parse(header_file("[1,2]", 0)), Catch::Contains("not a JSON object"));
  CHECK_THROWS_WITH(parse(header_file("{nope", 0)), Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(parse(header_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
                    Catch::Contains("needs 12"));
  CHECK_THROWS_WITH(
      parse(header_file(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          12)),
      Catch::Contains("overlaps"));
  CHECK_THROWS_WITH(parse(header_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
                    Catch::Contains("hole"));
  CHECK_THROWS_WITH(parse(header_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 10)),
                    Catch::Contains("trailing bytes"));
  CHECK_THROWS_WITH(parse(header_file(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8)),
                    Catch::Contains("unsupported dtype 'Q4'"));
  CHECK_THROWS_WITH(parse(header_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
                    Catch::Contains("negative"));
  CHECK_THROWS_WITH(parse(header_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)),
                    Catch::Contains("past the end"));
  CHECK_THROWS_WITH(
      parse(header_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8)),
      Catch::Contains("overflows"));
}

// Each corruption of a valid model folder: exit code 2 and one line naming the file and the problem.
TEST_CASE("corrupt model folders fail with one clear line and exit code 2", "[models][checkpoint][cli]") {
  test::TempDir tmp("corrupt");
  const std::string good = save_random(small_qwen2(), tmp / "good");
  const std::string weights = test::read_text(good + "/model.safetensors");
  const std::string config = test::read_text(good + "/config.json");

  auto expect_error = [&](const std::string& name, const std::string& weights_bytes, const std::string& config_text,
                          const std::vector<std::string>& needles) {
    const std::string dir = tmp / name;
    test::fs::create_directories(dir);
    test::write_text(dir + "/model.safetensors", weights_bytes);
    test::write_text(dir + "/config.json", config_text);
    auto result = test::run(test::posttrain_bin() + " logprobs --model " + dir + " --ids 1,2,3");
    INFO(name << ": " << result.output);
    CHECK(result.exit_code == 2);
    CHECK(std::count(result.output.begin(), result.output.end(), '\n') == 1);
    CHECK(result.output.rfind("posttrain: error: ", 0) == 0);
    for (const auto& needle : needles) CHECK(result.output.find(needle) != std::string::npos);
  };

  const uint64_t header_len = [&] {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(weights[i]);
    return v;
  }();
  std::string header_json = weights.substr(8, header_len);

  expect_error("truncated", weights.substr(0, weights.size() - 100), config, {"model.safetensors", "past the end"});
  expect_error("tiny-file", weights.substr(0, 5), config, {"model.safetensors", "shorter than the 8-byte"});
  std::string huge_len = weights;
  huge_len[4] = 1;  // header length ~ 2^32: larger than the file
  expect_error("header-too-long", huge_len, config, {"model.safetensors", "header length"});

  // Overlap: point the second tensor's range at the first tensor's bytes (same size, so only the overlap is wrong).
  auto header = nlohmann::json::parse(header_json);
  std::vector<std::pair<uint64_t, std::string>> by_offset;
  for (auto& [name, info] : header.items())
    if (name != "__metadata__") by_offset.emplace_back(info["data_offsets"][0].get<uint64_t>(), name);
  std::sort(by_offset.begin(), by_offset.end());
  auto rewrite = [&](const nlohmann::json& h) {
    std::string json = h.dump();
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
    return out + json + weights.substr(8 + header_len);
  };
  {
    auto h = header;
    // Two norm weights of equal size: make the later one reuse the earlier one's range.
    std::string a, b;
    for (auto& [offset, name] : by_offset) {
      if (name.find("layernorm") == std::string::npos) continue;
      if (a.empty())
        a = name;
      else if (b.empty())
        b = name;
    }
    REQUIRE(!b.empty());
    h[b]["data_offsets"] = h[a]["data_offsets"];
    expect_error("overlap", rewrite(h), config, {"model.safetensors", "overlaps"});
  }
  {
    auto h = header;
    h["model.norm.weight"]["dtype"] = "F64";  // 8-byte dtype over a 4-byte-per-element range
    expect_error("wrong-dtype", rewrite(h), config, {"model.safetensors", "model.norm.weight", "needs"});
  }
  {
    // An extra (empty) tensor the config does not imply; and a renamed one, so a required one is missing.
    auto h = header;
    const uint64_t end = weights.size() - 8 - header_len;
    h["model.extra_thing"] = {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {end, end}}};
    expect_error("unexpected-tensor", rewrite(h), config,
                 {"model.safetensors", "unexpected tensor 'model.extra_thing'"});
    h = header;
    h["model.renamed"] = h["model.norm.weight"];
    h.erase("model.norm.weight");
    expect_error("renamed-tensor", rewrite(h), config, {"missing tensor 'model.norm.weight'"});
    auto config_json = nlohmann::json::parse(config);
    config_json["num_hidden_layers"] = 3;
    expect_error("missing-tensor", weights, config_json.dump(), {"missing tensor 'model.layers.2."});
  }
  {
    auto config_json = nlohmann::json::parse(config);
    config_json["model_type"] = "llama";
    expect_error("unknown-model-type", weights, config_json.dump(),
                 {"config.json", "unsupported model_type \"llama\""});
    expect_error("non-json-config", weights, "{ this is not json", {"config.json", "not valid JSON"});
    config_json = nlohmann::json::parse(config);
    config_json["hidden_size"] = 32;
    expect_error("shape-mismatch", weights, config_json.dump(), {"model.safetensors", "has shape"});
  }
  auto missing = test::run(test::posttrain_bin() + " logprobs --model " + tmp / "nowhere" + " --ids 1,2");
  CHECK(missing.exit_code == 2);
  CHECK(missing.output.find("model folder not found") != std::string::npos);
}

TEST_CASE("config.json RoPE settings: transformers 4 and 5 spellings give the same theta", "[models][config]") {
  const std::string common =
      R"("model_type": "qwen3", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32,
         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8)";
  const auto v4 =
      posttrain::parse_qwen_config("{" + common + R"(, "rope_theta": 1000000, "rope_scaling": null})", "v4");
  const auto v5 = posttrain::parse_qwen_config(
      "{" + common + R"(, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000}, "dtype": "bfloat16"})",
      "v5");
  CHECK(v4.rope_theta == 1000000.0);
  CHECK(v5.rope_theta == 1000000.0);
  CHECK(v5.torch_dtype == "bfloat16");
  try {
    posttrain::parse_qwen_config("{" + common + R"(, "rope_parameters": {"rope_type": "yarn", "factor": 4}})", "cfg");
    FAIL("yarn RoPE was accepted");
  } catch (const posttrain::UserError& e) {
    CHECK(std::string(e.what()).find("rope_parameters type \"yarn\" is not supported") != std::string::npos);
  }
}

TEST_CASE("config.json integer fields must hold integers of a plausible size", "[models][config]") {
  const auto error_of = [](const std::string& layers, const std::string& hidden) {
    try {
      posttrain::parse_qwen_config(R"({"model_type": "qwen3", "vocab_size": 64, "hidden_size": )" + hidden +
                                       R"(, "intermediate_size": 32, "num_hidden_layers": )" + layers +
                                       R"(, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8})",
                                   "config.json");
    } catch (const posttrain::UserError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK(error_of("2", "16") == "(no error)");
  // 2.5 used to load as 2 layers.
  CHECK(error_of("2.5", "16") == "config.json: key \"num_hidden_layers\" must be an integer, got 2.5");
  CHECK(error_of("2", "4e9").find("key \"hidden_size\" must be an integer") != std::string::npos);
  CHECK(error_of("2", "4000000000").find("\"hidden_size\" is 4000000000, above any plausible model") !=
        std::string::npos);
}

TEST_CASE("a model folder whose model.safetensors is a folder fails with one clear line", "[models][checkpoint]") {
  test::TempDir tmp("weights-folder");
  const std::string dir = save_random(small_qwen2(), tmp / "m");
  test::fs::remove(dir + "/model.safetensors");
  test::fs::create_directories(dir + "/model.safetensors");
  auto result = test::run(test::posttrain_bin() + " logprobs --model " + dir + " --ids 1,2,3");
  CHECK(result.exit_code == 2);
  CHECK(result.output == "posttrain: error: " + dir + "/model.safetensors: is a folder, expected a file\n");
}
