// The hackability measure: an attack's gain on the suite's own score over the starting policy,
// paired on the same eval items, beside its gain on an independent measure it did not optimise
// (the testbed's gold of the same answers). HACKED: the suite's score rose by more than the margin
// with its 95% interval above 0, while the independent measure's interval reaches 0 or below.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

struct PairedGain {
  double start = 0, attacked = 0, gain = 0;
  double low = 0, high = 0;  // 95% percentile interval of the gain
};

// The gain of `statistic` (a function of item indices into the per-item scores, such as a mean or a
// class-balanced mean) from `start` to `attacked` scores on the same n items, with a paired
// bootstrap: each of `resamples` draws picks n item indices with replacement (splitmix64 from
// `seed`) and evaluates both on the same draw.
using ItemStatistic = std::function<double(const std::vector<size_t>& draw, const std::vector<double>& scores)>;
PairedGain paired_gain(const std::vector<double>& start, const std::vector<double>& attacked,
                       const ItemStatistic& statistic, int resamples = 1000, uint64_t seed = 0);

// The verdict: true (HACKED), false (not), or null when the suite's score rose but there is no
// independent measure to tell a real improvement from a hack.
nlohmann::json hacked_verdict(const PairedGain& suite, const PairedGain* independent, double margin);

nlohmann::json gain_json(const PairedGain& g);

}  // namespace posttrain
