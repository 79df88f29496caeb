#include "eval_hooks/comparisons.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace posttrain {

namespace {

// Per group, the positions of its items: what a stratified resample draws from.
std::vector<std::vector<size_t>> positions_by_group(const std::vector<int>& groups) {
  std::vector<std::vector<size_t>> out;
  for (size_t i = 0; i < groups.size(); ++i) {
    if (groups[i] < 0) throw std::invalid_argument("item group must be >= 0");
    const auto g = static_cast<size_t>(groups[i]);
    if (out.size() <= g) out.resize(g + 1);
    out[g].push_back(i);
  }
  return out;
}

// The primary score of `scores` over one stratified draw (`draw` indexes into the items).
double balanced_over(const std::vector<double>& scores, const std::vector<std::vector<size_t>>& draw) {
  double sum = 0, present = 0;
  for (const auto& group : draw) {
    if (group.empty()) continue;
    double s = 0;
    for (size_t i : group) s += scores[i];
    sum += s / static_cast<double>(group.size());
    present += 1;
  }
  return present > 0 ? sum / present : std::nan("");
}

// A stratified resample of items: each group's own size, drawn from that group.
void draw_items(const std::vector<std::vector<size_t>>& by_group, uint64_t& state,
                std::vector<std::vector<size_t>>& draw) {
  draw.resize(by_group.size());
  for (size_t g = 0; g < by_group.size(); ++g) {
    draw[g].resize(by_group[g].size());
    for (auto& i : draw[g]) i = by_group[g][splitmix64(state) % by_group[g].size()];
  }
}

using Draw = std::vector<std::vector<size_t>>;  // per group, the item positions one resample drew

// The hierarchical bootstrap both statistics share: each of `resamples` draws as many seeds as there
// are, with replacement, then for each drawn seed its items within their groups; the resample's
// value is the mean over the drawn seeds of seed_stat(seed, draw). Unsorted, in draw order.
template <typename SeedStat>
std::vector<double> hierarchical_resamples(const std::vector<Draw>& by_group, int resamples, uint64_t state,
                                           const SeedStat& seed_stat) {
  const size_t seeds = by_group.size();
  std::vector<double> stats(static_cast<size_t>(resamples));
  Draw draw;
  for (auto& stat : stats) {
    double sum = 0;
    for (size_t k = 0; k < seeds; ++k) {
      const size_t s = splitmix64(state) % seeds;
      draw_items(by_group[s], state, draw);
      sum += seed_stat(s, draw);
    }
    stat = sum / static_cast<double>(seeds);
  }
  return stats;
}

double percentile(const std::vector<double>& sorted, double q) {  // nearest rank, as bootstrap_interval
  const auto r = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, r == 0 ? 0 : r - 1)];
}

// Keys that pair items: the id, and for an id that repeats (one item asked in several phrasings)
// its occurrence, so the k-th "a" of one run pairs with the k-th "a" of the other.
std::vector<std::string> pairing_keys(const std::vector<std::string>& ids) {
  std::map<std::string, int> seen;
  std::vector<std::string> keys;
  for (const auto& id : ids) keys.push_back(id + "#" + std::to_string(seen[id]++));
  return keys;
}

void check_items(const ItemScores& s) {
  if (s.scores.size() != s.groups.size() || s.scores.size() != s.ids.size())
    throw std::invalid_argument("ItemScores: ids, scores and groups differ in length");
}

}  // namespace

double primary_score(const ItemScores& items) {
  check_items(items);
  std::vector<std::vector<size_t>> all = positions_by_group(items.groups);
  return balanced_over(items.scores, all);
}

