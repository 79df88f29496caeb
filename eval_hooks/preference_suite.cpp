// Paired preference: does the policy prefer the chosen response? For a causal LM, the implicit
// reward of a DPO-style policy against its reference, r = beta (sum log pi - sum log pi_ref) over the
// response and its end token; for a reward model, its score. Primary score: win rate of chosen over
// rejected (ties count half).
#include "core/error.h"
#include "datasets/sft_data.h"
#include "eval_hooks/scoring.h"
#include "eval_hooks/suite.h"

namespace posttrain {

namespace {

double win(double chosen, double rejected) { return chosen > rejected ? 1.0 : (chosen == rejected ? 0.5 : 0.0); }

class PreferenceSuite : public EvalSuite {
 public:
  PreferenceSuite(std::vector<PreferenceItem> items, CommonSuiteOptions options, double beta)
      : items_(std::move(items)), beta_(beta) {
    common = std::move(options);
    if (items_.empty()) fail(common.data, "no items");
  }

  size_t item_count() const override { return items_.size(); }
  bool scores_classifiers() const override { return true; }
  std::vector<std::string> item_texts() const override {
    std::vector<std::string> texts;
    for (const auto& item : items_)
      texts.push_back((item.prompt.is_string() ? item.prompt.get<std::string>() : item.prompt.dump()) + " " +
                      item.chosen + " " + item.rejected);
    return texts;
  }

  SuiteResult run(SuiteContext& context) override {
    EvalModel& policy = context.policy;
    const auto presentations = text_presentations(common.perturbations);
    std::vector<ScoringRequest> requests;  // per presentation and item: chosen, rejected
    for (const auto& p : presentations)
      for (const auto& item : items_) {
        nlohmann::json prompt = item.prompt;
        if (prompt.is_string()) prompt = format_text(prompt.get<std::string>(), p.format);
        for (const auto* response : {&item.chosen, &item.rejected}) {
          const auto example = encode_prompt_response(prompt, *response, nullptr, nlohmann::ordered_json::object(),
                                                      policy.tokenizer(), item.id, "response");
          const auto split = example.ids.begin() + static_cast<long>(example.prompt_length);
          requests.push_back(
              {std::vector<int32_t>(example.ids.begin(), split), std::vector<int32_t>(split, example.ids.end())});
        }
      }
    std::vector<double> rewards;
    const bool reward_model = policy.is_classifier();
    if (reward_model) {
      rewards = policy.classifier_scores(requests);
    } else {
      const auto pi = policy.loglikelihoods(requests);
      const auto ref = context.reference().loglikelihoods(requests);
      for (size_t i = 0; i < pi.size(); ++i) rewards.push_back(beta_ * (pi[i] - ref[i]));
    }
    SuiteResult result;
    result.primary = "win_rate";
    std::vector<PerturbationOutcome> outcomes;
    size_t next = 0;
    for (const auto& p : presentations) {
      PerturbationOutcome outcome;
      outcome.id = p.id;
      outcome.axis = p.axis;
      std::vector<double> margins, chosen_rewards, rejected_rewards;
      for (const auto& item : items_) {
        const double c = rewards[next], r = rewards[next + 1];
        next += 2;
        outcome.item_scores.push_back(win(c, r));
        outcome.item_choice.push_back(c > r ? "chosen" : (c == r ? "tie" : "rejected"));
        margins.push_back(c - r);
        chosen_rewards.push_back(c);
        rejected_rewards.push_back(r);
        auto& rec = result.records;
        rec.text["item_id"].push_back(item.id);
        rec.text["perturbation"].push_back(p.id);
        rec.number["reward_chosen"].push_back(c);
        rec.number["reward_rejected"].push_back(r);
        rec.number["win"].push_back(win(c, r));
      }
      if (p.axis == "canonical") {
        result.scores["win_rate"] = score_with_interval(outcome.item_scores, common);
        result.scores["margin"] = score_with_interval(margins, common);
        result.scores["reward_chosen"] = score_with_interval(chosen_rewards, common);
        result.scores["reward_rejected"] = score_with_interval(rejected_rewards, common);
      }
      outcomes.push_back(outcome);
    }
    result.items = canonical_items(items_, outcomes.front().item_scores);
    result.robustness = robustness_summary(outcomes);
    result.details["scorer"] = reward_model ? "reward_model" : "implicit_reward";
    result.details["beta"] = beta_;
    return result;
  }

  nlohmann::json audit() const override {
    // Scorers that look only at length, or at nothing.
    double longer = 0, shorter = 0;
    for (const auto& item : items_) {
      const double c = static_cast<double>(item.chosen.size()), r = static_cast<double>(item.rejected.size());
      longer += win(c, r);
      shorter += win(-c, -r);
    }
    const double n = static_cast<double>(items_.size());
    nlohmann::json verdict = audit_verdict(
        {{"prefer_longer", longer / n, nullptr}, {"prefer_shorter", shorter / n, nullptr}, {"constant", 0.5, nullptr}},
        0.5, common.gameable_margin);
    verdict["score"] = "win_rate";
    return verdict;
  }

 private:
  std::vector<PreferenceItem> items_;
  double beta_;
};

const bool registered = [] {
  register_suite(
      "preference",
      [](YamlSection& options) -> std::unique_ptr<EvalSuite> {
        CommonSuiteOptions common = read_common_options(options, {"format"});
        const double beta = options.get<double>("beta", 0.1);
        if (beta <= 0) options.fail_at("beta", "must be positive");
        auto items = load_preference_jsonl(common.data);
        apply_limit(items, common.limit);
        return std::make_unique<PreferenceSuite>(std::move(items), common, beta);
      },
      "paired preference {prompt, chosen, rejected}: win rate by implicit reward (policy vs reference) or reward "
      "model");
  return true;
}();

}  // namespace

}  // namespace posttrain
