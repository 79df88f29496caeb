#include "eval_hooks/overoptimization.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>

namespace posttrain {

OveroptimizationFit fit_overoptimization(const std::vector<double>& d, const std::vector<double>& reward,
                                         const std::string& form) {
  OveroptimizationFit fit;
  fit.form = form;
  // R = a x1 - b x2 with x1 = d and x2 = d^2 (bon) or d ln d (rl); points at d = 0 carry no information.
  double s11 = 0, s12 = 0, s22 = 0, s1y = 0, s2y = 0;
  std::vector<std::pair<double, double>> used;
  for (size_t i = 0; i < d.size() && i < reward.size(); ++i) {
    if (!(d[i] > 0) || !std::isfinite(reward[i])) continue;
    const double x1 = d[i], x2 = form == "bon" ? d[i] * d[i] : d[i] * std::log(d[i]);
    s11 += x1 * x1;
    s12 += x1 * x2;
    s22 += x2 * x2;
    s1y += x1 * reward[i];
    s2y += x2 * reward[i];
    used.emplace_back(d[i], reward[i]);
  }
  const double det = s11 * s22 - s12 * s12;
  if (used.size() < 3 || std::abs(det) < 1e-12 * std::max(1.0, s11 * s22)) return fit;
  // Normal equations for (a, c) with R = a x1 + c x2; b = -c.
  fit.a = (s1y * s22 - s2y * s12) / det;
  fit.b = -(s11 * s2y - s12 * s1y) / det;
  fit.points = static_cast<int>(used.size());
  const auto model = [&](double x) {
    return form == "bon" ? x * (fit.a - fit.b * x) : x * (fit.a - fit.b * std::log(x));
  };
  double mean = 0;
  for (const auto& [x, y] : used) mean += y / static_cast<double>(used.size());
  double residual = 0, total = 0;
  for (const auto& [x, y] : used) {
    residual += (y - model(x)) * (y - model(x));
    total += (y - mean) * (y - mean);
  }
  fit.r2 = total > 0 ? 1.0 - residual / total : 1.0;
  if (fit.b <= 0) {
    fit.peak_d = fit.peak_reward = std::numeric_limits<double>::infinity();
  } else if (form == "bon") {
    // dR/dd = a - 2 b d; with a <= 0 the reward falls from the start, so over d >= 0 the peak is d = 0.
    fit.peak_d = std::max(0.0, fit.a / (2 * fit.b));
    fit.peak_reward = fit.a > 0 ? fit.a * fit.a / (4 * fit.b) : 0.0;
  } else {
    fit.peak_d = std::exp(fit.a / fit.b - 1);  // dR/dd = a - b (ln d + 1)
    fit.peak_reward = fit.b * fit.peak_d;
  }
  return fit;
}

nlohmann::json overoptimization_report(const std::vector<nlohmann::json>& metrics) {
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> series;  // name -> (d, R)
  std::map<std::string, double> first;
  for (const auto& m : metrics) {
    if (!m.contains("kl") || !m["kl"].is_number()) continue;
    const double d = std::sqrt(std::max(0.0, m["kl"].get<double>()));
    for (const auto& [key, value] : m.items()) {
      // reward/<function> and reward/mean (the total); reward/std is a spread, not a reward.
      if (key.rfind("reward/", 0) != 0 || key == "reward/std" || !value.is_number()) continue;
      const std::string name = key.substr(7);
      if (!first.count(name)) first[name] = value.get<double>();
      series[name].first.push_back(d);
      series[name].second.push_back(value.get<double>() - first[name]);
    }
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, points] : series) {
    const OveroptimizationFit fit = fit_overoptimization(points.first, points.second, "rl");
    if (fit.points == 0) continue;
    const double last_d = points.first.back();
    out[name] = {
        {"a", fit.a},
        {"b", fit.b},
        {"peak_d", std::isfinite(fit.peak_d) ? nlohmann::json(fit.peak_d) : nlohmann::json("none")},
        {"peak_reward", std::isfinite(fit.peak_reward) ? nlohmann::json(fit.peak_reward) : nlohmann::json("none")},
        {"r2", fit.r2},
        {"points", fit.points},
        {"last_d", last_d},
        {"past_peak", std::isfinite(fit.peak_d) && last_d > fit.peak_d}};
  }
  return out;
}

}  // namespace posttrain

namespace posttrain {

OveroptimizationWatch::OveroptimizationWatch(std::string metrics_path, int min_points, double min_r2)
    : metrics_path_(std::move(metrics_path)), min_points_(min_points), min_r2_(min_r2) {}

std::vector<std::string> OveroptimizationWatch::check() {
  // Only the lines written since the last check; a line without its newline is still being written
  // and is read next time.
  std::ifstream in(metrics_path_, std::ios::binary);
  in.seekg(read_to_);
  for (std::string line; std::getline(in, line) && !in.eof();) {
    read_to_ += static_cast<std::streamoff>(line.size()) + 1;
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object()) metrics_.push_back(std::move(record));
  }
  std::vector<std::string> warnings;
  const nlohmann::json report = overoptimization_report(metrics_);  // kept alive for items()
  for (const auto& [name, fit] : report.items()) {
    if (warned_.count(name) || !fit["past_peak"].get<bool>() || fit["points"].get<int>() < min_points_ ||
        fit["r2"].get<double>() < min_r2_)
      continue;
    warned_.insert(name);
    char text[320];
    std::snprintf(text, sizeof(text),
                  "WARNING: reward/%s is past its fitted peak: d = sqrt(KL) = %.3f > d* = %.3f (Gao RL fit, "
                  "R^2 %.2f); optimising further lowers it",
                  name.c_str(), fit["last_d"].get<double>(), fit["peak_d"].get<double>(), fit["r2"].get<double>());
    warnings.push_back(text);
  }
  return warnings;
}

}  // namespace posttrain
