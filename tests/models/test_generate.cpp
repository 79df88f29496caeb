// Generation: the KV cache changes nothing, padding changes nothing, seeds reproduce, filters work.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "models/generate.h"
#include "models/logprobs.h"
#include "models/matvec.h"

namespace {

posttrain::QwenForCausalLM random_model(const std::string& type) {
  posttrain::QwenConfig c = posttrain::preset_config("tiny");
  c.model_type = type;
  c.vocab_size = 300;
  c.qk_norm = type == "qwen3";
  c.attention_bias = type == "qwen2";
  c.initializer_range = 0.5;  // peaky distributions, so greedy paths are far from ties
  posttrain::QwenForCausalLM model(c);
  posttrain::init_weights(*model, 11);
  return model;
}

const std::vector<std::vector<int32_t>> kPrompts = {{5, 6, 7, 8, 9, 10, 11}, {42}, {100, 3, 250, 17}};

}  // namespace

TEST_CASE("greedy with the KV cache equals greedy recomputed without it", "[models][generate]") {
  for (const char* type : {"qwen2", "qwen3"}) {
    auto model = random_model(type);
    posttrain::GenerationOptions options;
    options.max_new_tokens = 12;
    auto cached = posttrain::generate(*model, kPrompts, options);
    options.use_cache = false;
    auto recomputed = posttrain::generate(*model, kPrompts, options);
    CHECK(cached.new_ids == recomputed.new_ids);
    CHECK(cached.new_ids[0].size() == 12);
  }
}

TEST_CASE("a left-padded batch generates what each prompt generates alone", "[models][generate]") {
  auto model = random_model("qwen3");
  posttrain::GenerationOptions options;
  options.max_new_tokens = 10;
  auto batched = posttrain::generate(*model, kPrompts, options);
  for (size_t i = 0; i < kPrompts.size(); ++i)
    CHECK(posttrain::generate(*model, {kPrompts[i]}, options).new_ids[0] == batched.new_ids[i]);
}

TEST_CASE("greedy picks the argmax of the model's next-token distribution", "[models][generate]") {
  auto model = random_model("qwen2");
  posttrain::GenerationOptions options;
  options.max_new_tokens = 1;
  const auto next = posttrain::generate(*model, {kPrompts[0]}, options).new_ids[0][0];
  // Independent route: score every candidate continuation with the log-prob path; the argmax wins.
  std::vector<int64_t> ids(kPrompts[0].begin(), kPrompts[0].end());
  ids.push_back(0);
  double best = -1e9;
  int32_t best_id = -1;
  for (int32_t candidate = 0; candidate < 300; ++candidate) {
    ids.back() = candidate;
    const double lp = posttrain::sequence_logprobs(*model, ids).back();
    if (lp > best) best = lp, best_id = candidate;
  }
  CHECK(next == best_id);
}

TEST_CASE("the recorded entropy is that of the tempered distribution sampled from", "[models][generate]") {
  auto model = random_model("qwen2");
  // Independent route: every candidate's log-prob at T = 1 (logits minus a constant), tempered here.
  std::vector<int64_t> ids(kPrompts[0].begin(), kPrompts[0].end());
  ids.push_back(0);
  std::vector<double> logp;
  for (int32_t candidate = 0; candidate < 300; ++candidate) {
    ids.back() = candidate;
    logp.push_back(posttrain::sequence_logprobs(*model, ids).back());
  }
  for (double T : {1.0, 0.5}) {
    INFO("T = " << T);
    double z = 0, entropy = 0;
    for (double lp : logp) z += std::exp(lp / T);
    for (double lp : logp) {
      const double p = std::exp(lp / T) / z;
      entropy -= p * std::log(p);
    }
    posttrain::GenerationOptions options;
    options.max_new_tokens = 1;
    options.temperature = T;
    options.record_entropy = true;
    const auto out = posttrain::generate(*model, {kPrompts[0]}, options);
    CHECK(out.entropies[0][0] == Approx(entropy).epsilon(1e-3));
  }
}

