// The chunked LM-head log-prob against the plain "logits -> log_softmax -> gather" in values and
// gradients, and a hand-worked case.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <utility>
#include <vector>

#include "models/logprobs.h"
#include "models/qwen.h"
#include "tests/weights_util.h"

TEST_CASE("chunked log-probs on a hand-worked case", "[models][logprobs]") {
  // hidden = [1, 0] and weight rows [0,0], [1,0], [0,1] give logits [0, 1, 0]:
  // log p(1) = 1 - log(1 + e + 1) = 1 - log(2 + e).
  auto hidden = torch::tensor({{1.0f, 0.0f}});
  auto weight = torch::tensor({{0.0f, 0.0f}, {1.0f, 0.0f}, {0.0f, 1.0f}});
  auto out = posttrain::chunked_token_logprobs(hidden, weight, torch::tensor({1}, torch::kInt64));
  CHECK(out[0].item<double>() == Approx(1.0 - std::log(2.0 + std::exp(1.0))).epsilon(1e-6));
  auto ignored = posttrain::chunked_token_logprobs(hidden, weight, torch::tensor({posttrain::kIgnoreIndex}));
  CHECK(ignored[0].item<double>() == 0.0);
}

TEST_CASE("chunked log-probs equal the unchunked reference, values and gradients", "[models][logprobs]") {
  torch::manual_seed(0);
  const int64_t N = 37, H = 16, V = 211;
  auto hidden = torch::randn({N, H}, torch::kFloat64).requires_grad_(true);
  auto weight = torch::randn({V, H}, torch::kFloat64).mul(0.5).requires_grad_(true);
  auto targets = torch::randint(0, V, {N}, torch::kInt64);
  targets[5] = posttrain::kIgnoreIndex;
  targets[20] = posttrain::kIgnoreIndex;
  auto valid = targets.ne(posttrain::kIgnoreIndex);
  auto upstream = torch::randn({N}, torch::kFloat64);

  // Reference: full logits, autograd through log_softmax.
  auto logp_ref =
      torch::log_softmax(torch::matmul(hidden, weight.t()), 1).gather(1, targets.clamp_min(0).unsqueeze(1)).squeeze(1) *
      valid.to(torch::kFloat64);
  auto grads_ref = torch::autograd::grad({(logp_ref * upstream).sum()}, {hidden, weight});

  for (const auto& [chunk, keep_bytes] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 0}, {8, 0}, {64, 0}, {8, posttrain::kKeepSoftmaxBytes}, {64, posttrain::kKeepSoftmaxBytes}}) {
    INFO("chunk rows " << chunk << (keep_bytes ? ", softmax kept for backward" : ", logits recomputed in backward"));
    auto logp = posttrain::chunked_token_logprobs(hidden, weight, targets, chunk, keep_bytes);
    CHECK(torch::allclose(logp.to(torch::kFloat64), logp_ref, 1e-5, 1e-5));
    auto grads = torch::autograd::grad({(logp.to(torch::kFloat64) * upstream).sum()}, {hidden, weight});
    CHECK(torch::allclose(grads[0], grads_ref[0], 1e-4, 1e-5));
    CHECK(torch::allclose(grads[1], grads_ref[1], 1e-4, 1e-5));
    CHECK(grads[0][5].abs().sum().item<double>() == 0.0);  // ignored target: no gradient
  }
}

namespace {

using test::tiny_model;

}  // namespace

TEST_CASE("activation checkpointing gives the same gradients as plain backward", "[models][checkpointing]") {
  auto model = tiny_model(3);
  const auto& c = model->config;
  model->train();
  auto ids = torch::randint(0, 97, {2, 9}, torch::kInt64);
  auto positions = torch::arange(9).unsqueeze(0).expand({2, 9});
  auto gradients = [&](bool checkpoint) {
    model->model->checkpoint_layers = checkpoint;
    model->zero_grad();
    auto hidden = model->hidden_states(ids, positions);
    auto logp = posttrain::chunked_token_logprobs(hidden.narrow(1, 0, 8).reshape({-1, c.hidden_size}),
                                                  model->lm_head_weight(), ids.narrow(1, 1, 8).reshape({-1}));
    logp.sum().backward();
    std::vector<torch::Tensor> out;
    for (const auto& p : model->parameters()) out.push_back(p.grad().clone());
    return out;
  };
  auto plain = gradients(false), recomputed = gradients(true);
  REQUIRE(plain.size() == recomputed.size());
  for (size_t i = 0; i < plain.size(); ++i) CHECK(torch::allclose(plain[i], recomputed[i], 1e-6, 1e-7));
  CHECK(plain[3].abs().sum().item<double>() > 0);  // a layer weight really received gradient
}

TEST_CASE("continuation log-probs through the KV cache equal whole-sequence sums", "[models][logprobs]") {
  auto model = tiny_model(5);
  model->eval();
  const std::vector<int32_t> prefix = {3, 14, 15, 92, 65, 35};
  // Continuations of different lengths, sharing a first token, so each must overwrite the cache the
  // previous one wrote.
  const std::vector<std::vector<int32_t>> continuations = {{8, 9, 7, 9}, {8}, {23, 84}};
  const auto got = posttrain::continuation_logprobs(*model, prefix, continuations);
  REQUIRE(got.size() == 3);
  for (size_t k = 0; k < continuations.size(); ++k) {
    // Oracle: one plain forward over prefix + continuation, no cache; sum the continuation's terms.
    std::vector<int64_t> ids(prefix.begin(), prefix.end());
    ids.insert(ids.end(), continuations[k].begin(), continuations[k].end());
    const auto per_token = posttrain::sequence_logprobs(*model, ids);  // [t - 1] = log p(ids[t] | ids[<t])
    double expected = 0;
    for (size_t t = prefix.size(); t < ids.size(); ++t) expected += per_token[t - 1];
    CHECK(got[k] == Approx(expected).margin(1e-4));
  }
  CHECK_THROWS(posttrain::continuation_logprobs(*model, prefix, {{}}));
}
