// The RL arithmetic against numbers worked out by hand: KL estimators, the group advantage
// estimators, GAE on a 4-step trajectory, masked whitening.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>

#include "trainers/rl_math.h"
#include "trainers/rollouts.h"

namespace {

torch::Tensor row(std::vector<double> values) { return torch::tensor(values, torch::kFloat64).unsqueeze(0); }

}  // namespace

TEST_CASE("k1 and k3 KL estimates by hand", "[trainers][rl]") {
  // logp = -1, ref = -1.5: r = ref - logp = -0.5.  k1 = 0.5.  k3 = e^-0.5 + 0.5 - 1 = 0.1065306597.
  auto logp = torch::tensor({-1.0, -2.0}, torch::kFloat64), ref = torch::tensor({-1.5, -2.0}, torch::kFloat64);
  auto k1 = posttrain::kl_estimate("k1", logp, ref), k3 = posttrain::kl_estimate("k3", logp, ref);
  CHECK(k1[0].item<double>() == Approx(0.5));
  CHECK(k3[0].item<double>() == Approx(std::exp(-0.5) - 0.5).epsilon(1e-12));
  CHECK(k3[0].item<double>() == Approx(0.1065306597));
  CHECK(k1[1].item<double>() == 0.0);  // equal log-probs: no divergence
  CHECK(k3[1].item<double>() == 0.0);
  // k3 is never negative, k1 can be: r = +0.5 gives k1 = -0.5, k3 = e^0.5 - 1.5 = 0.1487212707.
  auto flipped = posttrain::kl_estimate("k3", ref.narrow(0, 0, 1), logp.narrow(0, 0, 1));
  CHECK(flipped[0].item<double>() == Approx(0.1487212707));
  CHECK_THROWS(posttrain::kl_estimate("k2", logp, ref));
}

TEST_CASE("group advantage estimators by hand", "[trainers][rl]") {
  // One prompt, 4 samples, rewards 1, 0, 0, 1: mean 0.5, sample std sqrt(4 * 0.25 / 3) = 0.5773502692.
  auto rewards = row({1, 0, 0, 1});
  auto grpo = posttrain::find_advantage_estimator("grpo")->advantages(rewards, 0, 0);
  CHECK(grpo[0][0].item<double>() == Approx(0.5 / (0.5773502692 + 1e-4)));
  CHECK(grpo[0][1].item<double>() == Approx(-0.5 / (0.5773502692 + 1e-4)));
  // RLOO: 1 - (0 + 0 + 1) / 3 = 2/3 ; 0 - (1 + 0 + 1) / 3 = -2/3.
  auto rloo = posttrain::find_advantage_estimator("rloo")->advantages(rewards, 0, 0);
  CHECK(rloo[0][0].item<double>() == Approx(2.0 / 3));
  CHECK(rloo[0][1].item<double>() == Approx(-2.0 / 3));
  // REINFORCE++: (r - batch mean) / (batch std + 1e-4) with the given global statistics.
  auto rpp = posttrain::find_advantage_estimator("reinforce++")->advantages(rewards, 0.25, 2.0);
  CHECK(rpp[0][0].item<double>() == Approx(0.75 / (2.0 + 1e-4)));
  CHECK(rpp[0][1].item<double>() == Approx(-0.25 / (2.0 + 1e-4)));
  // A group whose samples all scored the same carries no signal: 0, never 0/0.
  auto same = row({0.7, 0.7, 0.7});
  for (const char* name : {"grpo", "rloo"}) {
    auto a = posttrain::find_advantage_estimator(name)->advantages(same, 0, 0);
    CHECK(a.abs().max().item<double>() == Approx(0.0).margin(1e-9));
  }
  CHECK(posttrain::find_advantage_estimator("reinforce++")->default_kl_placement == "reward");
  CHECK(posttrain::find_advantage_estimator("grpo")->default_kl_placement == "loss");
}

TEST_CASE("GAE on a 4-step trajectory by hand", "[trainers][rl]") {
  // Row: 1 prompt position (masked out), then 4 response tokens. gamma = 0.9, lambda = 0.5.
  // rewards r = [_, 0, 0, 0, 1], values V = [_, 0.5, 0.4, 0.3, 0.2]; V after the last token = 0.
  // deltas: d4 = 1 - 0.2 = 0.8 ; d3 = 0 + 0.9*0.2 - 0.3 = -0.12 ; d2 = 0.9*0.3 - 0.4 = -0.13 ;
  //         d1 = 0.9*0.4 - 0.5 = -0.14.   gl = 0.45.
  // A4 = 0.8 ; A3 = -0.12 + 0.45*0.8 = 0.24 ; A2 = -0.13 + 0.45*0.24 = -0.022 ;
  // A1 = -0.14 + 0.45*(-0.022) = -0.1499.
  auto rewards = row({5.0, 0, 0, 0, 1}), values = row({9.0, 0.5, 0.4, 0.3, 0.2}), mask = row({0, 1, 1, 1, 1});
  auto a = posttrain::gae_advantages(rewards, values, mask, 0.9, 0.5);
  CHECK(a[0][0].item<double>() == 0.0);
  CHECK(a[0][1].item<double>() == Approx(-0.1499));
  CHECK(a[0][2].item<double>() == Approx(-0.022));
  CHECK(a[0][3].item<double>() == Approx(0.24));
  CHECK(a[0][4].item<double>() == Approx(0.8));
  // gamma = lambda = 1: advantages are return - value: [1 - 0.5, 1 - 0.4, 1 - 0.3, 1 - 0.2].
  auto mc = posttrain::gae_advantages(rewards, values, mask, 1.0, 1.0);
  CHECK(mc[0][1].item<double>() == Approx(0.5));
  CHECK(mc[0][4].item<double>() == Approx(0.8));
  // Padding after the response (mask 0) changes nothing.
  auto padded = posttrain::gae_advantages(row({5.0, 0, 0, 0, 1, 7}), row({9.0, 0.5, 0.4, 0.3, 0.2, 3}),
                                          row({0, 1, 1, 1, 1, 0}), 0.9, 0.5);
  CHECK(padded[0][1].item<double>() == Approx(-0.1499));
  CHECK(padded[0][5].item<double>() == 0.0);
}

