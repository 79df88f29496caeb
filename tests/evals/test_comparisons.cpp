// Statistics over seed replicates (eval_hooks/comparisons.h): hand-worked values, the bootstrap
// against an exact enumeration of every resample (a second, naive implementation), Holm on
// hand-adjusted p-values, and a seeded simulation of the whole test: a true difference is found, a
// null difference is called significant at about the nominal rate.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include "core/rng.h"
#include "eval_hooks/comparisons.h"

using posttrain::ItemScores;

namespace {

ItemScores items(std::vector<double> scores, std::vector<int> groups = {}) {
  ItemScores s;
  for (size_t i = 0; i < scores.size(); ++i) s.ids.push_back("item-" + std::to_string(i));
  s.scores = std::move(scores);
  s.groups = groups.empty() ? std::vector<int>(s.scores.size(), 0) : std::move(groups);
  return s;
}

// Every equally likely outcome of the paired hierarchical bootstrap, enumerated: S seed draws,
// then for each drawn seed n item draws (one group). Calls `each` with the resampled difference.
void enumerate_paired(const std::vector<ItemScores>& a, const std::vector<ItemScores>& b,
                      const std::function<void(double)>& each) {
  const size_t S = a.size(), n = a[0].scores.size();
  size_t seed_outcomes = 1, item_outcomes = 1;
  for (size_t k = 0; k < S; ++k) seed_outcomes *= S;
  for (size_t k = 0; k < S * n; ++k) item_outcomes *= n;
  for (size_t sc = 0; sc < seed_outcomes; ++sc)
    for (size_t ic = 0; ic < item_outcomes; ++ic) {
      size_t seeds_code = sc, items_code = ic;
      double sum = 0;
      for (size_t k = 0; k < S; ++k) {
        const size_t s = seeds_code % S;
        seeds_code /= S;
        double diff = 0;
        for (size_t j = 0; j < n; ++j) {
          const size_t i = items_code % n;
          items_code /= n;
          diff += a[s].scores[i] - b[s].scores[i];
        }
        sum += diff / static_cast<double>(n);
      }
      each(sum / static_cast<double>(S));
    }
}

}  // namespace

TEST_CASE("primary score: the plain mean, or the mean of class means (hand-worked)", "[stats]") {
  CHECK(posttrain::primary_score(items({1, 0, 1, 1})) == Approx(0.75));
  // Classes of 1 and 3 items: (1/1 + 1/3) / 2.
  CHECK(posttrain::primary_score(items({1, 1, 0, 0}, {0, 1, 1, 1})) == Approx((1.0 + 1.0 / 3) / 2));
}

TEST_CASE("replicated score: mean and between-seed sd by hand, interval inside the reachable range", "[stats]") {
  const auto r = posttrain::replicated_score({items({1, 0}), items({1, 1}), items({0, 0})}, 4000, 7);
  CHECK(r.mean == Approx(0.5));  // seeds score 0.5, 1, 0
  CHECK(r.seed_sd == Approx(0.5));  // sample sd of {0.5, 1, 0}
  CHECK(r.low >= 0.0);
  CHECK(r.high <= 1.0);
  CHECK(r.low < 0.2);
  CHECK(r.high > 0.8);
  const auto one = posttrain::replicated_score({items({1, 0, 1, 0})});
  CHECK(one.seed_sd == 0.0);
  CHECK(one.mean == Approx(0.5));
}

