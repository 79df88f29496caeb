// Scoring rules for theories (theories/scoring.h) against values worked out by hand.
#include <catch2/catch.hpp>

#include <cmath>

#include "theories/scoring.h"

TEST_CASE("log and Brier scores by hand", "[theories]") {
  CHECK(posttrain::log_score(0.8, true) == Approx(std::log(0.8)));  // -0.2231
  CHECK(posttrain::log_score(0.8, false) == Approx(std::log(0.2)));  // -1.6094
  CHECK(posttrain::brier_score(0.8, true) == Approx(0.04));
  CHECK(posttrain::brier_score(0.8, false) == Approx(0.64));
  CHECK(posttrain::brier_score(0.5, true) == Approx(0.25));
}

TEST_CASE("peer scores against the field and a uniform forecaster by hand", "[theories]") {
  // Question q1 happened; A said 0.8, B said 0.4. Question q2 did not happen; only A forecast it, 0.3.
  const auto scores = posttrain::peer_scores({{"A", "q1", 0.8, true}, {"B", "q1", 0.4, true}, {"A", "q2", 0.3, false}});
  REQUIRE(scores.size() == 2);
  const double a1 = std::log(0.8), b1 = std::log(0.4), a2 = std::log(0.7);
  CHECK(scores[0].theory == "A");
  CHECK(scores[0].forecasts == 2);
  CHECK(scores[0].mean_log == Approx((a1 + a2) / 2));
  CHECK(scores[0].mean_brier == Approx((0.04 + 0.09) / 2));
  // q1: A - mean(A, B); q2: A alone, 0.
  CHECK(scores[0].peer_vs_field == Approx((a1 - (a1 + b1) / 2 + 0.0) / 2));  // +0.1733
  CHECK(scores[1].peer_vs_field == Approx(b1 - (a1 + b1) / 2));  // -0.3466
  CHECK(scores[1].peer_vs_uniform == Approx(std::log(0.4) - std::log(0.5)));
}

TEST_CASE("peer scores: an interval against its reference, undecided forecasts at the reference's score",
          "[theories]") {
  posttrain::Forecast wide{"W", "i1", 0.99, true};
  wide.reference = 1 - 1e-6;  // [-10, 10] covers every value the mean can take
  posttrain::Forecast narrow{"N", "i2", 0.7, true};
  narrow.reference = 0.3;  // [0, 0.3] of a [0, 1] range
  posttrain::Forecast missed{"N", "i3", 0.6, false};
  missed.reference = 0.2;
  posttrain::Forecast open{"N", "c1", 0.9, false};
  open.resolved = false;  // undetermined: counts, scores 0
  const auto scores = posttrain::peer_scores({wide, narrow, missed, open});
  REQUIRE(scores.size() == 2);
  CHECK(scores[0].peer_vs_uniform == Approx(std::log(0.99) - std::log(1 - 1e-6)));  // -0.0101: no credit
  CHECK(scores[0].peer_vs_uniform < 0);
  // N: (ln 0.7 - ln 0.3) + (ln 0.4 - ln 0.8) + 0, over 3 forecasts = (0.8473 - 0.6931) / 3.
  CHECK(scores[1].peer_vs_uniform == Approx((std::log(0.7 / 0.3) + std::log(0.4 / 0.8)) / 3));
  CHECK(scores[1].forecasts == 3);
  CHECK(scores[1].resolved == 2);
  CHECK(scores[1].mean_log == Approx((std::log(0.7) + std::log(0.4)) / 2));  // over decided ones only
}

TEST_CASE("Kendall's tau by hand", "[theories]") {
  CHECK(posttrain::kendall_tau({"a", "b", "c"}, {"a", "b", "c"}) == Approx(1.0));
  CHECK(posttrain::kendall_tau({"a", "b", "c"}, {"c", "b", "a"}) == Approx(-1.0));
  // a b c d against b a c d: one discordant pair (a, b) of six: (5 - 1) / 6.
  CHECK(posttrain::kendall_tau({"a", "b", "c", "d"}, {"b", "a", "c", "d"}) == Approx(4.0 / 6));
  // Items only one side lists are left out: a c against c x a -> one pair, reversed.
  CHECK(posttrain::kendall_tau({"a", "c"}, {"c", "x", "a"}) == Approx(-1.0));
  CHECK(std::isnan(posttrain::kendall_tau({"a"}, {"a", "b"})));
}

TEST_CASE("the Pareto front of score against assumptions by hand", "[theories]") {
  // 0: (-0.3, 3) 1: (-0.5, 1) 2: (-0.6, 2) dominated by 1; 3: (-0.3, 4) dominated by 0; 4: (-0.2, 5).
  const auto front = posttrain::pareto_front({-0.3, -0.5, -0.6, -0.3, -0.2}, {3, 1, 2, 4, 5});
  CHECK(front == std::vector<size_t>{0, 1, 4});
}
