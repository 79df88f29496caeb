// LoRA against numbers it did not produce: with B = 0 the forward is the base's bit for bit; one
// projection equals W x + b + (alpha / r) B A x written out in float64; at B = 0 the gradient of A is
// exactly zero (it is B^T times something) while B's is not, and no base weight gets one; merged ==
// unmerged; the saved folder has PEFT's documented file names, keys and config fields; bad adapter
// folders are refused naming the file and the field.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "models/lora.h"
#include "models/qwen.h"
#include "tests/test_util.h"
#include "tests/weights_util.h"

namespace {

using test::tiny_model;

posttrain::LoraSpec spec(int64_t rank, double alpha) {
  posttrain::LoraSpec s;
  s.rank = rank;
  s.alpha = alpha;
  return s;
}

// Log-probs of a fixed batch of token ids (next-token, every position).
torch::Tensor logprobs_of(posttrain::QwenForCausalLMImpl& model, const torch::Tensor& ids) {
  const int64_t B = ids.size(0), T = ids.size(1);
  auto positions = torch::arange(T).unsqueeze(0).expand({B, T});
  auto hidden = model.hidden_states(ids, positions);
  return posttrain::chunked_token_logprobs(hidden.narrow(1, 0, T - 1).reshape({-1, model.config.hidden_size}),
                                           model.lm_head_weight(), ids.narrow(1, 1, T - 1).reshape({-1}));
}

// Every lora_B drawn from normal(0, 0.05): an adapter that changes the outputs.
void randomize_b(posttrain::QwenForCausalLMImpl& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& item : model.named_parameters())
    if (item.key().find(".lora_B.") != std::string::npos) item.value().normal_(0.0, 0.05);
}

}  // namespace

TEST_CASE("LoRA: B = 0 is the base exactly; one projection is W x + b + (alpha / r) B A x", "[models][lora]") {
  auto base = tiny_model(3), adapted = tiny_model(3);
  posttrain::add_lora(*adapted, spec(4, 8), 11, "");
  base->eval();
  adapted->eval();
  auto ids = torch::randint(0, 97, {2, 7}, torch::kInt64);
  CHECK(torch::equal(logprobs_of(*base, ids), logprobs_of(*adapted, ids)));

  // Keys as PEFT names them, under each of the 7 projections of every layer.
  const auto& c = adapted->config;
  auto params = adapted->named_parameters();
  REQUIRE(params.contains("model.layers.0.self_attn.q_proj.lora_A.weight"));
  CHECK(params["model.layers.0.self_attn.q_proj.lora_A.weight"].sizes() == torch::IntArrayRef({4, c.hidden_size}));
  CHECK(params["model.layers.0.self_attn.q_proj.lora_B.weight"].sizes() ==
        torch::IntArrayRef({c.num_attention_heads * c.head_dim, 4}));
  CHECK(params["model.layers.1.mlp.down_proj.lora_A.weight"].sizes() == torch::IntArrayRef({4, c.intermediate_size}));
  CHECK(posttrain::adapter_parameters(*adapted).size() == static_cast<size_t>(c.num_hidden_layers * 7 * 2));
  // A is PEFT's kaiming-uniform(a = sqrt(5)): inside +-1/sqrt(in), and not all zero.
  auto a = params["model.layers.0.self_attn.q_proj.lora_A.weight"];
  CHECK(a.abs().max().item<double>() <= 1.0 / std::sqrt(static_cast<double>(c.hidden_size)));
  CHECK(a.abs().max().item<double>() > 0.5 / std::sqrt(static_cast<double>(c.hidden_size)));

  // One projection by hand, in float64: y = x W^T + b + (8 / 4) x A^T B^T.
  randomize_b(*adapted, 5);
  auto& q = *adapted->model->layers[0]->as<posttrain::QwenDecoderLayerImpl>()->self_attn->q_proj;
  auto x = torch::randn({3, c.hidden_size});
  auto x64 = x.to(torch::kFloat64);
  auto expected = torch::matmul(x64, q.weight.to(torch::kFloat64).t()) +
                  2.0 * torch::matmul(torch::matmul(x64, q.lora_A->weight.to(torch::kFloat64).t()),
                                      q.lora_B->weight.to(torch::kFloat64).t());
  if (q.bias.defined()) expected = expected + q.bias.to(torch::kFloat64);
  CHECK(torch::allclose(q.forward(x).to(torch::kFloat64), expected, 1e-5, 1e-6));
  {
    posttrain::AdaptersDisabled as_base(*adapted);  // the reference: the base again, exactly
    CHECK(torch::equal(logprobs_of(*base, ids), logprobs_of(*adapted, ids)));
  }
  CHECK_FALSE(torch::equal(logprobs_of(*base, ids), logprobs_of(*adapted, ids)));  // and back on
}