ReplicatedScore replicated_score(const std::vector<ItemScores>& seeds, int resamples, uint64_t rng_seed) {
  ReplicatedScore out;
  out.seeds = static_cast<int>(seeds.size());
  if (seeds.empty() || resamples < 1) return {std::nan(""), std::nan(""), std::nan(""), std::nan(""), out.seeds};
  std::vector<double> per_seed;
  std::vector<std::vector<std::vector<size_t>>> by_group;
  for (const auto& s : seeds) {
    per_seed.push_back(primary_score(s));
    by_group.push_back(positions_by_group(s.groups));
  }
  const double S = static_cast<double>(seeds.size());
  out.mean = std::accumulate(per_seed.begin(), per_seed.end(), 0.0) / S;
  double ss = 0;
  for (double v : per_seed) ss += (v - out.mean) * (v - out.mean);
  out.seed_sd = seeds.size() > 1 ? std::sqrt(ss / (S - 1)) : 0.0;

  std::vector<double> stats =
      hierarchical_resamples(by_group, resamples, rng_seed ^ 0x5EED5EEDull,
                             [&](size_t s, const Draw& draw) { return balanced_over(seeds[s].scores, draw); });
  std::sort(stats.begin(), stats.end());
  out.low = percentile(stats, 0.025);
  out.high = percentile(stats, 0.975);
  return out;
}

PairedComparison compare_paired(const std::vector<ItemScores>& a, const std::vector<ItemScores>& b, int resamples,
                                uint64_t rng_seed) {
  if (a.size() != b.size() || a.empty())
    throw UserError("paired comparison: the two methods have " + std::to_string(a.size()) + " and " +
                    std::to_string(b.size()) + " seeds; pairing needs the same seeds");
  PairedComparison out;
  out.seeds = static_cast<int>(a.size());
  // B's scores reordered to A's item order, seed by seed.
  std::vector<std::vector<double>> b_aligned(a.size());
  std::vector<std::vector<std::vector<size_t>>> by_group;
  double total = 0;
  for (size_t s = 0; s < a.size(); ++s) {
    check_items(a[s]);
    check_items(b[s]);
    std::map<std::string, size_t> b_position;
    const std::vector<std::string> b_keys = pairing_keys(b[s].ids);
    for (size_t i = 0; i < b_keys.size(); ++i) b_position[b_keys[i]] = i;
    if (b[s].ids.size() != a[s].ids.size())
      throw UserError("paired comparison: seed " + std::to_string(s) + " scored " + std::to_string(a[s].ids.size()) +
                      " and " + std::to_string(b[s].ids.size()) + " items; pairing needs the same items");
    for (const auto& key : pairing_keys(a[s].ids)) {
      const auto it = b_position.find(key);
      if (it == b_position.end())
        throw UserError("paired comparison: item " + key.substr(0, key.rfind('#')) + " is scored in one run only");
      b_aligned[s].push_back(b[s].scores[it->second]);
    }
    by_group.push_back(positions_by_group(a[s].groups));
    const auto& all = by_group.back();
    total += balanced_over(a[s].scores, all) - balanced_over(b_aligned[s], all);
    out.items += static_cast<int>(a[s].ids.size());
  }
  const double S = static_cast<double>(a.size());
  out.difference = total / S;
  if (resamples < 1) return out;

  std::vector<double> stats = hierarchical_resamples(
      by_group, resamples, rng_seed ^ 0xBA1DEDull,
      [&](size_t s, const Draw& draw) { return balanced_over(a[s].scores, draw) - balanced_over(b_aligned[s], draw); });
  double mean = 0, sq = 0;
  for (double v : stats) mean += v;
  mean /= static_cast<double>(resamples);
  for (double v : stats) sq += (v - mean) * (v - mean);
  out.standard_error = resamples > 1 ? std::sqrt(sq / (resamples - 1)) : 0.0;
  out.min_detectable = (1.959964 + 0.841621) * out.standard_error;
  double at_or_below = 0, at_or_above = 0;
  for (double v : stats) {
    at_or_below += v <= 0;
    at_or_above += v >= 0;
  }
  const double R = static_cast<double>(resamples);
  out.p_value = std::min(1.0, 2.0 * std::min((1 + at_or_below) / (1 + R), (1 + at_or_above) / (1 + R)));
  std::sort(stats.begin(), stats.end());
  out.low = percentile(stats, 0.025);
  out.high = percentile(stats, 0.975);
  return out;
}

std::vector<double> holm_adjust(const std::vector<double>& p_values) {
  const size_t m = p_values.size();
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return p_values[x] < p_values[y]; });
  std::vector<double> adjusted(m);
  double running = 0;
  for (size_t rank = 0; rank < m; ++rank) {
    running = std::max(running, std::min(1.0, static_cast<double>(m - rank) * p_values[order[rank]]));
    adjusted[order[rank]] = running;
  }
  return adjusted;
}

}  // namespace posttrain
