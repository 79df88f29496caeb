// Every preference loss against arithmetic worked out here from the papers' formulas, and its
// gradient against central finite differences.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>

#include "trainers/preference_losses.h"

namespace {

// One pair: policy chosen -10, rejected -14; reference chosen -11, rejected -12.
// margin h = (-10 - -11) - (-14 - -12) = 1 - (-2) = 3.
posttrain::PreferenceLogProbs one_pair() {
  return {torch::tensor({-10.0}, torch::kFloat64), torch::tensor({-14.0}, torch::kFloat64),
          torch::tensor({-11.0}, torch::kFloat64), torch::tensor({-12.0}, torch::kFloat64)};
}

double value(const std::string& name, const posttrain::PreferenceLogProbs& lp,
             const posttrain::PreferenceLossOptions& o) {
  const auto* loss = posttrain::find_preference_loss(name);
  REQUIRE(loss != nullptr);
  return loss->loss(lp, o).item<double>();
}

double softplus(double x) { return std::log1p(std::exp(x)); }

}  // namespace

TEST_CASE("preference losses equal hand-worked values", "[trainers][preference]") {
  posttrain::PreferenceLossOptions o;
  o.beta = 0.1;
  auto lp = one_pair();
  CHECK(posttrain::dpo_margin(lp).item<double>() == 3.0);
  // DPO: -log sigmoid(0.1 * 3) = log(1 + exp(-0.3)) = 0.5543552...
  CHECK(value("sigmoid", lp, o) == Approx(std::log(1 + std::exp(-0.3))));
  CHECK(value("sigmoid", lp, o) == Approx(0.554355244468527));
  // cDPO, eps = 0.2: 0.8 * log(1 + e^-0.3) + 0.2 * log(1 + e^0.3)
  o.label_smoothing = 0.2;
  CHECK(value("cdpo", lp, o) == Approx(0.8 * softplus(-0.3) + 0.2 * softplus(0.3)));
  o.label_smoothing = 0.0;
  // A soft label q = 0.7 (P(chosen is better)): 0.7 * log(1 + e^-0.3) + 0.3 * log(1 + e^0.3); with
  // smoothing 0.2 as well, the weight is 0.7 * 0.8 + 0.3 * 0.2 = 0.62.
  auto soft = one_pair();
  soft.preference = torch::tensor({0.7}, torch::kFloat64);
  CHECK(value("sigmoid", soft, o) == Approx(0.7 * softplus(-0.3) + 0.3 * softplus(0.3)));
  o.label_smoothing = 0.2;
  CHECK(value("cdpo", soft, o) == Approx(0.62 * softplus(-0.3) + 0.38 * softplus(0.3)));
  o.label_smoothing = 0.0;
  // IPO: (3 - 1/(2 * 0.1))^2 = (3 - 5)^2 = 4
  CHECK(value("ipo", lp, o) == Approx(4.0));
  // hinge: max(0, 1 - 0.1 * 3) = 0.7; with beta 1: max(0, 1 - 3) = 0
  CHECK(value("hinge", lp, o) == Approx(0.7));
  o.beta = 1.0;
  CHECK(value("hinge", lp, o) == 0.0);
  // SimPO on mean log-probs -0.5 (chosen) and -0.9 (rejected), beta 2, gamma 0.5:
  // -log sigmoid(2 * 0.4 - 0.5) = log(1 + exp(-0.3))
  o.beta = 2.0;
  o.gamma = 0.5;
  posttrain::PreferenceLogProbs means{
      torch::tensor({-0.5}, torch::kFloat64), torch::tensor({-0.9}, torch::kFloat64), {}, {}};
  CHECK(value("simpo", means, o) == Approx(softplus(-0.3)));
  // ORPO, lambda 0.1: log odds(m) = m - log(1 - e^m);
  // ratio = (-0.5 - log(1 - e^-0.5)) - (-0.9 - log(1 - e^-0.9)); loss = 0.5 + 0.1 * log(1 + e^-ratio)
  o.orpo_lambda = 0.1;
  const double ratio = (-0.5 - std::log(1 - std::exp(-0.5))) - (-0.9 - std::log(1 - std::exp(-0.9)));
  CHECK(value("orpo", means, o) == Approx(0.5 + 0.1 * softplus(-ratio)));
  CHECK_FALSE(posttrain::find_preference_loss("simpo")->needs_reference);
  CHECK(posttrain::find_preference_loss("ipo")->aggregation == posttrain::LogProbAggregation::kMean);
  CHECK(posttrain::find_preference_loss("sigmoid")->aggregation == posttrain::LogProbAggregation::kSum);
}