TEST_CASE("LoRA: only adapter tensors get gradients, and at B = 0 the gradient of A is zero", "[models][lora]") {
  auto model = tiny_model(4);
  posttrain::add_lora(*model, spec(2, 4), 1, "");
  model->train();
  const auto trained = posttrain::train_only_adapters(*model);
  auto ids = torch::randint(0, 97, {2, 6}, torch::kInt64);
  logprobs_of(*model, ids).sum().backward();
  int64_t a_count = 0, b_nonzero = 0;
  for (const auto& item : model->named_parameters()) {
    const bool adapter = item.key().find(".lora_") != std::string::npos;
    INFO(item.key());
    if (!adapter) {
      CHECK_FALSE(item.value().grad().defined());  // frozen: no gradient is even allocated
      continue;
    }
    REQUIRE(item.value().grad().defined());
    // dL/dA = scale * B^T (dL/dy) x^T, and B = 0.
    if (item.key().find(".lora_A.") != std::string::npos) {
      CHECK(item.value().grad().abs().max().item<double>() == 0.0);
      ++a_count;
    } else {
      b_nonzero += item.value().grad().abs().max().item<double>() > 0;
    }
  }
  CHECK(a_count == static_cast<int64_t>(trained.size() / 2));
  CHECK(b_nonzero == a_count);
}

TEST_CASE("LoRA: merged weights give the adapted model's outputs", "[models][lora]") {
  auto adapted = tiny_model(6);
  posttrain::LoraSpec s = spec(3, 6);
  s.target_modules = {"q_proj", "v_proj", "down_proj"};
  posttrain::add_lora(*adapted, s, 2, "");
  randomize_b(*adapted, 9);
  adapted->eval();
  auto ids = torch::randint(0, 97, {2, 8}, torch::kInt64);
  auto before = logprobs_of(*adapted, ids);
  posttrain::merge_lora(*adapted);
  CHECK_FALSE(posttrain::has_lora(*adapted));
  CHECK(posttrain::adapter_parameters(*adapted).empty());
  auto after = logprobs_of(*adapted, ids);
  CHECK((before - after).abs().max().item<double>() <= 1e-5);
  CHECK((before - logprobs_of(*tiny_model(6), ids)).abs().max().item<double>() > 1e-3);  // the adapter mattered
}

TEST_CASE("LoRA: the adapter folder is PEFT's format and loads back to the same outputs", "[models][lora]") {
  test::TempDir tmp("lora-format");
  auto base = tiny_model(7);
  posttrain::SaveOptions save;
  save.tokenizer_dir = test::tokenizer_dir();
  // A base whose vocabulary matches the tokenizer is not needed here: the folder is read as weights.
  posttrain::save_model(*base, tmp / "base", save);
  auto adapted = posttrain::load_model(tmp / "base");
  posttrain::LoraSpec s = spec(4, 16);
  s.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  s.dropout = 0.05;
  posttrain::add_lora(*adapted, s, 3, tmp / "base");
  randomize_b(*adapted, 4);
  posttrain::save_adapter(*adapted, tmp / "adapter", test::tokenizer_dir());

  // PEFT's documented files and fields (docs/source/developer_guides/checkpoint.md).
  CHECK(std::filesystem::exists(tmp / "adapter/adapter_config.json"));
  CHECK(std::filesystem::exists(tmp / "adapter/adapter_model.safetensors"));
  CHECK_FALSE(std::filesystem::exists(tmp / "adapter/model.safetensors"));
  auto config = nlohmann::json::parse(test::read_text(tmp / "adapter/adapter_config.json"));
  CHECK(config["peft_type"] == "LORA");
  CHECK(config["task_type"] == "CAUSAL_LM");
  CHECK(config["r"] == 4);
  CHECK(config["lora_alpha"].is_number_integer());
  CHECK(config["lora_alpha"] == 16);
  CHECK(config["lora_dropout"].get<double>() == 0.05);
  CHECK(config["target_modules"] == nlohmann::json({"q_proj", "k_proj", "v_proj", "o_proj"}));
  CHECK(config["bias"] == "none");
  CHECK(config["use_dora"] == false);
  CHECK(config["use_rslora"] == false);
  CHECK(config["fan_in_fan_out"] == false);
  CHECK(config["base_model_name_or_path"] == std::filesystem::absolute(tmp / "base").lexically_normal().string());
  // Keys: "base_model.model." + the HF module path + ".lora_A.weight" / ".lora_B.weight", no adapter name.
  const auto tensors = posttrain::read_safetensors(tmp / "adapter/adapter_model.safetensors");
  const auto& c = base->config;
  CHECK(tensors.size() == static_cast<size_t>(c.num_hidden_layers * 4 * 2));
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer)
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"})
      for (const char* ab : {"lora_A", "lora_B"}) {
        const std::string key =
            "base_model.model.model.layers." + std::to_string(layer) + ".self_attn." + proj + "." + ab + ".weight";
        INFO(key);
        REQUIRE(tensors.count(key));
        CHECK(tensors.at(key).scalar_type() == torch::kFloat32);
      }
  CHECK(tensors.at("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight").sizes() ==
        torch::IntArrayRef({c.num_key_value_heads * c.head_dim, 4}));

  // Loading the folder gives the adapted model back; merge gives a plain model with the same outputs.
  posttrain::LoadOptions keep;
  keep.keep_adapters = true;
  auto loaded = posttrain::load_model(tmp / "adapter", keep);
  CHECK(posttrain::has_lora(*loaded));
  adapted->eval();
  loaded->eval();
  auto ids = torch::randint(0, 97, {1, 9}, torch::kInt64);
  CHECK(torch::equal(logprobs_of(*adapted, ids), logprobs_of(*loaded, ids)));
  // By default the adapters come merged: a plain model with the same outputs.
  auto merged = posttrain::load_model(tmp / "adapter");
  CHECK_FALSE(posttrain::has_lora(*merged));
  merged->eval();
  CHECK((logprobs_of(*adapted, ids) - logprobs_of(*merged, ids)).abs().max().item<double>() <= 1e-5);
}

