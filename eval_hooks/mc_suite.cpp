// Multiple choice by log-likelihood: every (item, displayed option) pair under every presentation is
// one continuation scored by the policy. acc / acc_norm / MC2 on the canonical presentation, with
// bootstrap intervals; robustness over the perturbations; the audit runs first / last / longest /
// shortest / constant-answer policies on the canonical presentation.
#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/rng.h"
#include "eval_hooks/scoring.h"
#include "eval_hooks/suite.h"

namespace posttrain {

namespace {

std::string json_list(const std::vector<std::string>& values) { return nlohmann::json(values).dump(); }

// The log-likelihoods acc picks among: the item's acc choices (all by default); the others get -inf.
std::vector<double> acc_eligible(const McItem& item, const RenderedMc& r, std::vector<double> ll) {
  for (size_t k = 0; k < ll.size(); ++k)
    if (!item.acc_choices.empty() &&
        std::find(item.acc_choices.begin(), item.acc_choices.end(), r.order[k]) == item.acc_choices.end())
      ll[k] = -1e300;
  return ll;
}

// The primary score (acc or acc_norm) on the canonical presentation, item by item: what the red
// team's preference attacks see.
class McChoices : public ChoiceScorer {
 public:
  McChoices(const std::vector<McItem>& items, const Presentation& canonical, const McStyle& style, bool chat)
      : items_(items), style_(style), chat_(chat) {
    for (const auto& item : items) rendered_.push_back(render_mc(item, canonical, style));
  }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].id; }
  std::string context(size_t i) const override { return rendered_[i].context; }
  std::vector<std::string> continuations(size_t i) const override { return rendered_[i].continuations; }
  bool chat() const override { return chat_; }
  size_t credited(size_t i) const override { return static_cast<size_t>(rendered_[i].gold_position); }
  std::vector<std::string> option_texts(size_t i) const override {
    std::vector<std::string> texts;
    for (int original : rendered_[i].order) texts.push_back(items_[i].choices[static_cast<size_t>(original)]);
    return texts;
  }
  double score(size_t i, const std::vector<double>& loglik) const override {
    return pick(items_[i], rendered_[i], loglik, style_) == rendered_[i].gold_position ? 1.0 : 0.0;
  }

  // The position the suite's primary score (acc or acc_norm) picks.
  static int pick(const McItem& item, const RenderedMc& r, const std::vector<double>& loglik, const McStyle& style) {
    const std::vector<double> eligible = acc_eligible(item, r, loglik);
    if (style.primary != "acc_norm") return choose_by_loglik(eligible);
    if (!style.norm_by_choice_characters) return choose_by_loglik_per_byte(eligible, r.continuations);
    std::vector<std::string> texts;
    for (int original : r.order) texts.push_back(item.choices[static_cast<size_t>(original)]);
    return choose_by_loglik_per_character(eligible, texts);
  }

 private:
  const std::vector<McItem>& items_;
  std::vector<RenderedMc> rendered_;  // per item, the canonical presentation
  McStyle style_;
  bool chat_;
};

class McSuite : public EvalSuite {
 public:
  McSuite(std::vector<McItem> items, McStyle style, CommonSuiteOptions options, bool chat)
      : items_(std::move(items)),
        style_(std::move(style)),
        chat_(chat),
        choices_(items_, mc_presentations(style_, most_choices()).front(), style_, chat_) {
    common = std::move(options);
    if (items_.empty()) fail(common.data, "no items");
  }

  const ChoiceScorer* choice_scorer() const override { return &choices_; }

  size_t item_count() const override { return items_.size(); }

  std::vector<std::string> item_texts() const override {
    std::vector<std::string> texts;
    for (const auto& item : items_) {
      std::string text = item.question;
      for (const auto& c : item.choices) text += " " + c;
      texts.push_back(text);
    }
    return texts;
  }

