// Scoring rules for registered predictions, as pure functions: how well a theory predicted the
// variants' outcomes (log and Brier scores, peer scores against the field and a uniform forecaster),
// how well it ranked them (Kendall's tau), and which theories no other beats on both accuracy and
// parsimony (the Pareto front of score against the number of assumptions).
#pragma once

#include <string>
#include <vector>

namespace posttrain {

// ln p if the event happened, ln(1 - p) if not (higher is better; 0 is a certain, right forecast).
double log_score(double probability, bool happened);
// (p - o)^2 with o = 1 if the event happened, else 0 (lower is better; 0.25 is always saying 0.5).
double brier_score(double probability, bool happened);

// One theory's forecast of one binary question (the same `question` key in several theories means
// they forecast the same event). `reference`: the probability a forecaster who knows nothing but
// the metric's range gives the event (0.5 for a comparison). `resolved`: false when the runs did
// not decide the event (undetermined, or a variant that never ran); such a forecast scores exactly
// what the reference scores, so a theory cannot gain by making predictions the runs cannot decide.
struct Forecast {
  std::string theory, question;
  double probability = 0.5;
  bool happened = false;
  double reference = 0.5;
  bool resolved = true;
};
// Per theory (in order of first appearance):
//  mean_log, mean_brier: over its resolved forecasts (0 when none resolved);
//  peer_vs_field: the mean over all its forecasts of its log score minus the mean log score of every
//    theory that forecast the same question (0 for an unresolved one, and when alone);
//  peer_vs_uniform: the mean over all its forecasts of its log score minus the reference's
//    (ln p - ln q when it happened, ln(1 - p) - ln(1 - q) when not; 0 when unresolved). Positive:
//    it knew more than the metric's range; a trivially wide interval scores <= 0.
struct PeerScore {
  std::string theory;
  double mean_log = 0, mean_brier = 0, peer_vs_field = 0, peer_vs_uniform = 0;
  int forecasts = 0, resolved = 0;
};
std::vector<PeerScore> peer_scores(const std::vector<Forecast>& forecasts);

// Kendall's tau-a between two orderings of the same items (best first): (concordant - discordant)
// pairs / all pairs, over the items both list; 1 = the same order, -1 = reversed. NaN with fewer
// than two shared items.
double kendall_tau(const std::vector<std::string>& predicted, const std::vector<std::string>& observed);

// Indices of the points no other point dominates, where a point dominates another when its score is
// at least as high and it has at most as many assumptions, one of the two strictly.
std::vector<size_t> pareto_front(const std::vector<double>& scores, const std::vector<int>& assumptions);

}  // namespace posttrain
