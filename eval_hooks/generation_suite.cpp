// Free generation scored against a target (YAML tasks with output_type: generate_until): the answer
// is cut at the first `until` string and compared after trimming whitespace, by exact match or by
// containment. The audit gives every item the most common target, and an empty answer.
#include <map>

#include "core/error.h"
#include "eval_hooks/scoring.h"
#include "eval_hooks/suite.h"

namespace posttrain {

namespace {

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

class GenerationSuite : public EvalSuite, public ResponseScorer {
 public:
  GenerationSuite(std::vector<GenerationItem> items, GenerationStyle style, CommonSuiteOptions options)
      : items_(std::move(items)), style_(std::move(style)) {
    common = std::move(options);
    if (items_.empty()) fail(common.data, "no items");
  }

  size_t item_count() const override { return items_.size(); }
  std::vector<std::string> item_texts() const override {
    std::vector<std::string> texts;
    for (const auto& item : items_) texts.push_back(item.prompt + " " + item.target);
    return texts;
  }

  const ResponseScorer* response_scorer() const override { return this; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].id; }
  std::string prompt(size_t i) const override { return items_[i].prompt; }
  double score(size_t i, const std::string& response) const override {
    return score(cut_at_stop(response), items_[i].target);
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

  double score(const std::string& answer, const std::string& target) const {
    const std::string a = trim(answer), t = trim(target);
    if (style_.metric == "contains") return a.find(t) != std::string::npos ? 1.0 : 0.0;
    return a == t ? 1.0 : 0.0;
  }

  SuiteResult run(SuiteContext& context) override {
    EvalModel& model = context.policy;
    const auto presentations = text_presentations(common.perturbations);
    std::vector<std::string> prompts;
    for (const auto& item : items_) prompts.push_back(item.prompt);
    auto answers = generate_answers(model, prompts, presentations, style_.chat, style_.max_new_tokens, "");
    for (auto& a : answers) a = cut_at_stop(a);
    SuiteResult result;
    result.primary = style_.metric;
    std::vector<PerturbationOutcome> outcomes;
    for (size_t p = 0; p < presentations.size(); ++p) {
      PerturbationOutcome outcome;
      outcome.id = presentations[p].id;
      outcome.axis = presentations[p].axis;
      for (size_t i = 0; i < items_.size(); ++i) {
        const std::string& answer = answers[p * items_.size() + i];
        outcome.item_scores.push_back(score(answer, items_[i].target));
        outcome.item_choice.push_back(trim(answer));
        auto& rec = result.records;
        rec.text["item_id"].push_back(items_[i].id);
        rec.text["perturbation"].push_back(presentations[p].id);
        rec.text["generation"].push_back(answer);
        rec.text["target"].push_back(items_[i].target);
        rec.number["correct"].push_back(outcome.item_scores.back());
      }
      outcomes.push_back(outcome);
    }
    result.scores[style_.metric] = score_with_interval(outcomes.front().item_scores, common);
    result.items = canonical_items(items_, outcomes.front().item_scores);
    result.robustness = robustness_summary(outcomes);
    return result;
  }

  nlohmann::json audit() const override {
    std::map<std::string, int> counts;
    for (const auto& item : items_) ++counts[trim(item.target)];
    std::string constant;
    int best = 0;
    for (const auto& [text, count] : counts)
      if (count > best) constant = text, best = count;
    double constant_score = 0, empty_score = 0;
    for (const auto& item : items_) {
      constant_score += score(constant, item.target);
      empty_score += score("", item.target);
    }
    const double n = static_cast<double>(items_.size());
    // Free generation has no chance level: a fixed answer should score about zero.
    nlohmann::json verdict =
        audit_verdict({{"constant_answer", constant_score / n, nullptr}, {"empty_answer", empty_score / n, nullptr}},
                      0.0, common.gameable_margin);
    verdict["score"] = style_.metric;
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