  SuiteResult run(SuiteContext& context) override {
    EvalModel& model = context.policy;
    const auto presentations = mc_presentations(style_, most_choices());
    // Every continuation of every presentation in one sharded pass. Identical requests are scored
    // once: without listed options, order shifts change no prompt, only the positions.
    std::vector<ScoringRequest> requests;
    std::vector<size_t> request_of;  // per (presentation, item, position): index into requests
    std::map<std::vector<int32_t>, size_t> seen;
    const auto add_request = [&](ScoringRequest request) {
      std::vector<int32_t> key(request.context);
      key.push_back(-1);
      key.insert(key.end(), request.continuation.begin(), request.continuation.end());
      const auto [it, inserted] = seen.emplace(std::move(key), requests.size());
      if (inserted) requests.push_back(std::move(request));
      request_of.push_back(it->second);
    };
    std::vector<std::vector<RenderedMc>> rendered(presentations.size());
    for (size_t p = 0; p < presentations.size(); ++p)
      for (const auto& item : items_) {
        rendered[p].push_back(render_mc(item, presentations[p], style_));
        const RenderedMc& r = rendered[p].back();
        for (const auto& continuation : r.continuations) {
          if (chat_) {
            add_request({model.chat_prompt(r.context), model.tokenizer().encode(continuation.substr(1))});
          } else {
            add_request(model.text_request(r.context, continuation));
          }
        }
      }
    const std::vector<double> unique_loglik = model.loglikelihoods(requests);
    std::vector<double> loglik;
    for (size_t index : request_of) loglik.push_back(unique_loglik[index]);

    SuiteResult result;
    result.primary = style_.primary;
    std::vector<PerturbationOutcome> outcomes;
    std::vector<double> acc, acc_norm, mc2;
    size_t next = 0;
    for (size_t p = 0; p < presentations.size(); ++p) {
      PerturbationOutcome outcome;
      outcome.id = presentations[p].id;
      outcome.axis = presentations[p].axis;
      for (size_t i = 0; i < items_.size(); ++i) {
        const McItem& item = items_[i];
        const RenderedMc& r = rendered[p][i];
        const size_t n = r.continuations.size();
        std::vector<double> ll(loglik.begin() + static_cast<long>(next), loglik.begin() + static_cast<long>(next + n));
        next += n;
        const std::vector<double> eligible = acc_eligible(item, r, ll);
        std::vector<int> truth(n);
        for (size_t k = 0; k < n; ++k) truth[k] = item.truth[static_cast<size_t>(r.order[k])];
        std::vector<std::string> texts;
        for (size_t k = 0; k < n; ++k) texts.push_back(item.choices[static_cast<size_t>(r.order[k])]);
        const int pick = choose_by_loglik(eligible);
        const int pick_norm = style_.norm_by_choice_characters ? choose_by_loglik_per_character(eligible, texts)
                                                               : choose_by_loglik_per_byte(eligible, r.continuations);
        const double correct = pick == r.gold_position ? 1.0 : 0.0;
        const double correct_norm = pick_norm == r.gold_position ? 1.0 : 0.0;
        const double item_mc2 = mc2_score(ll, truth);
        const bool by_norm = style_.primary == "acc_norm";
        const int primary_pick = by_norm ? pick_norm : pick;
        outcome.item_scores.push_back(by_norm ? correct_norm : correct);
        outcome.item_choice.push_back(std::to_string(r.order[static_cast<size_t>(primary_pick)]));
        outcome.gold_position.push_back(r.gold_position);
        outcome.chosen_position.push_back(primary_pick);
        if (p == 0) {
          acc.push_back(correct);
          acc_norm.push_back(correct_norm);
          mc2.push_back(item_mc2);
        }
        auto& rec = result.records;
        rec.text["item_id"].push_back(item.id);
        rec.text["perturbation"].push_back(presentations[p].id);
        rec.text["context"].push_back(r.context);
        rec.text["choices"].push_back(json_list(texts));
        rec.text["logprobs"].push_back(nlohmann::json(ll).dump());
        rec.number["gold"].push_back(r.gold_position);
        rec.number["chosen"].push_back(pick);
        rec.number["chosen_norm"].push_back(pick_norm);
        rec.number["correct"].push_back(correct);
        rec.number["correct_norm"].push_back(correct_norm);
        rec.number["mc2"].push_back(item_mc2);
      }
      outcomes.push_back(outcome);
    }
    result.scores["acc"] = score_with_interval(acc, common);
    result.scores["acc_norm"] = score_with_interval(acc_norm, common);
    result.scores["mc2"] = score_with_interval(mc2, common);
    result.items = canonical_items(items_, outcomes.front().item_scores);
    result.robustness = robustness_summary(outcomes);
    return result;
  }

