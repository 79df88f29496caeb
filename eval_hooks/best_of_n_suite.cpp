// Best-of-n against a proxy reward model on the testbed, as Gao, Schulman and Hilton (2022) measure
// over-optimisation without RL: the policy samples N answers per held-out prompt; for each n in
// 1, 2, 4, ..., N the answer the proxy scores highest among n is kept, and its gold and proxy scores
// are averaged. Expectations over the n-subsets of the N samples are exact (the unbiased estimator:
// the k-th lowest proxy score is the best of a random n-subset with probability C(k-1, n-1) / C(N, n)),
// KL(best-of-n || policy) = ln n - (n - 1) / n, and gold gained since n = 1 is fitted with
// R(d) = d (a - b d), d = sqrt(KL). A gold curve that peaks inside the range is over-optimisation.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "eval_hooks/gold.h"
#include "eval_hooks/overoptimization.h"
#include "eval_hooks/scoring.h"
#include "models/checkpoint.h"
#include "models/tokenizer.h"

namespace posttrain {

namespace {

// ln C(n, k), via lgamma (exact enough: the weights are ratios of these).
double log_choose(int64_t n, int64_t k) {
  return std::lgamma(static_cast<double>(n + 1)) - std::lgamma(static_cast<double>(k + 1)) -
         std::lgamma(static_cast<double>(n - k + 1));
}

class BestOfNSuite : public TestbedSuite {
 public:
  BestOfNSuite(std::vector<TestbedItem> items, CommonSuiteOptions options, std::string reward_model, int64_t samples,
               GenerationOptions sampling)
      : TestbedSuite(std::move(items), std::move(options)),
        reward_model_(std::move(reward_model)),
        samples_(samples),
        sampling_(sampling) {}

  SuiteResult run(SuiteContext& context) override {
    EvalModel& policy = context.policy;
    const auto N = static_cast<size_t>(samples_);
    std::vector<std::vector<int32_t>> prompts;  // prompt i at rows i * N .. i * N + N - 1
    for (const auto& item : items_)
      for (size_t s = 0; s < N; ++s) prompts.push_back(policy.chat_prompt(item.prompt));
    GenerationOptions options = sampling_;
    options.seed = common.seed;
    options.stop_ids = {policy.tokenizer().eos_id(), policy.tokenizer().pad_id()};
    std::vector<std::string> answers = policy.generate(prompts, options);
    for (auto& a : answers) a = sanitize_utf8(a);  // an answer cut at max_new_tokens may end mid-character

    // The proxy scores prompt + answer + <|im_end|>, read at the last token, as in its training.
    LoadOptions load;
    load.device = policy.model().lm_head_weight().device();
    QwenForCausalLM proxy_model = load_model(reward_model_, load);
    if (!proxy_model->is_classifier())
      throw UserError(reward_model_ + ": best_of_n's reward_model must be a reward model (method: reward)");
    proxy_model->eval();
    EvalModel proxy(*proxy_model, policy.tokenizer(), policy.distributed(), common.batch_size);
    std::vector<ScoringRequest> requests;
    for (size_t r = 0; r < prompts.size(); ++r) {
      std::vector<int32_t> continuation = policy.tokenizer().encode(answers[r]);
      continuation.push_back(policy.tokenizer().eos_id());
      requests.push_back({prompts[r], continuation});
    }
    const std::vector<double> proxy_scores = proxy.classifier_scores(requests);

    std::vector<int64_t> ns;
    for (int64_t n = 1; n < samples_; n *= 2) ns.push_back(n);
    ns.push_back(samples_);
    std::vector<std::vector<double>> gold_at(ns.size()), proxy_at(ns.size());  // [n][item]
    SuiteResult result;
    for (size_t i = 0; i < items_.size(); ++i) {
      std::vector<size_t> order(N);  // this item's samples by ascending proxy score
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return proxy_scores[i * N + a] < proxy_scores[i * N + b]; });
      std::vector<double> gold(N);
      for (size_t s = 0; s < N; ++s) {
        gold[s] = testbed_gold_score(items_[i], answers[i * N + s]);
        auto& rec = result.records;
        rec.text["item_id"].push_back(items_[i].id);
        rec.text["generation"].push_back(answers[i * N + s]);
        rec.number["sample"].push_back(static_cast<double>(s));
        rec.number["proxy"].push_back(proxy_scores[i * N + s]);
        rec.number["gold"].push_back(gold[s]);
      }
      for (size_t j = 0; j < ns.size(); ++j) {
        double g = 0, p = 0;
        for (int64_t k = ns[j]; k <= samples_; ++k) {  // k: rank from the bottom, 1-based
          const double weight = std::exp(log_choose(k - 1, ns[j] - 1) - log_choose(samples_, ns[j]));
          const size_t s = order[static_cast<size_t>(k - 1)];
          g += weight * gold[s];
          p += weight * proxy_scores[i * N + s];
        }
        gold_at[j].push_back(g);
        proxy_at[j].push_back(p);
      }
    }

