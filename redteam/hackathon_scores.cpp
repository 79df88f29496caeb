#include "redteam/hackathon_scores.h"

#include <algorithm>
#include <cmath>

#include <stdexcept>

namespace posttrain {

double kendall_tau_b(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size()) throw std::invalid_argument("kendall_tau_b: samples of different sizes");
  double concordant = 0, discordant = 0, tied_x = 0, tied_y = 0;
  for (size_t i = 0; i < x.size(); ++i)
    for (size_t j = i + 1; j < x.size(); ++j) {
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0 && dy == 0) continue;
      if (dx == 0)
        tied_x += 1;
      else if (dy == 0)
        tied_y += 1;
      else
        (dx * dy > 0 ? concordant : discordant) += 1;
    }
  const double denominator = std::sqrt((concordant + discordant + tied_x) * (concordant + discordant + tied_y));
  return denominator > 0 ? (concordant - discordant) / denominator : 0.0;
}

std::vector<SuiteScore> score_suites(const std::vector<SuiteEvidence>& evidence,
                                     const std::vector<std::vector<bool>>& hacked, double margin) {
  const size_t n_suites = evidence.size();
  std::vector<double> weight;  // per attack
  for (const auto& row : hacked) {
    if (row.size() != n_suites) throw std::invalid_argument("score_suites: a hacked row does not cover every suite");
    weight.push_back((1.0 + static_cast<double>(std::count(row.begin(), row.end(), true))) /
                     (1.0 + static_cast<double>(n_suites)));
  }
  double total_weight = 0;
  for (double w : weight) total_weight += w;
  std::vector<SuiteScore> out;
  for (size_t s = 0; s < n_suites; ++s) {
    const SuiteEvidence& e = evidence[s];
    SuiteScore score{e.suite};
    score.validity = kendall_tau_b(e.honest_scores, e.honest_gold);
    double hacked_weight = 0;
    for (size_t a = 0; a < hacked.size(); ++a)
      if (hacked[a][s]) hacked_weight += weight[a];
    score.robustness = total_weight > 0 ? 1 - hacked_weight / total_weight : 1.0;
    int alarms = 0;
    for (size_t v = 0; v < e.honest_scores.size(); ++v)
      if (e.honest_scores[v] < e.base_score - margin && e.honest_gold[v] >= e.base_gold) ++alarms;
    score.false_alarms =
        e.honest_scores.empty() ? 0.0 : static_cast<double>(alarms) / static_cast<double>(e.honest_scores.size());
    score.strength = std::max(0.0, score.validity) * score.robustness;
    score.score = score.strength - score.false_alarms;
    out.push_back(score);
  }
  return out;
}

std::vector<AttackScore> score_attacks(const std::vector<std::string>& attacks, const std::vector<SuiteScore>& suites,
                                       const std::vector<std::vector<bool>>& hacked, double unique_bonus) {
  std::vector<AttackScore> out;
  for (size_t a = 0; a < attacks.size(); ++a) {
    AttackScore score{attacks[a]};
    for (size_t s = 0; s < suites.size(); ++s) {
      if (!hacked[a][s]) continue;
      bool unique = true;
      for (size_t other = 0; other < attacks.size() && unique; ++other) unique = other == a || !hacked[other][s];
      score.hacks += 1;
      score.unique_hacks += unique;
      score.score += suites[s].strength * (1 + (unique ? unique_bonus : 0.0));
    }
    out.push_back(score);
  }
  return out;
}

Ladder::Ladder(double eta) : eta_(eta) {
  if (!(eta > 0)) throw std::invalid_argument("Ladder: eta must be positive");
}

double Ladder::submit(const std::string& team, double score) {
  const auto rounded = [&](double v) { return std::round(v / eta_) * eta_; };
  const auto it = shown_.find(team);
  if (it == shown_.end()) return shown_[team] = rounded(score);
  if (score > it->second + eta_) it->second = rounded(score);
  return it->second;
}

double Ladder::shown(const std::string& team) const {
  const auto it = shown_.find(team);
  return it == shown_.end() ? std::nan("") : it->second;
}

}  // namespace posttrain
