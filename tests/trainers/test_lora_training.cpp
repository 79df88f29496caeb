// LoRA through the CLI, as a user runs it: an SFT run trains and saves only the adapters (a PEFT
// folder, optimizer state of the adapters' size, counted by hand), a resumed run (with adapter
// dropout) ends bit-identical to an uninterrupted one, `posttrain merge` gives a plain folder with
// the adapter's log-probs. DPO and GRPO use the policy with adapters disabled as their reference: the
// policy equals it at step 1 (DPO margin 0, KL 0) and differs from it later (were the reference the
// adapted policy itself, both would stay exactly 0). A reward model saves its head as PEFT's
// modules_to_save. Bad `lora:` settings are refused naming the key.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/config.h"
#include "tests/test_util.h"

namespace {

test::CommandResult cli(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " " + args);
}

std::string sft_recipe(const test::TempDir& tmp) {
  const std::string path = tmp / "recipe.yaml";
  test::write_text(path,
                   "method: sft\nseed: 5\nbase: {preset: tiny, seed: 0}\n"
                   "data: {train: " +
                       test::source_dir() +
                       "/recipes/data/sft_demo_chat.jsonl, max_length: 48}\n"
                       "train: {steps: 4, batch_size: 4, micro_batch_size: 2, lr: 5.0e-3}\n"
                       "lora: {rank: 4, alpha: 8, dropout: 0.1, target_modules: [q_proj, v_proj, up_proj]}\n"
                       "checkpoint: {every: 2, keep_last: 2}\n");
  return path;
}

std::vector<double> logprobs(const std::string& model, const std::string& text) {
  auto r = cli("logprobs --model " + model + " --text '" + text + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.output.substr(r.output.find('{')))["logprobs"].get<std::vector<double>>();
}

}  // namespace

TEST_CASE("LoRA SFT: adapters only, resume is bit-exact, merge keeps the outputs", "[trainers][lora]") {
  test::TempDir tmp("lora-sft");
  const std::string recipe = sft_recipe(tmp), run_dir = tmp / "run";
  auto r = cli("run " + recipe + " output_dir=" + run_dir);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);

  // The final model is a PEFT adapter folder, not a full model.
  CHECK(std::filesystem::exists(run_dir + "/final/adapter_config.json"));
  CHECK_FALSE(std::filesystem::exists(run_dir + "/final/model.safetensors"));
  // Trainable parameters, by hand: per layer and projection rank x (in + out).
  const posttrain::QwenConfig c = posttrain::preset_config("tiny");
  const int64_t q_out = c.num_attention_heads * c.head_dim;
  const int64_t per_layer = 4 * (c.hidden_size + q_out) + 4 * (c.hidden_size + c.num_key_value_heads * c.head_dim) +
                            4 * (c.hidden_size + c.intermediate_size);
  const auto manifest = nlohmann::json::parse(test::read_text(run_dir + "/manifest.json"));
  CHECK(manifest["parameters"]["trainable"] == per_layer * c.num_hidden_layers);
  CHECK(manifest["parameters"]["total"].get<int64_t>() > 50 * per_layer * c.num_hidden_layers);
  // The optimizer state holds the adapters' moments and nothing else.
  const auto state = posttrain::read_safetensors(run_dir + "/checkpoints/step-000004/optimizer.safetensors");
  CHECK(state.size() == static_cast<size_t>(2 * 3 * 2 * c.num_hidden_layers));  // exp_avg(_sq) x 3 proj x A, B
  int64_t state_elements = 0;
  for (const auto& [name, tensor] : state) {
    INFO(name);
    CHECK(name.find(".lora_") != std::string::npos);
    state_elements += tensor.numel();
  }
  CHECK(state_elements == 2 * per_layer * c.num_hidden_layers);

  // Resume from the step-2 checkpoint (dropout masks included) == the uninterrupted run, bit for bit.
  const std::string whole = test::read_text(run_dir + "/final/adapter_model.safetensors");
  std::filesystem::remove_all(run_dir + "/final");
  std::filesystem::remove_all(run_dir + "/checkpoints/step-000004");
  auto resumed = cli("run " + recipe + " output_dir=" + run_dir);
  REQUIRE(resumed.exit_code == 0);
  CHECK(resumed.output.find("resumed from") != std::string::npos);
  CHECK(test::read_text(run_dir + "/final/adapter_model.safetensors") == whole);

  // generate / logprobs / eval read the adapter folder; merge gives a plain folder with the same outputs.
  auto merged = cli("merge --adapter " + run_dir + "/final --out " + tmp / "merged");
  INFO(merged.output);
  REQUIRE(merged.exit_code == 0);
  CHECK(std::filesystem::exists(tmp / "merged/model.safetensors"));
  CHECK_FALSE(std::filesystem::exists(tmp / "merged/adapter_config.json"));
  const std::string text = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n5";
  const auto adapted = logprobs(run_dir + "/final", text), plain = logprobs(tmp / "merged", text);
  const auto base = logprobs(test::test_cache_dir() + "/bases/tiny-seed0", text);
  REQUIRE(adapted.size() == plain.size());
  double merge_gap = 0, training_moved = 0;
  for (size_t i = 0; i < adapted.size(); ++i) {
    merge_gap = std::max(merge_gap, std::abs(adapted[i] - plain[i]));
    training_moved = std::max(training_moved, std::abs(adapted[i] - base[i]));
  }
  CHECK(merge_gap <= 1e-5);
  CHECK(training_moved > 1e-3);
  auto generated = cli("generate --model " + run_dir + "/final --prompt hello --max-new-tokens 3");
  CHECK(generated.exit_code == 0);
  // A second merge into an existing folder is refused; so is a folder that is no adapter.
  CHECK(cli("merge --adapter " + run_dir + "/final --out " + tmp / "merged").exit_code == 2);
  auto not_adapter = cli("merge --adapter " + tmp / "merged --out " + tmp / "again");
  CHECK(not_adapter.exit_code == 2);
  CHECK(not_adapter.output.find("not an adapter folder") != std::string::npos);
}

