#include "eval_hooks/contamination.h"

#include <cctype>
#include <fstream>
#include <unordered_set>

#include "core/files.h"
#include "datasets/sft_data.h"

namespace posttrain {

namespace {

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c >= 0x80) {
      word += static_cast<char>(std::tolower(c));
    } else if (!word.empty()) {
      words.push_back(word);
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(word);
  return words;
}

uint64_t ngram_hash(const std::vector<std::string>& words, size_t first, size_t n) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the words with a separator
  for (size_t k = first; k < first + n; ++k) {
    for (unsigned char c : words[k]) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0x1F) * 1099511628211ull;
  }
  return h;
}

}  // namespace

std::string training_text(const std::vector<std::string>& files) {
  std::string out;
  for (const auto& file : files) {
    if (file.size() > 6 && file.substr(file.size() - 6) == ".jsonl") {
      std::ifstream in(file, std::ios::binary);
      std::string line;
      while (std::getline(in, line)) {
        try {
          for (const auto& text : json_string_values(nlohmann::json::parse(line))) out += text + "\n";
        } catch (const nlohmann::json::exception&) {
          out += line + "\n";  // not JSON: check the raw line
        }
      }
    } else {
      out += read_file(file);
    }
  }
  return out;
}

TrainingNgrams::TrainingNgrams(std::string training, size_t n) : training_(std::move(training)), n_(n) {
  const auto words = words_of(training_);
  for (size_t k = 0; k + n_ <= words.size(); ++k) hashes_.insert(ngram_hash(words, k, n_));
}

nlohmann::json contamination_report(const std::string& training, const std::vector<std::string>& items,
                                    const std::string& canary, size_t n) {
  return TrainingNgrams(training, n).report(items, canary);
}

nlohmann::json TrainingNgrams::report(const std::vector<std::string>& items, const std::string& canary) const {
  const size_t n = n_;
  size_t checked = 0, overlapping = 0, too_short = 0;
  nlohmann::json examples = nlohmann::json::array();
  for (size_t i = 0; i < items.size(); ++i) {
    const auto words = words_of(items[i]);
    if (words.size() < n) {
      ++too_short;
      continue;
    }
    ++checked;
    bool hit = false;
    for (size_t k = 0; k + n <= words.size() && !hit; ++k) hit = hashes_.count(ngram_hash(words, k, n)) > 0;
    if (hit) {
      ++overlapping;
      if (examples.size() < 5) examples.push_back(i);
    }
  }
  return {{"canary", canary},
          {"canary_found", !canary.empty() && training_.find(canary) != std::string::npos},
          {"ngram", n},
          {"items_checked", checked},
          {"items_overlapping", overlapping},
          {"overlap_rate", checked == 0 ? 0.0 : static_cast<double>(overlapping) / static_cast<double>(checked)},
          {"items_too_short", too_short},
          {"overlapping_items", examples}};
}

}  // namespace posttrain