TEST_CASE("preference loss gradients match central finite differences", "[trainers][preference]") {
  posttrain::PreferenceLossOptions o;
  o.beta = 0.3;
  o.label_smoothing = 0.1;
  for (const auto& name : posttrain::preference_loss_names()) {
    INFO(name);
    const bool means = posttrain::find_preference_loss(name)->aggregation == posttrain::LogProbAggregation::kMean;
    auto pc = torch::tensor({means ? -0.7 : -10.0, means ? -0.2 : -3.0}, torch::kFloat64).requires_grad_(true);
    auto pr = torch::tensor({means ? -0.4 : -12.0, means ? -1.1 : -2.5}, torch::kFloat64).requires_grad_(true);
    auto rc = torch::tensor({means ? -0.6 : -10.5, means ? -0.3 : -3.2}, torch::kFloat64);
    auto rr = torch::tensor({means ? -0.5 : -11.0, means ? -0.9 : -2.0}, torch::kFloat64);
    const auto& loss = posttrain::find_preference_loss(name)->loss;
    loss({pc, pr, rc, rr}, o).sum().backward();
    const double h = 1e-6;
    for (auto* t : {&pc, &pr}) {
      for (int64_t i = 0; i < 2; ++i) {
        auto plus = t->detach().clone(), minus = t->detach().clone();
        plus[i] += h;
        minus[i] -= h;
        auto f = [&](const torch::Tensor& moved) {
          return (t == &pc ? loss({moved, pr.detach(), rc, rr}, o) : loss({pc.detach(), moved, rc, rr}, o))
              .sum()
              .item<double>();
        };
        const double numeric = (f(plus) - f(minus)) / (2 * h);
        CHECK(t->grad()[i].item<double>() == Approx(numeric).margin(1e-6));
      }
    }
  }
}

TEST_CASE("KTO loss by hand and its gradient by finite differences", "[trainers][preference]") {
  // r = policy - reference. Desirable example: r = -10 - (-11) = 1; undesirable: r = -12 - (-11.5) = -0.5.
  // beta = 0.5, z = 0.2, lambda_d = 2, lambda_u = 1:
  //   desirable:   2 (1 - sigmoid(0.5 (1 - 0.2)))     = 2 (1 - sigmoid(0.4))
  //   undesirable: 1 (1 - sigmoid(0.5 (0.2 - -0.5)))  = 1 - sigmoid(0.35)
  auto sigmoid = [](double x) { return 1 / (1 + std::exp(-x)); };
  auto policy = torch::tensor({-10.0, -12.0}, torch::kFloat64).requires_grad_(true);
  auto reference = torch::tensor({-11.0, -11.5}, torch::kFloat64);
  auto desirable = torch::tensor({1.0, 0.0}, torch::kFloat64);
  auto loss = posttrain::kto_loss(policy, reference, desirable, 0.2, 0.5, 2.0, 1.0);
  CHECK(loss[0].item<double>() == Approx(2 * (1 - sigmoid(0.4))));
  CHECK(loss[1].item<double>() == Approx(1 - sigmoid(0.35)));
  loss.sum().backward();
  const double h = 1e-6;
  for (int64_t i = 0; i < 2; ++i) {
    auto plus = policy.detach().clone(), minus = policy.detach().clone();
    plus[i] += h;
    minus[i] -= h;
    const double numeric = (posttrain::kto_loss(plus, reference, desirable, 0.2, 0.5, 2.0, 1.0).sum().item<double>() -
                            posttrain::kto_loss(minus, reference, desirable, 0.2, 0.5, 2.0, 1.0).sum().item<double>()) /
                           (2 * h);
    CHECK(policy.grad()[i].item<double>() == Approx(numeric).epsilon(1e-6));
  }
}

TEST_CASE("the reward model's Bradley-Terry loss with soft labels and centering by hand", "[trainers][reward]") {
  // r_c = 1, r_r = 0, q = 0.8, margin 0, center 0.1:
  // 0.8 softplus(-1) + 0.2 softplus(1) + 0.1 (1 + 0)^2 = 0.8 x 0.313262 + 0.2 x 1.313262 + 0.1 = 0.613262.
  auto chosen = torch::tensor({1.0}, torch::kFloat64), rejected = torch::tensor({0.0}, torch::kFloat64);
  auto q = torch::tensor({0.8}, torch::kFloat64);
  CHECK(posttrain::bradley_terry_loss(chosen, rejected, q, 0.0, 0.1).item<double>() == Approx(0.613262).epsilon(1e-5));
  // Hard labels, margin 0.5: softplus(-(1 - 0.5)) = log(1 + e^-0.5) = 0.474077.
  CHECK(posttrain::bradley_terry_loss(chosen, rejected, torch::Tensor(), 0.5, 0.0).item<double>() ==
        Approx(0.474077).epsilon(1e-5));
}