TEST_CASE("sampling is reproducible from the seed and respects stop ids", "[models][generate]") {
  auto model = random_model("qwen3");
  posttrain::GenerationOptions options;
  options.max_new_tokens = 16;
  options.temperature = 1.0;
  options.top_p = 0.9;
  options.seed = 1;
  auto a = posttrain::generate(*model, kPrompts, options);
  auto b = posttrain::generate(*model, kPrompts, options);
  CHECK(a.new_ids == b.new_ids);
  options.seed = 2;
  CHECK(posttrain::generate(*model, kPrompts, options).new_ids != a.new_ids);

  // Stop on the 3rd token sampled for prompt 0: generation ends right there, stop id included.
  options.seed = 1;
  const int32_t stop = a.new_ids[0][2];
  options.stop_ids = {stop};
  auto stopped = posttrain::generate(*model, {kPrompts[0]}, options);
  const auto& ids = stopped.new_ids[0];
  CHECK(stopped.stopped[0]);
  CHECK(ids.back() == stop);
  CHECK(std::count(ids.begin(), ids.end(), stop) == 1);
  CHECK(ids.size() <= 3);
}

TEST_CASE("sampling filters: top-k, top-p and temperature on a known distribution", "[models][generate]") {
  // Logits log(0.5), log(0.3), log(0.15), log(0.05): probabilities 0.5, 0.3, 0.15, 0.05.
  const std::vector<float> logits = {std::log(0.3f), std::log(0.5f), std::log(0.05f), std::log(0.15f)};
  auto histogram = [&](posttrain::GenerationOptions options) {
    std::map<int32_t, int> counts;
    uint64_t state = 99;
    for (int i = 0; i < 20000; ++i) counts[posttrain::sample_next_token(logits.data(), 4, options, state)]++;
    return counts;
  };
  posttrain::GenerationOptions options;
  options.temperature = 0.0;
  CHECK(histogram(options) == std::map<int32_t, int>{{1, 20000}});
  options.temperature = 1.0;
  auto full = histogram(options);
  CHECK(full[1] / 20000.0 == Approx(0.5).margin(0.015));
  CHECK(full[0] / 20000.0 == Approx(0.3).margin(0.015));
  CHECK(full[3] / 20000.0 == Approx(0.15).margin(0.015));
  CHECK(full[2] / 20000.0 == Approx(0.05).margin(0.01));
  options.top_k = 2;  // renormalised over {0.5, 0.3}: 0.625, 0.375
  auto top2 = histogram(options);
  CHECK(top2.size() == 2);
  CHECK(top2[1] / 20000.0 == Approx(0.625).margin(0.015));
  options.top_k = 0;
  options.top_p = 0.85;  // 0.5 + 0.3 = 0.8 < 0.85, so 0.15 joins: {0.5, 0.3, 0.15} / 0.95
  auto nucleus = histogram(options);
  CHECK(nucleus.size() == 3);
  CHECK(nucleus[3] / 20000.0 == Approx(0.15 / 0.95).margin(0.015));
  options.top_p = 1.0;
  options.temperature = 0.5;  // p^2 renormalised: 0.25, 0.09, 0.0225, 0.0025 over 0.365
  auto sharp = histogram(options);
  CHECK(sharp[1] / 20000.0 == Approx(0.25 / 0.365).margin(0.015));
}

TEST_CASE("a single row times a weight matrix equals a float64 oracle, split over threads or not",
          "[models][generate]") {
  torch::manual_seed(3);
  // in: below one SIMD width, ragged tails of 8 and 32, the 0.5B hidden size; out up to 5000 rows
  // (several threads' share at the kernel's grain); with and without bias; [in], [1, in], [1, 1, in].
  for (int64_t in : {5, 37, 64, 896}) {
    for (int64_t out : {3, 130, 5000}) {
      auto weight = torch::randn({out, in});
      auto bias = torch::randn({out});
      auto x = torch::randn({1, 1, in});
      auto oracle = torch::matmul(weight.to(torch::kFloat64), x.view({in}).to(torch::kFloat64));  // [out]
      torch::NoGradGuard no_grad;
      auto y = posttrain::linear_rows(x, weight);
      REQUIRE(y.sizes() == torch::IntArrayRef({1, 1, out}));
      CHECK(torch::allclose(y.view({out}).to(torch::kFloat64), oracle, 1e-5, 1e-5));
      auto with_bias = posttrain::linear_rows(x.view({in}), weight, bias);
      REQUIRE(with_bias.sizes() == torch::IntArrayRef({out}));
      CHECK(torch::allclose(with_bias.to(torch::kFloat64), oracle + bias.to(torch::kFloat64), 1e-5, 1e-5));
    }
  }
  // Under autograd it must still give gradients (it falls back to torch::linear there).
  auto weight = torch::randn({7, 9}, torch::requires_grad());
  auto x = torch::randn({1, 9});
  posttrain::linear_rows(x, weight).sum().backward();
  CHECK(torch::allclose(weight.grad(), x.expand({7, 9})));
}