TEST_CASE("LoRA: adapter folders posttrain cannot honour are refused naming the file and the field", "[models][lora]") {
  test::TempDir tmp("lora-bad");
  auto base = tiny_model(8);
  posttrain::save_model(*base, tmp / "base", {});
  auto adapted = posttrain::load_model(tmp / "base");
  posttrain::add_lora(*adapted, spec(2, 4), 0, tmp / "base");
  posttrain::save_adapter(*adapted, tmp / "good");
  const std::string good = test::read_text(tmp / "good/adapter_config.json");

  auto variant = [&](const std::string& name, const std::function<void(nlohmann::json&)>& change) {
    std::filesystem::copy(tmp / "good", tmp / name);
    auto j = nlohmann::json::parse(good);
    change(j);
    test::write_text(tmp / name + "/adapter_config.json", j.dump());
    return test::user_error_of([&] { posttrain::load_model(tmp / name); });
  };
  CHECK(variant("dora", [](nlohmann::json& j) { j["use_dora"] = true; }).find("adapter_config.json: use_dora: DoRA") !=
        std::string::npos);
  CHECK(variant("regex", [](nlohmann::json& j) { j["target_modules"] = ".*proj"; }).find("target_modules") !=
        std::string::npos);
  CHECK(variant("ia3", [](nlohmann::json& j) { j["peft_type"] = "IA3"; }).find("peft_type must be \"LORA\"") !=
        std::string::npos);
  CHECK(variant("nobase", [&](nlohmann::json& j) {
          j["base_model_name_or_path"] = "Qwen/Qwen3-0.6B";
        }).find("\"Qwen/Qwen3-0.6B\" is not a model folder on this machine") != std::string::npos);
  CHECK(variant("other-rank", [](nlohmann::json& j) { j["r"] = 3; }).find("has shape [2, ") != std::string::npos);
  // A tensor missing from the weights file.
  std::filesystem::copy(tmp / "good", tmp / "missing");
  auto tensors = posttrain::read_safetensors(tmp / "missing/adapter_model.safetensors");
  tensors.erase("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight");
  posttrain::write_safetensors(tmp / "missing/adapter_model.safetensors", {tensors.begin(), tensors.end()});
  CHECK(test::user_error_of([&] {
          posttrain::load_model(tmp / "missing");
        }).find("missing tensor 'base_model.model.model.layers.1.mlp.up_proj.lora_B.weight'") != std::string::npos);
  // A relative base path is relative to the adapter folder.
  CHECK(variant("relative", [](nlohmann::json& j) { j["base_model_name_or_path"] = "../base"; }).empty());
}
