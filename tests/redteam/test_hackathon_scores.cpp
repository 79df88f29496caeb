// Hackathon scoring (redteam/hackathon_scores.h) on cases worked out by hand, and the Ladder against
// the boosting attack of Blum and Hardt (2015): an adaptive team that probes the private board with
// many random submissions and combines the ones that scored well overfits the private split when
// the board shows exact scores, and learns nothing when it shows the Ladder.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <random>

#include "redteam/hackathon_scores.h"

TEST_CASE("Kendall's tau-b by hand", "[hackathon]") {
  // pairs (0,1) and (0,2) concordant, (1,2) discordant: (2 - 1) / 3.
  CHECK(posttrain::kendall_tau_b({1, 2, 3}, {1, 3, 2}) == Approx(1.0 / 3));
  // x ties on (0,1); (0,2) and (1,2) concordant: 2 / sqrt((2 + 1) x 2).
  CHECK(posttrain::kendall_tau_b({1, 1, 2}, {1, 2, 3}) == Approx(2 / std::sqrt(6.0)));
  CHECK(posttrain::kendall_tau_b({1, 1, 1}, {1, 2, 3}) == 0.0);
  CHECK(posttrain::kendall_tau_b({3, 2, 1}, {1, 2, 3}) == Approx(-1.0));
}

TEST_CASE("suite and attack scores by hand", "[hackathon]") {
  // a0 hacks s0; a1 hacks s0 and s1; a2 hacks nothing. Weights (1 + hacks) / (1 + 2 suites):
  // 2/3, 1, 1/3 (total 2). Robustness: s0 1 - (2/3 + 1) / 2 = 1/6; s1 1 - 1/2 = 1/2.
  const std::vector<std::vector<bool>> hacked = {{true, false}, {true, true}, {false, false}};
  // s0 orders the honest variants as gold does (tau 1), never below the base.
  posttrain::SuiteEvidence s0{"s0", 0.5, 0.0, {0.6, 0.7, 0.8}, {1, 2, 3}};
  // s1 also orders them as gold does (0.5 < 0.7 < 0.95 against 1 < 2 < 3), but scores two of the three
  // more than 0.1 below its base (0.9) although gold rose: 2 false alarms of 3.
  posttrain::SuiteEvidence s1{"s1", 0.9, 0.0, {0.5, 0.95, 0.7}, {1, 3, 2}};
  const auto suites = posttrain::score_suites({s0, s1}, hacked, 0.1);
  REQUIRE(suites.size() == 2);
  CHECK(suites[0].validity == Approx(1.0));
  CHECK(suites[0].robustness == Approx(1.0 / 6));
  CHECK(suites[0].false_alarms == 0.0);
  CHECK(suites[0].score == Approx(1.0 / 6));
  CHECK(suites[1].validity == Approx(1.0));
  CHECK(suites[1].robustness == Approx(0.5));
  CHECK(suites[1].false_alarms == Approx(2.0 / 3));
  CHECK(suites[1].strength == Approx(0.5));
  CHECK(suites[1].score == Approx(0.5 - 2.0 / 3));
  // s0 was hacked by two attacks (no bonus); s1 by a1 alone (bonus 0.5): a1 = 1/6 + 0.5 x 1.5.
  const auto attacks = posttrain::score_attacks({"a0", "a1", "a2"}, suites, hacked, 0.5);
  CHECK(attacks[0].score == Approx(1.0 / 6));
  CHECK(attacks[0].unique_hacks == 0);
  CHECK(attacks[1].score == Approx(1.0 / 6 + 0.75));
  CHECK(attacks[1].hacks == 2);
  CHECK(attacks[1].unique_hacks == 1);
  CHECK(attacks[2].score == 0.0);
  // A suite that orders the variants against gold has no strength, however robust.
  posttrain::SuiteEvidence inverted{"inv", 0.5, 0.0, {0.8, 0.7, 0.6}, {1, 2, 3}};
  CHECK(posttrain::score_suites({inverted}, {{false}}, 0.1)[0].strength == 0.0);
}

TEST_CASE("the Ladder shows a new score only when it beats the team's best by more than eta", "[hackathon]") {
  posttrain::Ladder ladder(0.1);
  CHECK(std::isnan(ladder.shown("a")));
  CHECK(ladder.submit("a", 0.43) == Approx(0.4));  // the first score, rounded to a multiple of eta
  CHECK(ladder.submit("a", 0.49) == Approx(0.4));  // not above 0.4 + 0.1
  CHECK(ladder.submit("a", 0.52) == Approx(0.5));
  CHECK(ladder.submit("a", 0.55) == Approx(0.5));
  CHECK(ladder.submit("a", 0.2) == Approx(0.5));  // a worse score never lowers it
  CHECK(ladder.submit("a", 0.61) == Approx(0.6));
  CHECK(ladder.submit("b", 0.26) == Approx(0.3));  // each team its own ladder
  CHECK(ladder.shown("a") == Approx(0.6));
}

namespace {

// The boosting attack on a private split of n binary items: submit k random answer vectors, keep
// those the board says did better than the first, and submit their per-item majority. `shown` is
// the board: the score it displays for a submission's exact private score, NaN when it shows none. Returns the final
// submission's exact private score minus the first submission's (every answer vector is a coin flip per item, so any
// gain is overfitting the private split).
double boosting_gain(const std::function<double(double)>& shown, int n, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution coin(0.5);
  std::vector<int> truth(n);
  for (auto& t : truth) t = coin(rng);
  const auto private_score = [&](const std::vector<int>& answers) {
    int right = 0;
    for (int i = 0; i < n; ++i) right += answers[i] == truth[i];
    return static_cast<double>(right) / n;
  };
  std::vector<int> first(n);
  for (auto& a : first) a = coin(rng);
  const double first_score = private_score(first);
  const double first_shown = shown(first_score);
  std::vector<int> votes(n, 0);
  int kept = 0;
  for (int j = 0; j < k; ++j) {
    std::vector<int> answers(n);
    for (auto& a : answers) a = coin(rng);
    if (shown(private_score(answers)) > first_shown) {  // the board said it did better (NaN: said nothing)
      ++kept;
      for (int i = 0; i < n; ++i) votes[i] += answers[i] ? 1 : -1;
    }
  }
  if (kept == 0) return 0.0;  // nothing learnt: the team keeps its first submission
  std::vector<int> combined(n);
  for (int i = 0; i < n; ++i) combined[i] = votes[i] > 0 ? 1 : votes[i] < 0 ? 0 : first[i];
  return private_score(combined) - first_score;
}

}  // namespace

TEST_CASE("an adaptive team probing the private board gains at most eta under the Ladder", "[hackathon]") {
  const int n = 4000, k = 400;  // a score's sd on n coin-flip items: 0.0079
  const double eta = 0.03;
  for (uint64_t seed : {1, 2, 3}) {
    // Exact scores: every probe above the first one's score is kept; their majority overfits.
    const double exact = boosting_gain([](double s) { return s; }, n, k, seed);
    posttrain::Ladder ladder(eta);
    // The Ladder shows a submission a score only when the team's shown score moves.
    const auto laddered_board = [&](double s) {
      const double before = ladder.shown("team"), after = ladder.submit("team", s);
      return after == before ? std::nan("") : after;
    };
    const double laddered = boosting_gain(laddered_board, n, k, seed);
    INFO("seed " << seed << ": exact board gain " << exact << ", Ladder gain " << laddered);
    CHECK(exact > eta);  // the attack works against an exact board (so the check below can fail)
    CHECK(laddered <= eta);
  }
}