TEST_CASE("LoRA DPO and GRPO: the reference is the policy with its adapters disabled", "[trainers][lora]") {
  test::TempDir tmp("lora-reference");
  auto dpo = cli("run " + test::source_dir() + "/recipes/quickstart/dpo.yaml output_dir=" + tmp / "dpo" +
                 " train.steps=3 checkpoint.every=0 lora.rank=4 lora.alpha=16");
  INFO(dpo.output);
  REQUIRE(dpo.exit_code == 0);
  auto m = test::run_metrics(tmp / "dpo");
  REQUIRE(m.size() == 3);
  CHECK(m[0]["loss"].get<double>() == Approx(std::log(2.0)).epsilon(1e-6));  // policy == reference at B = 0
  CHECK(m[0]["rewards/margins"].get<double>() == Approx(0.0).margin(1e-7));
  CHECK(std::abs(m[2]["rewards/margins"].get<double>()) > 1e-5);  // the adapted policy left the reference
  auto manifest = nlohmann::json::parse(test::read_text(tmp / "dpo/manifest.json"));
  CHECK(manifest["reference"] == "the policy with its adapters disabled");

  auto grpo = cli("run " + test::source_dir() + "/recipes/quickstart/grpo.yaml base=" + test::bandit_base() +
                  " output_dir=" + tmp / "grpo" + " train.steps=3 checkpoint.every=0 lora.rank=4 lora.alpha=32");
  INFO(grpo.output);
  REQUIRE(grpo.exit_code == 0);
  auto g = test::run_metrics(tmp / "grpo");
  REQUIRE(g.size() == 3);
  CHECK(g[0]["kl"].get<double>() == 0.0);
  CHECK(g[2]["kl"].get<double>() != 0.0);
}

TEST_CASE("LoRA reward model: the score head is saved whole, as PEFT's modules_to_save", "[trainers][lora]") {
  test::TempDir tmp("lora-reward");
  auto r = cli("run " + test::source_dir() + "/recipes/quickstart/reward.yaml output_dir=" + tmp / "rm" +
               " train.steps=2 checkpoint.every=0 lora.rank=2");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto config = nlohmann::json::parse(test::read_text(tmp / "rm/final/adapter_config.json"));
  CHECK(config["task_type"] == "SEQ_CLS");
  CHECK(config["modules_to_save"] == nlohmann::json({"score"}));
  const auto tensors = posttrain::read_safetensors(tmp / "rm/final/adapter_model.safetensors");
  REQUIRE(tensors.count("base_model.model.score.weight"));
  CHECK(tensors.at("base_model.model.score.weight").size(0) == 1);
  auto model = posttrain::load_model(tmp / "rm/final");
  CHECK(model->is_classifier());
}

TEST_CASE("bad lora settings are refused naming the key", "[trainers][lora]") {
  test::TempDir tmp("lora-bad");
  const std::string recipe = sft_recipe(tmp);
  const auto refused = [&](const std::string& setting, const std::string& message) {
    auto r = cli("run " + recipe + " output_dir=" + tmp / "x " + setting);
    INFO(setting << ": " << r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(message) != std::string::npos);
  };
  refused("lora.rank=0", "lora.rank must be positive");
  refused("lora.target_modules=[q_proj,qkv]", "lora.target_modules \"qkv\" is not a projection of the Qwen decoder");
  refused("lora.dropout=1.5", "lora.dropout must be in [0, 1)");
  refused("train.activation_checkpointing=true", "lora.dropout must be 0 with train.activation_checkpointing");
  refused("lora.ranks=4", "lora.ranks: unknown key");
  CHECK_FALSE(std::filesystem::exists(tmp / "x/final"));
}
