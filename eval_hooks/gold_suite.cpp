// Gold score on the testbed: the policy answers held-out prompts (eval_prompts.jsonl from
// posttrain testbed) and the gold preference scores each answer. Scores: mean gold, the share of
// answers with the right behaviour, and (details) the mean gold per family. The audit gives every
// item the same canned behaviour (always refuse, always comply, a constant answer, padding) and
// reports the oracle's score (the concise right answer) as the ceiling.
#include <map>

#include "core/error.h"
#include "datasets/sft_data.h"
#include "datasets/testbed.h"
#include "eval_hooks/gold.h"
#include "eval_hooks/scoring.h"

namespace posttrain {

namespace {

class GoldSuite : public TestbedSuite, public ResponseScorer {
 public:
  GoldSuite(std::vector<TestbedItem> items, CommonSuiteOptions options, int64_t max_new_tokens, bool chat)
      : TestbedSuite(std::move(items), std::move(options)), max_new_tokens_(max_new_tokens), chat_(chat) {}

  const ResponseScorer* response_scorer() const override { return this; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].id; }
  std::string prompt(size_t i) const override { return items_[i].prompt; }
  double score(size_t i, const std::string& response) const override { return testbed_gold_score(items_[i], response); }
  bool chat() const override { return chat_; }
  int64_t max_new_tokens() const override { return max_new_tokens_; }
  const TestbedItem* testbed_item(size_t i) const override { return &items_[i]; }
  bool is_gold() const override { return true; }

  SuiteResult run(SuiteContext& context) override {
    EvalModel& model = context.policy;
    const auto presentations = text_presentations(common.perturbations);
    const std::vector<std::string> prompts = item_texts();
    const auto answers = generate_answers(model, prompts, presentations, chat_, max_new_tokens_);

    SuiteResult result;
    result.primary = "gold";
    std::vector<PerturbationOutcome> outcomes;
    const size_t n = items_.size();
    for (size_t p = 0; p < presentations.size(); ++p) {
      PerturbationOutcome outcome;
      outcome.id = presentations[p].id;
      outcome.axis = presentations[p].axis;
      std::vector<double> right;
      std::map<std::string, std::pair<double, double>> by_family;  // family -> (sum, count)
      for (size_t i = 0; i < n; ++i) {
        const std::string& answer = answers[p * n + i];
        const double gold = testbed_gold_score(items_[i], answer);
        outcome.item_scores.push_back(gold);
        outcome.item_choice.push_back(gold > 0 ? "right" : "wrong");
        right.push_back(gold > 0 ? 1.0 : 0.0);
        by_family[items_[i].family].first += gold;
        by_family[items_[i].family].second += 1;
        auto& rec = result.records;
        rec.text["item_id"].push_back(items_[i].id);
        rec.text["perturbation"].push_back(presentations[p].id);
        rec.text["family"].push_back(items_[i].family);
        rec.text["generation"].push_back(answer);
        rec.number["gold"].push_back(gold);
      }
      if (p == 0) {
        result.scores["gold"] = score_with_interval(outcome.item_scores, common);
        result.scores["right_behaviour"] = score_with_interval(right, common);
        for (const auto& [family, sum_count] : by_family)
          result.details["gold_by_family"][family] = sum_count.first / sum_count.second;
      }
      outcomes.push_back(outcome);
    }
    result.items = canonical_items(items_, outcomes.front().item_scores);
    result.robustness = robustness_summary(outcomes);
    return result;
  }

 private:
  int64_t max_new_tokens_;
  bool chat_;
};

}  // namespace

TestbedSuite::TestbedSuite(std::vector<TestbedItem> items, CommonSuiteOptions options) : items_(std::move(items)) {
  common = std::move(options);
  if (items_.empty()) fail(common.data, "no items");
}

std::vector<std::string> TestbedSuite::item_texts() const {
  std::vector<std::string> texts;
  for (const auto& item : items_) texts.push_back(item.prompt);
  return texts;
}

nlohmann::json TestbedSuite::audit() const { return testbed_gold_audit(items_, common.gameable_margin); }

nlohmann::json testbed_gold_audit(const std::vector<TestbedItem>& items, double gameable_margin) {
  std::map<std::string, int> counts;
  for (const auto& item : items) ++counts[item.answer];
  std::string constant;
  int best = 0;
  for (const auto& [answer, count] : counts)
    if (!answer.empty() && count > best) constant = answer, best = count;
  const auto mean_gold = [&](const std::function<std::string(const TestbedItem&)>& policy) {
    double sum = 0;
    for (const auto& item : items) sum += testbed_gold_score(item, policy(item));
    return sum / static_cast<double>(items.size());
  };
  std::vector<PolicyScore> policies = {
      {"always_refuse", mean_gold([](const TestbedItem&) { return std::string("I can't help with that."); }), nullptr},
      {"always_comply",
       mean_gold([](const TestbedItem&) { return std::string("Sure. Here is how to do it: step by step."); }), nullptr},
      {"constant_answer", mean_gold([&](const TestbedItem&) { return "The answer is " + constant + "."; }), nullptr},
      {"verbose_padding", mean_gold([](const TestbedItem&) {
         return std::string("Great question! I am happy to help with this, and I hope this helps a lot.");
       }),
       nullptr}};
  // Gold 0 = right as often as wrong; the audit flags a canned behaviour that does better.
  nlohmann::json verdict = audit_verdict(policies, 0.0, gameable_margin);
  verdict["score"] = "gold";
  verdict["oracle"] = mean_gold([](const TestbedItem& item) { return testbed_response(item, TestbedStyle::kConcise); });
  return verdict;
}

std::vector<TestbedItem> read_testbed_items(const CommonSuiteOptions& common) {
  std::vector<TestbedItem> items;
  DataSpec spec;
  spec.train = common.data;
  for_each_jsonl_record(spec, [&](const nlohmann::json& record, const std::string& where) {
    items.push_back(testbed_item_from_json(record, where));
  });
  apply_limit(items, common.limit);
  return items;
}

namespace {

const bool registered = [] {
  register_suite(
      "gold",
      [](YamlSection& options) -> std::unique_ptr<EvalSuite> {
        CommonSuiteOptions common = read_common_options(options, {"format"});
        const int64_t max_new_tokens = options.get<int64_t>("max_new_tokens", 32);
        const bool chat = options.get<bool>("chat", true);
        if (max_new_tokens <= 0) options.fail_at("max_new_tokens", "must be positive");
        return std::make_unique<GoldSuite>(read_testbed_items(common), common, max_new_tokens, chat);
      },
      "gold preference on the testbed's held-out prompts (eval_prompts.jsonl from posttrain testbed)");
  return true;
}();

}  // namespace

}  // namespace posttrain
