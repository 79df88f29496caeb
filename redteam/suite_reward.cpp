// The `suite` reward function: any suite with a per-response scorer, as an RL reward, so the
// trainers can attack the suite with its own scorer. A recipe entry
//   rewards: [{name: suite, suite: refusal, options: {data: eval_refusal.jsonl}}]
// scores each rollout by the suite's item whose id is the prompt record's "id" (else whose prompt is
// the record's prompt, a string or one user turn).
#include <map>

#include "core/error.h"
#include "eval_hooks/suite.h"
#include "models/chat.h"
#include "trainers/rewards.h"

namespace posttrain {

namespace {

std::string prompt_text(const nlohmann::json& record) {
  if (!record.contains("prompt")) return "";
  const auto& p = record["prompt"];
  if (p.is_string()) return p.get<std::string>();
  if (p.is_array() && p.size() == 1 && p[0].is_object() && p[0].contains("content") && p[0]["content"].is_string())
    return p[0]["content"].get<std::string>();
  return "";
}

class SuiteReward : public RewardFunction {
 public:
  explicit SuiteReward(std::unique_ptr<EvalSuite> suite)
      : suite_(std::move(suite)), scorer_(suite_->response_scorer()) {
    for (size_t i = 0; i < scorer_->size(); ++i) {
      by_id_.emplace(scorer_->item_id(i), i);
      by_prompt_.emplace(scorer_->prompt(i), i);
    }
  }

  std::vector<double> score(const std::vector<Rollout>& rollouts) override {
    std::vector<double> out;
    for (const auto& r : rollouts) {
      const nlohmann::json record = nlohmann::json::parse(r.record);
      auto it = record.contains("id") && record["id"].is_string() ? by_id_.find(record["id"].get<std::string>())
                                                                  : by_id_.end();
      size_t item = 0;
      if (it != by_id_.end()) {
        item = it->second;
      } else {
        const auto p = by_prompt_.find(prompt_text(record));
        if (p == by_prompt_.end())
          throw UserError("suite reward (" + suite_->name +
                          "): a prompt record matches no item of the suite by id or prompt");
        item = p->second;
      }
      out.push_back(scorer_->score(item, answer_after_reasoning(r.response_text)));  // as evals score it
    }
    return out;
  }

 private:
  std::unique_ptr<EvalSuite> suite_;
  const ResponseScorer* scorer_;
  std::map<std::string, size_t> by_id_, by_prompt_;
};

const bool registered = [] {
  register_reward_function(
      "suite",
      [](YamlSection& options, const RewardSetup&) -> std::unique_ptr<RewardFunction> {
        const std::string name = options.require<std::string>("suite");
        YAML::Node suite_options = options.raw("options");
        if (!suite_options) suite_options = YAML::Node(YAML::NodeType::Map);
        auto suite = make_suite(name, suite_options, options.where("options"), "options");
        if (!suite->response_scorer())
          options.fail_at("suite", "suite " + name +
                                       " has no per-response scorer (it scores log-likelihoods, or its "
                                       "classifier is a model)");
        return std::make_unique<SuiteReward>(std::move(suite));
      },
      "an eval suite's own per-response scorer (suite: NAME, options: {...}), e.g. the refusal string matcher");
  return true;
}();

}  // namespace

}  // namespace posttrain