    std::vector<double> d, gained;
    nlohmann::json curve = nlohmann::json::array();
    for (size_t j = 0; j < ns.size(); ++j) {
      const double n = static_cast<double>(ns[j]);
      const double kl = std::log(n) - (n - 1) / n;
      const double gold = mean_of(gold_at[j]), proxy_score = mean_of(proxy_at[j]);
      d.push_back(std::sqrt(kl));
      gained.push_back(gold - mean_of(gold_at[0]));
      curve.push_back({{"n", ns[j]}, {"kl", kl}, {"d", std::sqrt(kl)}, {"gold", gold}, {"proxy", proxy_score}});
    }
    const OveroptimizationFit fit = fit_overoptimization(d, gained, "bon");
    result.primary = "gold_best_of_n";
    result.scores["gold_best_of_n"] = score_with_interval(gold_at.back(), common);
    result.scores["gold_sample"] = score_with_interval(gold_at.front(), common);
    result.scores["proxy_best_of_n"] = score_with_interval(proxy_at.back(), common);
    result.details["curve"] = curve;
    result.details["reward_model"] = reward_model_;
    if (fit.points > 0)
      result.details["fit"] = {{"form", "R(d) = d (a - b d)"},
                               {"a", fit.a},
                               {"b", fit.b},
                               {"peak_d", std::isfinite(fit.peak_d) ? nlohmann::json(fit.peak_d) : "none"},
                               {"r2", fit.r2},
                               {"past_peak", std::isfinite(fit.peak_d) && d.back() > fit.peak_d}};
    PerturbationOutcome outcome;  // one presentation: the robustness figures are its own
    outcome.id = "canonical";
    outcome.axis = "canonical";
    outcome.item_scores = gold_at.back();
    for (double g : gold_at.back()) outcome.item_choice.push_back(g > 0 ? "right" : "wrong");
    result.items = canonical_items(items_, outcome.item_scores);
    result.robustness = robustness_summary({outcome});
    return result;
  }

 private:
  std::string reward_model_;
  int64_t samples_;
  GenerationOptions sampling_;
};

const bool registered = [] {
  register_suite(
      "best_of_n",
      [](YamlSection& options) -> std::unique_ptr<EvalSuite> {
        CommonSuiteOptions common = read_common_options(options, {});
        const std::string reward_model = options.require<std::string>("reward_model");
        const int64_t samples = options.get<int64_t>("n", 16);
        GenerationOptions sampling;
        sampling.max_new_tokens = options.get<int64_t>("max_new_tokens", 32);
        sampling.temperature = options.get<double>("temperature", 1.0);
        if (samples < 2) options.fail_at("n", "must be at least 2 (best of 1 is just a sample)");
        if (sampling.max_new_tokens <= 0) options.fail_at("max_new_tokens", "must be positive");
        if (sampling.temperature <= 0) options.fail_at("temperature", "must be positive (n samples must differ)");
        if (!common.perturbations.empty()) options.fail_at("perturbations", "best_of_n has none");
        return std::make_unique<BestOfNSuite>(read_testbed_items(common), common, reward_model, samples, sampling);
      },
      "best-of-n by a proxy reward model, scored by the testbed's gold function (Gao et al.'s BoN fit)");
  return true;
}();

}  // namespace

}  // namespace posttrain
