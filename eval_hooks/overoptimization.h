// Reward over-optimisation, measured as Gao, Schulman and Hilton (2022) do: gold reward as a function
// of d = sqrt(KL(policy || initial policy)), fitted with their forms
//   best-of-n:  R(d) = d (a - b d)          RL:  R(d) = d (a - b ln d)
// where R is the reward gained since the start. Both are linear in (a, b), so least squares solves a
// 2 x 2 system. The fit gives the peak d* (past it, optimising the proxy harder lowers gold reward).
#pragma once

#include <ios>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

struct OveroptimizationFit {
  std::string form;  // "bon" or "rl"
  double a = 0, b = 0;
  // argmax and max of R(d) over d >= 0; infinite when b <= 0 (no peak yet), 0 when R falls from the start
  double peak_d = 0, peak_reward = 0;
  double r2 = 0;  // 1 - residual / total sum of squares
  int points = 0;
};

// Fits R(d) to (d_i, R_i); UserError-free: fewer than 3 points or a singular system give points = 0.
OveroptimizationFit fit_overoptimization(const std::vector<double>& d, const std::vector<double>& reward,
                                         const std::string& form);

// From metrics.jsonl records: the RL-form fit of every `reward/<name>` against d = sqrt(kl), rewards
// taken relative to their first logged value. {"<name>": {a, b, peak_d, peak_reward, r2, points,
// last_d, past_peak}}; empty when the run logged no "kl".
nlohmann::json overoptimization_report(const std::vector<nlohmann::json>& metrics);

// The same fits during training: check() reads the lines added to the run's metrics.jsonl since the
// last check (a partly written last line waits for the next) and returns a warning for
// each reward that has newly gone past its fitted peak (each reward once), when the fit has at least
// min_points points and explains at least min_r2 of the variance (early, noisy fits stay quiet).
class OveroptimizationWatch {
 public:
  explicit OveroptimizationWatch(std::string metrics_path, int min_points = 8, double min_r2 = 0.5);
  std::vector<std::string> check();

 private:
  std::string metrics_path_;
  std::streamoff read_to_ = 0;  // bytes of metrics.jsonl parsed so far
  std::vector<nlohmann::json> metrics_;  // its records so far
  int min_points_;
  double min_r2_;
  std::set<std::string> warned_;
};

}  // namespace posttrain