TEST_CASE("paired bootstrap equals an exact enumeration of every resample", "[stats]") {
  // Two seeds of two items each: 4 seed draws x 16 item draws = 64 equally likely resamples.
  const std::vector<ItemScores> a = {items({1, 0}), items({1, 1})}, b = {items({0, 0}), items({1, 0})};
  double exact_below = 0, exact_above = 0, exact_mean = 0, exact_sq = 0, outcomes = 0;
  enumerate_paired(a, b, [&](double d) {
    exact_below += d <= 0;
    exact_above += d >= 0;
    exact_mean += d;
    exact_sq += d * d;
    outcomes += 1;
  });
  REQUIRE(outcomes == 64);
  exact_mean /= outcomes;
  const double exact_se = std::sqrt(exact_sq / outcomes - exact_mean * exact_mean);
  const int R = 200000;
  const auto c = posttrain::compare_paired(a, b, R, 3);
  CHECK(c.difference == Approx(0.5));  // (0.5 - 0) and (1 - 0.5), averaged over seeds
  CHECK(c.seeds == 2);
  CHECK(c.items == 4);
  // Monte Carlo vs exact: p within 4 standard errors of a binomial share at R = 200k (< 0.005).
  const double exact_p = std::min(1.0, 2 * std::min(exact_below, exact_above) / outcomes);
  CHECK(std::abs(c.p_value - exact_p) < 0.005);
  CHECK(c.standard_error == Approx(exact_se).epsilon(0.01));
  CHECK(c.min_detectable == Approx(2.8016 * exact_se).epsilon(0.01));
  // Items are matched by id, not by position.
  ItemScores shuffled = b[0];
  std::swap(shuffled.ids[0], shuffled.ids[1]);
  std::swap(shuffled.scores[0], shuffled.scores[1]);
  CHECK(posttrain::compare_paired(a, {shuffled, b[1]}, R, 3).p_value == Approx(c.p_value));
  // An id asked twice (two phrasings of one item) pairs occurrence with occurrence.
  ItemScores repeated_a = items({1, 0, 1}), repeated_b = items({0, 0, 1});
  repeated_a.ids = repeated_b.ids = {"q", "q", "r"};
  CHECK(posttrain::compare_paired({repeated_a}, {repeated_b}, 10, 0).difference == Approx(1.0 / 3));
}

TEST_CASE("paired comparison refuses runs that do not pair", "[stats]") {
  CHECK_THROWS(posttrain::compare_paired({items({1, 0})}, {items({1, 0}), items({0, 0})}));
  ItemScores other = items({1, 0});
  other.ids[1] = "elsewhere";
  CHECK_THROWS(posttrain::compare_paired({items({1, 0})}, {other}));
}

TEST_CASE("Holm-Bonferroni on hand-adjusted p-values", "[stats]") {
  // Sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max(0.06, 0.04).
  const auto adjusted = posttrain::holm_adjust({0.01, 0.04, 0.03, 0.005});
  REQUIRE(adjusted.size() == 4);
  CHECK(adjusted[0] == Approx(0.03));
  CHECK(adjusted[1] == Approx(0.06));
  CHECK(adjusted[2] == Approx(0.06));
  CHECK(adjusted[3] == Approx(0.02));
  CHECK(posttrain::holm_adjust({0.6, 0.5})[0] == 1.0);  // capped at 1
}

TEST_CASE("simulation: a true difference is found, a null one is called at about the nominal rate", "[stats]") {
  // 3 seeds x 60 binary items per method; item difficulty shared by both methods; each (method,
  // seed) run gets its own shift of the success rate (seed luck, sd 0.03). The generator is seeded,
  // so the test is deterministic; the bounds say what the method promises, with room for the
  // simulation's own error at 300 experiments (a binomial share's sd at 0.05 is 0.013).
  uint64_t state = 2026;
  const auto normal = [&]() {  // Box-Muller
    const double u = posttrain::uniform01(state) + 1e-12, v = posttrain::uniform01(state);
    return std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v);
  };
  const auto experiment = [&](double effect) {
    std::vector<double> difficulty(60);
    for (auto& d : difficulty) d = 0.2 + 0.6 * posttrain::uniform01(state);
    std::vector<ItemScores> a, b;
    for (int s = 0; s < 3; ++s) {
      const double shift_a = 0.03 * normal(), shift_b = 0.03 * normal();
      std::vector<double> sa, sb;
      for (double d : difficulty) {
        sa.push_back(posttrain::uniform01(state) < std::clamp(d + effect + shift_a, 0.0, 1.0) ? 1.0 : 0.0);
        sb.push_back(posttrain::uniform01(state) < std::clamp(d + shift_b, 0.0, 1.0) ? 1.0 : 0.0);
      }
      a.push_back(items(sa));
      b.push_back(items(sb));
    }
    return posttrain::compare_paired(a, b, 500, posttrain::splitmix64(state));
  };
  const int experiments = 300;
  double null_rejections = 0, found = 0, covered = 0;
  for (int e = 0; e < experiments; ++e) {
    const auto null = experiment(0.0);
    null_rejections += null.p_value < 0.05;
    const auto real = experiment(0.25);
    found += real.p_value < 0.05;
    covered += real.low <= 0.25 && 0.25 <= real.high;
  }
  INFO("null rejection rate " << null_rejections / experiments << ", power " << found / experiments
                              << ", coverage of the true 0.25 " << covered / experiments);
  CHECK(null_rejections / experiments >= 0.01);
  CHECK(null_rejections / experiments <= 0.10);
  CHECK(found / experiments >= 0.9);
  CHECK(covered / experiments >= 0.85);
}
