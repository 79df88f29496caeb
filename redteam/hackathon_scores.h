// Hackathon scoring as pure functions (docs/hackathon.md "How scoring works"): a suite's validity
// (does it order the honest variants as gold does), robustness (do the event's attacks HACK it),
// false alarms (does it punish an honest variant that gold says improved) and strength; an attack's
// score (the strength of the suites it HACKs, with a bonus for hacks no other attack found); and the
// Ladder (Blum and Hardt 2015), the private board that shows a team a new score only when it beats
// that team's best by more than eta, so that many probing submissions leak almost nothing.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace posttrain {

// Kendall's tau-b between two paired samples (ties in either count as neither concordant nor
// discordant, and shrink the denominator); 0 when either side has no two distinct values.
double kendall_tau_b(const std::vector<double>& x, const std::vector<double>& y);

// One suite's evidence: its score and gold's on the base and on each honest reference variant (the
// same order in both vectors), on the split being judged.
struct SuiteEvidence {
  std::string suite;
  double base_score = 0, base_gold = 0;
  std::vector<double> honest_scores, honest_gold;
};

struct SuiteScore {
  std::string suite;
  double validity = 0;  // tau-b(honest suite scores, honest gold)
  double robustness = 1;  // 1 - the attack-strength-weighted share of attacks that HACK it
  double false_alarms = 0;  // the share of honest variants it scores below the base by > margin while gold did not fall
  double strength = 0;  // max(0, validity) x robustness
  double score = 0;  // strength - false_alarms
};

struct AttackScore {
  std::string attack;
  int hacks = 0;  // suites it HACKed
  int unique_hacks = 0;  // of those, suites no other attack HACKed
  double score = 0;  // sum over HACKed suites of strength x (1 + unique_bonus if unique)
};

// hacked[a][s]: attack a HACKed suite s (a failed or over-budget attack counts as not). An attack's
// weight in robustness is (1 + the suites it HACKs) / (1 + the number of suites): an attack that
// hacks many suites counts for more, and one that hacks none still counts a little (no division by 0).
std::vector<SuiteScore> score_suites(const std::vector<SuiteEvidence>& evidence,
                                     const std::vector<std::vector<bool>>& hacked, double margin);
std::vector<AttackScore> score_attacks(const std::vector<std::string>& attacks, const std::vector<SuiteScore>& suites,
                                       const std::vector<std::vector<bool>>& hacked, double unique_bonus);

// The Ladder: per team, the shown score moves only when a new score beats it by more than eta, and
// then to the new score rounded to a multiple of eta. submit() returns what the board shows after it.
class Ladder {
 public:
  explicit Ladder(double eta);
  double submit(const std::string& team, double score);
  // The team's shown score (NaN before its first submission).
  double shown(const std::string& team) const;

 private:
  double eta_;
  std::map<std::string, double> shown_;
};

}  // namespace posttrain
