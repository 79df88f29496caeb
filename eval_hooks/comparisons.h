// Statistics over seed replicates: a method's score with an interval over seeds and items, paired
// comparisons between methods (same items, same seeds), Holm-Bonferroni across comparisons, and the
// minimum detectable difference. Pure functions over per-item scores; no model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace posttrain {

// One run's per-item scores on one suite, canonical presentation. The suite's primary score is
// the mean over groups of each group's mean (a class-balanced score such as refusal's: group =
// class); a suite without classes puts every item in group 0 and the score is the plain mean.
struct ItemScores {
  std::vector<std::string> ids;
  std::vector<double> scores;
  std::vector<int> groups;  // 0..G-1 per item
};

// The suite's primary score from its items (as above); NaN without items.
double primary_score(const ItemScores& items);

// A method's score over seed replicates: the mean over seeds of each seed's primary score, the
// between-seed standard deviation (sample, n - 1; 0 for one seed), and a 95% percentile interval
// from a hierarchical bootstrap: each resample draws the seeds with replacement, then within each
// drawn seed the items with replacement (within their group, keeping each group's size).
struct ReplicatedScore {
  double mean = 0, seed_sd = 0, low = 0, high = 0;
  int seeds = 0;
};
ReplicatedScore replicated_score(const std::vector<ItemScores>& seeds, int resamples = 2000, uint64_t rng_seed = 0);

// Method A minus method B on one suite, paired: seed s of A against seed s of B (same base, data
// order and sampling seed), item against item (matched by id, the k-th occurrence of a repeated id
// with the k-th; both runs must hold the same ids).
// Each resample of the paired hierarchical bootstrap draws seeds, then items within groups, and
// applies the same draw to both methods. p is two-sided: twice the smaller share of resampled
// differences at or beyond 0 on either side ((1 + count) / (1 + resamples), at most 1), i.e. the
// smallest alpha whose percentile interval excludes 0, so p < 0.05 exactly when the 95% interval
// does. min_detectable: (z_0.975 + z_0.8) x the bootstrap standard error, the true difference this
// design finds with 80% power at alpha 0.05 (uncorrected).
struct PairedComparison {
  double difference = 0, low = 0, high = 0, p_value = 1, standard_error = 0, min_detectable = 0;
  int seeds = 0, items = 0;
};
PairedComparison compare_paired(const std::vector<ItemScores>& a, const std::vector<ItemScores>& b,
                                int resamples = 2000, uint64_t rng_seed = 0);

// Holm-Bonferroni adjusted p-values, in the input order: sorted ascending, the i-th smallest (from
// 0) becomes max over j <= i of min(1, (m - j) p_(j)). A comparison survives at alpha when its
// adjusted p-value is below alpha; the family-wise error rate is then at most alpha.
std::vector<double> holm_adjust(const std::vector<double>& p_values);

}  // namespace posttrain
