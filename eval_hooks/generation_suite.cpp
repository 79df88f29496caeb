// Free generation scored against references (YAML tasks with output_type: generate_until): the
// answer is cut at the first `until` string, passed through each filter pipeline (lm-eval's
// filter_list), and scored by each metric; the first pipeline's first metric is the primary score.
// The audit gives every item the most common reference, and an empty answer.
#include <algorithm>
#include <cstring>
#include <map>

#include "core/error.h"
#include "core/jinja.h"
#include "core/python_re.h"
#include "eval_hooks/scoring.h"
#include "eval_hooks/suite.h"

namespace posttrain {

namespace {

// Python's str.strip() / lstrip() with no argument: Unicode whitespace; ASCII's is what answers hold.
std::string python_strip(const std::string& text, bool right) {
  const char* space = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f";
  const size_t first = text.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return right ? text.substr(first, text.find_last_not_of(space) - first + 1) : text.substr(first);
}

// lm-eval's RegexFilter: findall, the group_select-th match, a tuple's first non-empty group,
// stripped; the fallback when there is none.
std::string regex_filter(const AnswerFilter& f, const std::string& answer) {
  const auto matches = python_findall(f.pattern, answer);
  if (matches.empty()) return f.fallback;
  const long n = static_cast<long>(matches.size());
  const long at = f.group_select < 0 ? n + f.group_select : f.group_select;
  if (at < 0 || at >= n) return f.fallback;  // Python would raise IndexError: no answer extracted
  const auto& groups = matches[static_cast<size_t>(at)];
  if (groups.size() == 1) return python_strip(groups[0], true);
  for (const auto& g : groups)
    if (!g.empty()) return python_strip(g, true);
  return python_strip(f.fallback, true);
}

std::string apply_filters(const FilterPipeline& pipeline, std::string answer) {
  for (const auto& f : pipeline.steps) {
    if (f.function == "regex")
      answer = regex_filter(f, answer);
    else if (f.function == "remove_whitespace")
      answer = python_strip(answer, false);
    else if (f.function == "strip")
      answer = python_strip(answer, true);
    else if (f.function == "lowercase")
      answer = python_lower(answer);
    else if (f.function == "uppercase")
      answer = python_upper(answer);
    // take_first: one generation per request, nothing to choose
  }
  return answer;
}

// HF evaluate's exact_match on one pair (lm-eval's exact_match), or posttrain's contains.
double metric_score(const GenerationMetric& m, std::string answer, std::string reference) {
  for (const auto& pattern : m.regexes_to_ignore) {
    answer = python_sub(pattern, "", answer);
    reference = python_sub(pattern, "", reference);
  }
  if (m.ignore_case) {
    answer = python_lower(answer);
    reference = python_lower(reference);
  }
  auto drop = [](std::string& text, const char* set) {
    text.erase(std::remove_if(text.begin(), text.end(), [&](char c) { return c != 0 && std::strchr(set, c); }),
               text.end());
  };
  if (m.ignore_punctuation) {
    drop(answer, "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
    drop(reference, "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
  }
  if (m.ignore_numbers) {
    drop(answer, "0123456789");
    drop(reference, "0123456789");
  }
  if (m.name == "contains") return answer.find(reference) != std::string::npos ? 1.0 : 0.0;
  return answer == reference ? 1.0 : 0.0;
}

class GenerationSuite : public EvalSuite, public ResponseScorer {
 public:
  GenerationSuite(std::vector<GenerationItem> items, GenerationStyle style, CommonSuiteOptions options)
      : items_(std::move(items)), style_(std::move(style)) {
    common = std::move(options);
    if (items_.empty()) fail(common.data, "no items");
    for (const auto& item : items_)
      if (item.targets.empty()) fail(common.data, item.id + ": no reference to score against");
  }

  size_t item_count() const override { return items_.size(); }
  std::vector<std::string> item_texts() const override {
    std::vector<std::string> texts;
    for (const auto& item : items_) texts.push_back(item.prompt + " " + item.targets.front());
    return texts;
  }

  const ResponseScorer* response_scorer() const override { return this; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].id; }
  std::string prompt(size_t i) const override { return items_[i].prompt; }
  double score(size_t i, const std::string& response) const override {
    return score(style_.filters.front(), style_.metrics.front(), cut_at_stop(response), items_[i]);
  }
  bool chat() const override { return style_.chat; }
  int64_t max_new_tokens() const override { return style_.max_new_tokens; }
  std::string text_suffix() const override { return ""; }

  // The answer ends at the first `until` string.
  std::string cut_at_stop(std::string answer) const {
    for (const auto& stop : style_.until) {
      const size_t at = answer.find(stop);
      if (!stop.empty() && at != std::string::npos) answer.resize(at);
    }
    return answer;
  }

  // The best score over the item's references of the answer after the pipeline.
  double score(const FilterPipeline& pipeline, const GenerationMetric& metric, const std::string& answer,
               const GenerationItem& item) const {
    const std::string filtered = apply_filters(pipeline, answer);
    double best = 0;
    for (const auto& target : item.targets)
      best =
          std::max(best, metric_score(metric, filtered, style_.trim_references ? python_strip(target, true) : target));
    return best;
  }

  std::string key(const FilterPipeline& pipeline, const GenerationMetric& metric) const {
    return style_.keys_with_filter ? metric.name + "," + pipeline.name : metric.name;
  }

  SuiteResult run(SuiteContext& context) override {
    EvalModel& model = context.policy;
    const auto presentations = text_presentations(common.perturbations);
    std::vector<std::string> prompts;
    for (const auto& item : items_) prompts.push_back(item.prompt);
    auto answers = generate_answers(model, prompts, presentations, style_.chat, style_.max_new_tokens, "");
    for (auto& a : answers) a = cut_at_stop(a);
    SuiteResult result;
    result.primary = key(style_.filters.front(), style_.metrics.front());
    std::vector<PerturbationOutcome> outcomes;
    std::map<std::string, std::vector<double>> canonical;  // every (metric, filter) score per item
    for (size_t p = 0; p < presentations.size(); ++p) {
      PerturbationOutcome outcome;
      outcome.id = presentations[p].id;
      outcome.axis = presentations[p].axis;
      for (size_t i = 0; i < items_.size(); ++i) {
        const std::string& answer = answers[p * items_.size() + i];
        const auto& item = items_[i];
        outcome.item_scores.push_back(score(style_.filters.front(), style_.metrics.front(), answer, item));
        outcome.item_choice.push_back(apply_filters(style_.filters.front(), answer));
        if (p == 0)
          for (const auto& pipeline : style_.filters)
            for (const auto& metric : style_.metrics)
              canonical[key(pipeline, metric)].push_back(score(pipeline, metric, answer, item));
        auto& rec = result.records;
        rec.text["item_id"].push_back(item.id);
        rec.text["perturbation"].push_back(presentations[p].id);
        rec.text["generation"].push_back(answer);
        rec.text["filtered"].push_back(outcome.item_choice.back());
        rec.text["target"].push_back(item.targets.size() == 1 ? item.targets[0] : nlohmann::json(item.targets).dump());
        rec.number["correct"].push_back(outcome.item_scores.back());
      }
      outcomes.push_back(outcome);
    }
    for (const auto& [name, values] : canonical) result.scores[name] = score_with_interval(values, common);
    result.items = canonical_items(items_, outcomes.front().item_scores);
    result.robustness = robustness_summary(outcomes);
    return result;
  }

  nlohmann::json audit() const override {
    std::map<std::string, int> counts;
    for (const auto& item : items_) ++counts[item.targets.front()];
    std::string constant;
    int best = 0;
    for (const auto& [text, count] : counts)
      if (count > best) constant = text, best = count;
    double constant_score = 0, empty_score = 0;
    for (const auto& item : items_) {
      constant_score += score(style_.filters.front(), style_.metrics.front(), constant, item);
      empty_score += score(style_.filters.front(), style_.metrics.front(), "", item);
    }
    const double n = static_cast<double>(items_.size());
    // Free generation has no chance level: a fixed answer should score about zero.
    nlohmann::json verdict =
        audit_verdict({{"constant_answer", constant_score / n, nullptr}, {"empty_answer", empty_score / n, nullptr}},
                      0.0, common.gameable_margin);
    verdict["score"] = key(style_.filters.front(), style_.metrics.front());
    verdict["constant_answer_text"] = constant;
    return verdict;
  }

 private:
  std::vector<GenerationItem> items_;
  GenerationStyle style_;
};

}  // namespace

std::unique_ptr<EvalSuite> make_generation_suite(std::vector<GenerationItem> items, const GenerationStyle& style,
                                                 CommonSuiteOptions common) {
  return std::make_unique<GenerationSuite>(std::move(items), style, std::move(common));
}

}  // namespace posttrain
