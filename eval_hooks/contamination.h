// The contamination guard: does the training data contain an eval suite's canary string, or share
// 13-word sequences with its items? Words are lower-cased runs of letters and digits.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

// All text of the training files: every string value of every JSONL record (other files whole).
std::string training_text(const std::vector<std::string>& files);

// The training text's n-grams, hashed once, then checked against any number of suites' items.
class TrainingNgrams {
 public:
  explicit TrainingNgrams(std::string training, size_t n = 13);
  // {"canary_found", "ngram": n, "items_checked", "items_overlapping", "overlap_rate",
  //  "items_too_short", "overlapping_items": [first few item indices]}.
  // Items shorter than n words cannot be checked by n-grams and are counted as too short.
  nlohmann::json report(const std::vector<std::string>& items, const std::string& canary) const;

 private:
  std::string training_;  // for the canary search
  size_t n_;
  std::unordered_set<uint64_t> hashes_;
};

// One suite's report: TrainingNgrams(training, n).report(items, canary).
nlohmann::json contamination_report(const std::string& training, const std::vector<std::string>& items,
                                    const std::string& canary, size_t n = 13);

}  // namespace posttrain
