#include "theories/scoring.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace posttrain {

double log_score(double probability, bool happened) { return std::log(happened ? probability : 1 - probability); }

double brier_score(double probability, bool happened) {
  const double o = happened ? 1.0 : 0.0;
  return (probability - o) * (probability - o);
}

std::vector<PeerScore> peer_scores(const std::vector<Forecast>& forecasts) {
  std::map<std::string, std::pair<double, int>> by_question;  // question -> (sum of log scores, count)
  for (const auto& f : forecasts) {
    if (!f.resolved) continue;
    auto& q = by_question[f.question];
    q.first += log_score(f.probability, f.happened);
    q.second += 1;
  }
  std::vector<PeerScore> out;
  const auto entry = [&](const std::string& theory) -> PeerScore& {
    for (auto& p : out)
      if (p.theory == theory) return p;
    out.push_back(PeerScore{theory});
    return out.back();
  };
  for (const auto& f : forecasts) {
    PeerScore& p = entry(f.theory);
    p.forecasts += 1;
    if (!f.resolved) continue;
    const double own = log_score(f.probability, f.happened);
    const auto& [sum, count] = by_question[f.question];
    p.mean_log += own;
    p.mean_brier += brier_score(f.probability, f.happened);
    p.peer_vs_field += own - sum / count;
    p.peer_vs_uniform += own - log_score(f.reference, f.happened);
    p.resolved += 1;
  }
  for (auto& p : out) {
    if (p.resolved > 0) p.mean_log /= p.resolved, p.mean_brier /= p.resolved;
    p.peer_vs_field /= p.forecasts;
    p.peer_vs_uniform /= p.forecasts;
  }
  return out;
}

double kendall_tau(const std::vector<std::string>& predicted, const std::vector<std::string>& observed) {
  std::map<std::string, size_t> rank_observed;
  for (size_t i = 0; i < observed.size(); ++i) rank_observed[observed[i]] = i;
  std::vector<size_t> ranks;  // the observed rank of each shared item, in predicted order
  for (const auto& item : predicted) {
    const auto it = rank_observed.find(item);
    if (it != rank_observed.end()) ranks.push_back(it->second);
  }
  if (ranks.size() < 2) return std::nan("");
  double concordant = 0, discordant = 0;
  for (size_t i = 0; i < ranks.size(); ++i)
    for (size_t j = i + 1; j < ranks.size(); ++j) (ranks[i] < ranks[j] ? concordant : discordant) += 1;
  return (concordant - discordant) / (concordant + discordant);
}

std::vector<size_t> pareto_front(const std::vector<double>& scores, const std::vector<int>& assumptions) {
  std::vector<size_t> front;
  for (size_t i = 0; i < scores.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < scores.size() && !dominated; ++j)
      dominated = j != i && scores[j] >= scores[i] && assumptions[j] <= assumptions[i] &&
                  (scores[j] > scores[i] || assumptions[j] < assumptions[i]);
    if (!dominated) front.push_back(i);
  }
  return front;
}

}  // namespace posttrain
