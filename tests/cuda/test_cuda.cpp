// CUDA checks, run on a GPU machine (scripts/device/check.sh); on a machine without CUDA each test
// says so and passes without checking anything. The oracle is the CPU float32 path, itself checked
// against scalar loops (models/test_forward_oracle.cpp) and HF transformers (scripts/device/compare_hf.py).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "models/autocast.h"
#include "models/checkpoint.h"
#include "models/config.h"
#include "models/generate.h"
#include "models/logprobs.h"
#include "models/qwen.h"
#include "tests/test_util.h"

namespace {

bool have_cuda() {
  if (torch::cuda::is_available()) return true;
  WARN("no CUDA device in this build or on this machine: CUDA check not run");
  return false;
}

std::vector<int64_t> sample_ids() { return {9707, 11, 1879, 0, 576, 3974, 13876, 38835, 34208, 916, 279, 15678, 13}; }

}  // namespace

TEST_CASE("CUDA float32 log-probs equal the CPU ones", "[cuda]") {
  if (!have_cuda()) return;
  posttrain::QwenForCausalLM model(posttrain::preset_config("tiny"));
  posttrain::init_weights(*model, 3);
  const auto on_cpu = posttrain::sequence_logprobs(*model, sample_ids());
  model->to(torch::kCUDA);
  const auto on_gpu = posttrain::sequence_logprobs(*model, sample_ids());
  REQUIRE(on_cpu.size() == on_gpu.size());
  for (size_t i = 0; i < on_cpu.size(); ++i) CHECK(on_gpu[i] == Approx(on_cpu[i]).margin(1e-4));
}

TEST_CASE("bf16 autocast log-probs stay within bf16 rounding of float32", "[cuda]") {
  if (!have_cuda()) return;
  posttrain::QwenForCausalLM model(posttrain::preset_config("tiny"));
  posttrain::init_weights(*model, 3);
  model->to(torch::kCUDA);
  const auto fp32 = posttrain::sequence_logprobs(*model, sample_ids());
  std::vector<double> bf16;
  {
    posttrain::Bf16Autocast autocast(true);
    bf16 = posttrain::sequence_logprobs(*model, sample_ids());
  }
  // bf16 keeps 8 significant bits: logits of size ~|log V| = 12 are off by up to ~0.05.
  for (size_t i = 0; i < fp32.size(); ++i) CHECK(bf16[i] == Approx(fp32[i]).margin(0.15));
  CHECK(model->lm_head_weight().scalar_type() == torch::kFloat32);  // weights untouched
}

TEST_CASE("CUDA greedy generation equals CPU greedy generation", "[cuda]") {
  if (!have_cuda()) return;
  posttrain::QwenForCausalLM model(posttrain::preset_config("tiny"));
  posttrain::init_weights(*model, 4);
  posttrain::GenerationOptions options;
  options.max_new_tokens = 12;
  options.temperature = 0;
  const std::vector<std::vector<int32_t>> prompts = {{9707, 11, 1879}, {576, 3974, 13876, 38835, 34208}};
  const auto on_cpu = posttrain::generate(*model, prompts, options);
  model->to(torch::kCUDA);
  const auto on_gpu = posttrain::generate(*model, prompts, options);
  CHECK(on_gpu.new_ids == on_cpu.new_ids);
}

TEST_CASE("SFT on CUDA follows the CPU loss curve, bf16 autocast stays close", "[cuda]") {
  if (!have_cuda()) return;
  test::TempDir tmp("cuda-sft");
  const std::string cmd = "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin() + " run " +
                          test::source_dir() + "/recipes/quickstart/sft.yaml train.steps=12 checkpoint.every=0 ";
  REQUIRE(test::run(cmd + "output_dir=" + tmp / "cpu").exit_code == 0);
  REQUIRE(test::run(cmd + "train.device=cuda output_dir=" + tmp / "gpu").exit_code == 0);
  REQUIRE(test::run(cmd + "train.device=cuda train.precision=bf16 output_dir=" + tmp / "bf16").exit_code == 0);
  const auto cpu = test::run_losses(tmp / "cpu"), gpu = test::run_losses(tmp / "gpu"),
             bf16 = test::run_losses(tmp / "bf16");
  REQUIRE(cpu.size() == 12);
  REQUIRE(gpu.size() == 12);
  REQUIRE(bf16.size() == 12);
  for (size_t i = 0; i < cpu.size(); ++i) {
    CHECK(gpu[i] == Approx(cpu[i]).epsilon(2e-3));
    CHECK(bf16[i] == Approx(cpu[i]).epsilon(3e-2));
  }
  CHECK(bf16.back() < bf16.front() - 1.0);  // it learns
}