TEST_CASE("masked whitening uses only the masked entries", "[trainers][rl]") {
  // Masked values 1, 2, 3: mean 2, population variance 2/3.
  auto w = posttrain::masked_whiten(row({1, 2, 3, 100}), row({1, 1, 1, 0}));
  CHECK(w[0][0].item<double>() == Approx(-1 / std::sqrt(2.0 / 3 + 1e-8)));
  CHECK(w[0][2].item<double>() == Approx(1 / std::sqrt(2.0 / 3 + 1e-8)));
  CHECK(w[0][3].item<double>() == 0.0);
}

TEST_CASE("clipped surrogate by hand, and its gradient inside and outside the clip", "[trainers][rl]") {
  // eps = 0.2. Token 1: rho = e^0.1 = 1.10517, A = 2: min(2.2103, 2.2103) -> loss -2 e^0.1 (not clipped).
  // Token 2: rho = e^0.5 = 1.64872, A = 1: min(1.64872, 1.2) = 1.2 -> loss -1.2, gradient 0 (clipped).
  // Token 3: rho = e^0.5, A = -1: min(-1.64872, -1.2) = -1.64872 -> loss e^0.5, not clipped (pessimistic side).
  auto logp = torch::tensor({-1.0, -1.0, -1.0}, torch::kFloat64).requires_grad_(true);
  auto old_logp = torch::tensor({-1.1, -1.5, -1.5}, torch::kFloat64);
  auto advantages = torch::tensor({2.0, 1.0, -1.0}, torch::kFloat64);
  auto loss = posttrain::clipped_surrogate_loss(logp, old_logp, advantages, 0.2);
  CHECK(loss[0].item<double>() == Approx(-2 * std::exp(0.1)));
  CHECK(loss[1].item<double>() == Approx(-1.2));
  CHECK(loss[2].item<double>() == Approx(std::exp(0.5)));
  loss.sum().backward();
  const double h = 1e-6;
  for (int64_t i = 0; i < 3; ++i) {
    auto plus = logp.detach().clone(), minus = logp.detach().clone();
    plus[i] += h;
    minus[i] -= h;
    const double numeric = (posttrain::clipped_surrogate_loss(plus, old_logp, advantages, 0.2).sum().item<double>() -
                            posttrain::clipped_surrogate_loss(minus, old_logp, advantages, 0.2).sum().item<double>()) /
                           (2 * h);
    CHECK(logp.grad()[i].item<double>() == Approx(numeric).margin(1e-6));
  }
  CHECK(logp.grad()[1].item<double>() == 0.0);  // clipped: no push beyond 1 + eps
}

TEST_CASE("the clip is active only where min() takes the clipped term", "[trainers][rl]") {
  // eps = 0.2. rho 1.3, A > 0: clipped (1). rho 1.3, A < 0: min(-1.3, -1.2) takes rho A: not clipped
  // (0), though |rho - 1| > eps. rho 0.7, A < 0: clipped (1). rho 0.7, A > 0: not (0). rho 1.1: never.
  auto ratio = torch::tensor({1.3, 1.3, 0.7, 0.7, 1.1, 1.1}, torch::kFloat64);
  auto advantages = torch::tensor({1.0, -1.0, -1.0, 1.0, 1.0, -1.0}, torch::kFloat64);
  auto active = posttrain::clip_active(ratio, advantages, 0.2);
  const std::vector<float> expected = {1, 0, 1, 0, 0, 0};
  for (size_t i = 0; i < expected.size(); ++i) CHECK(active[static_cast<int64_t>(i)].item<float>() == expected[i]);
  // Active exactly where the surrogate's gradient is zero.
  auto logp = torch::log(ratio).requires_grad_(true);
  posttrain::clipped_surrogate_loss(logp, torch::zeros_like(logp), advantages, 0.2).sum().backward();
  for (size_t i = 0; i < expected.size(); ++i)
    CHECK((logp.grad()[static_cast<int64_t>(i)].item<double>() == 0.0) == (expected[i] == 1));
}

TEST_CASE("a rollout's KL is the sum of the chosen estimator over its response tokens", "[trainers][rl]") {
  // Tokens: log pi - log ref = 0.5 and 0 (a padded third position is masked out).
  // k1: 0.5 + 0 = 0.5. k3 (r = log ref - log pi = -0.5, 0): e^-0.5 + 0.5 - 1 = 0.106531, + 0.
  posttrain::RolloutBatch mb;
  mb.rows = {1};
  mb.old_logp = torch::tensor({{-1.0, -2.0, -3.0}});
  mb.ref_logp = torch::tensor({{-1.5, -2.0, -9.0}});
  mb.mask = torch::tensor({{1.0, 1.0, 0.0}});
  const auto k1 = posttrain::sequence_kl_estimate({mb}, 2, "k1"), k3 = posttrain::sequence_kl_estimate({mb}, 2, "k3");
  CHECK(k1[0] == 0.0);  // rollout 0 is in no batch
  CHECK(k1[1] == Approx(0.5));
  CHECK(k3[1] == Approx(0.106531).epsilon(1e-5));
}