  nlohmann::json audit() const override {
    Presentation canonical = mc_presentations(style_, most_choices()).front();
    // The answer text seen most often across items: a "constant answer" policy gives it whenever offered.
    std::map<std::string, int> counts;
    for (const auto& item : items_)
      for (const auto& c : item.choices) ++counts[c];
    std::string constant;
    int best = 0;
    for (const auto& [text, count] : counts)
      if (count > best) constant = text, best = count;

    std::map<std::string, double> correct;
    double chance = 0;
    for (const auto& item : items_) {
      const RenderedMc r = render_mc(item, canonical, style_);
      std::vector<int> positions;  // displayed positions acc picks among
      for (size_t k = 0; k < r.order.size(); ++k)
        if (item.acc_choices.empty() ||
            std::find(item.acc_choices.begin(), item.acc_choices.end(), r.order[k]) != item.acc_choices.end())
          positions.push_back(static_cast<int>(k));
      chance += 1.0 / static_cast<double>(positions.size());
      const auto text_at = [&](int k) { return item.choices[static_cast<size_t>(r.order[static_cast<size_t>(k)])]; };
      // Ties (equal lengths, an absent constant answer) are broken by a fixed draw per item, not by
      // position: otherwise the length policies would inherit always_first's position bias.
      std::vector<int> tie_order = positions;
      uint64_t state = common.seed ^ fnv1a64(item.id) ^ 0xA0D17ull;
      for (size_t k = tie_order.size() - 1; k > 0; --k) std::swap(tie_order[k], tie_order[splitmix64(state) % (k + 1)]);
      int longest = tie_order.front(), shortest = tie_order.front(), constant_pick = tie_order.front();
      for (int k : tie_order) {
        if (text_at(k).size() > text_at(longest).size()) longest = k;
        if (text_at(k).size() < text_at(shortest).size()) shortest = k;
        if (text_at(k) == constant) constant_pick = k;
      }
      const std::map<std::string, int> picks = {{"always_first", positions.front()},
                                                {"always_last", positions.back()},
                                                {"always_longest", longest},
                                                {"always_shortest", shortest},
                                                {"constant_answer", constant_pick}};
      for (const auto& [policy, pick] : picks) correct[policy] += pick == r.gold_position ? 1.0 : 0.0;
    }
    const double n = static_cast<double>(items_.size());
    std::vector<PolicyScore> policies;
    for (const auto& [policy, hits] : correct) policies.push_back({policy, hits / n, nullptr});
    nlohmann::json verdict = audit_verdict(policies, chance / n, common.gameable_margin);
    verdict["score"] = "acc";
    verdict["constant_answer_text"] = constant;
    return verdict;
  }

 private:
  int most_choices() const {
    size_t most = 0;
    for (const auto& item : items_) most = std::max(most, item.choices.size());
    return static_cast<int>(most);
  }

  std::vector<McItem> items_;
  McStyle style_;
  bool chat_;
  McChoices choices_;  // after items_ and style_: it renders them
};

// Options of the registered multiple-choice suites: labels, template, shuffle, chat.
McStyle read_mc_style(YamlSection& options, const CommonSuiteOptions& common, const std::string& default_labels) {
  McStyle style;
  style.labels = options.get<std::string>("labels", default_labels);
  style.template_index = static_cast<int>(options.get<int64_t>("template", 0));
  style.shuffle = options.get<bool>("shuffle", true);
  style.max_shifts = static_cast<int>(options.get<int64_t>("max_shifts", style.max_shifts));
  style.seed = common.seed;
  style.axes = common.perturbations;
  if (style.labels != "letters" && style.labels != "numbers" && style.labels != "none")
    options.fail_at("labels", "must be letters, numbers or none");
  if (style.template_index < 0 || style.template_index >= mc_template_count())
    options.fail_at("template", "must be in [0, " + std::to_string(mc_template_count() - 1) + "]");
  if (style.max_shifts < 0) options.fail_at("max_shifts", "must be >= 0 (0 = every cyclic shift)");
  return style;
}

const bool registered = [] {
  register_suite(
      "truthfulqa_mc",
      [](YamlSection& options) {
        CommonSuiteOptions common = read_common_options(options, {"order", "labels", "template", "format"});
        // lm-eval's TruthfulQA scores the answer texts themselves: no labels by default.
        const McStyle style = read_mc_style(options, common, "none");
        const bool chat = options.get<bool>("chat", false);
        auto items = load_truthfulqa(common.data);
        apply_limit(items, common.limit);
        return make_mc_suite(std::move(items), style, common, chat);
      },
      "TruthfulQA multiple choice (mc_task.json or TruthfulQA.csv): acc (MC1), acc_norm, mc2");
  register_suite(
      "mc",
      [](YamlSection& options) {
        CommonSuiteOptions common = read_common_options(options, {"order", "labels", "template", "format"});
        const McStyle style = read_mc_style(options, common, "letters");
        const bool chat = options.get<bool>("chat", false);
        auto items = load_mc_jsonl(common.data);
        apply_limit(items, common.limit);
        return make_mc_suite(std::move(items), style, common, chat);
      },
      "multiple choice from JSONL {question, choices, answer}: acc, acc_norm, mc2");
  return true;
}();

}  // namespace

std::unique_ptr<EvalSuite> make_mc_suite(std::vector<McItem> items, const McStyle& style, CommonSuiteOptions common,
                                         bool chat) {
  return std::make_unique<McSuite>(std::move(items), style, std::move(common), chat);
}

}  // namespace posttrain
