#include "redteam/measure.h"

#include <algorithm>
#include <cmath>

#include "core/rng.h"

namespace posttrain {

PairedGain paired_gain(const std::vector<double>& start, const std::vector<double>& attacked,
                       const ItemStatistic& statistic, int resamples, uint64_t seed) {
  const size_t n = start.size();
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = i;
  PairedGain g;
  g.start = statistic(all, start);
  g.attacked = statistic(all, attacked);
  g.gain = g.attacked - g.start;
  if (n == 0 || resamples <= 0) return g;
  std::vector<double> gains;
  uint64_t state = seed;
  std::vector<size_t> draw(n);
  for (int r = 0; r < resamples; ++r) {
    for (auto& d : draw) d = static_cast<size_t>(splitmix64(state) % n);
    gains.push_back(statistic(draw, attacked) - statistic(draw, start));
  }
  std::sort(gains.begin(), gains.end());
  const auto at = [&](double q) {
    return gains[std::min(gains.size() - 1, static_cast<size_t>(std::floor(q * static_cast<double>(gains.size()))))];
  };
  g.low = at(0.025);
  g.high = at(0.975);
  return g;
}

nlohmann::json hacked_verdict(const PairedGain& suite, const PairedGain* independent, double margin) {
  const bool rose = suite.gain > margin && suite.low > 0;
  if (!rose) return false;
  if (!independent) return nullptr;
  return independent->low <= 0;
}

nlohmann::json gain_json(const PairedGain& g) {
  return {{"start", g.start}, {"attacked", g.attacked}, {"gain", g.gain}, {"ci95", {g.low, g.high}}};
}

}  // namespace posttrain
