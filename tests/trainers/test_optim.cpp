// AdamW against a hand-worked first step and a scalar double-precision oracle over several steps,
// for both its fused float32 CPU path and its tensor-op path (a float64 parameter).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "trainers/optim.h"

namespace {

posttrain::TrainSpec adamw_spec() {
  posttrain::TrainSpec spec;
  spec.beta1 = 0.9;
  spec.beta2 = 0.999;
  spec.eps = 1e-8;
  spec.weight_decay = 0.1;
  return spec;
}

// torch.optim.AdamW's update written out one element at a time, in double.
struct ScalarAdamW {
  std::vector<double> p, m, v;
  int64_t steps = 0;
  void step(const std::vector<double>& g, double lr, const posttrain::TrainSpec& s) {
    ++steps;
    const double bias1 = 1 - std::pow(s.beta1, steps), bias2 = 1 - std::pow(s.beta2, steps);
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = s.beta1 * m[i] + (1 - s.beta1) * g[i];
      v[i] = s.beta2 * v[i] + (1 - s.beta2) * g[i] * g[i];
      p[i] *= 1 - lr * s.weight_decay;
      p[i] -= lr * (m[i] / bias1) / (std::sqrt(v[i] / bias2) + s.eps);
    }
  }
};

}  // namespace

TEST_CASE("AdamW's first step is lr * sign(g) after decoupled decay", "[trainers][optim]") {
  // Step 1: m_hat = g and sqrt(v_hat) = |g|, so the update is lr * g / (|g| + eps); a zero gradient moves
  // the parameter only by weight decay: p * (1 - lr * wd).
  auto p = torch::tensor({1.0f, -2.0f, 0.5f});
  p.mutable_grad() = torch::tensor({0.1f, -0.3f, 0.0f});
  posttrain::AdamW adamw({{"w", p}}, adamw_spec());
  adamw.step(0.01);
  CHECK(p[0].item<double>() == Approx(1.0 * 0.999 - 0.01).margin(1e-6));
  CHECK(p[1].item<double>() == Approx(-2.0 * 0.999 + 0.01).margin(1e-6));
  CHECK(p[2].item<double>() == Approx(0.5 * 0.999).margin(1e-7));
}

TEST_CASE("AdamW matches a scalar double oracle over several steps, fused and op by op", "[trainers][optim]") {
  const auto spec = adamw_spec();
  const int64_t n = 100003;  // several parallel_for blocks, and a ragged last one
  torch::manual_seed(7);
  const auto initial = torch::randn({n}, torch::kFloat64);
  std::vector<torch::Tensor> grads;
  for (int k = 0; k < 5; ++k) grads.push_back(torch::randn({n}, torch::kFloat64) * (k + 1) * 0.01);
  const std::vector<double> lrs = {1e-3, 2e-3, 3e-3, 2e-3, 1e-3};

  ScalarAdamW oracle;
  oracle.p.assign(initial.data_ptr<double>(), initial.data_ptr<double>() + n);
  oracle.m.assign(n, 0.0);
  oracle.v.assign(n, 0.0);
  for (size_t k = 0; k < grads.size(); ++k)
    oracle.step(std::vector<double>(grads[k].data_ptr<double>(), grads[k].data_ptr<double>() + n), lrs[k], spec);
  const auto expected = torch::tensor(oracle.p, torch::kFloat64);

  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {  // float32: the fused loop; float64: tensor ops
    INFO("dtype " << dtype);
    auto p = initial.to(dtype).clone();  // not an alias of `initial` when dtype is float64
    posttrain::AdamW adamw({{"w", p}}, spec);
    for (size_t k = 0; k < grads.size(); ++k) {
      p.mutable_grad() = grads[k].to(dtype);
      adamw.step(lrs[k]);
    }
    const double max_error = (p.to(torch::kFloat64) - expected).abs().max().item<double>();
    CHECK(max_error < 1e-6);
    CHECK((p.to(torch::kFloat64) - initial).abs().max().item<double>() > 1e-3);  // it really moved
  }
}
