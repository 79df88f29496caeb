// method: dpo. Direct preference optimisation and its relatives: the loss is chosen by name from the
// registered preference losses (dpo.loss: sigmoid | cdpo | ipo | hinge | simpo | orpo). The
// reference model is the frozen base; reference-free losses (simpo, orpo) skip it.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/yaml_reader.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "models/lora.h"
#include "trainers/loop.h"
#include "trainers/preference_losses.h"

namespace posttrain {

namespace {

struct ResponseLogProbs {
  torch::Tensor sums;  // [B] log-prob summed over each row's response tokens
  torch::Tensor means;  // [B] sums / response length
};

// One forward pass gives both aggregations of each row's response log-probs.
ResponseLogProbs response_logprobs(QwenForCausalLMImpl& model, const LMBatch& batch, bool bf16_autocast) {
  const int64_t B = batch.input_ids.size(0);
  auto token_logp = batch_token_logprobs(model, batch, bf16_autocast).view({B, -1});  // [B, T-1], 0 off the response
  auto sums = token_logp.sum(1);  // [B]
  auto counts = batch.targets.ne(kIgnoreIndex).sum(1).clamp_min(1).to(sums.device()).to(torch::kFloat32);
  return {sums, sums / counts};
}

// reference: precompute. The frozen base's sequence log-probs of every example, computed once per
// (data shard, base model) and stored next to the shard; rank 0 computes, the others read.
std::vector<double> precomputed_reference(RunContext& ctx, LMTraining& t, QwenForCausalLMImpl& reference, bool mean) {
  const std::string shard = ctx.manifest["data"]["shard"].get<std::string>();
  const std::string base_sha = ctx.manifest["base"]["sha256"].get<std::string>();
  const std::string path = shard.substr(0, shard.size() - 3) + "-reference-" + base_sha.substr(0, 16) + ".h5";
  std::vector<double> sums, means;
  if (ctx.rank == 0 && !read_reference_logprobs(path, base_sha, &sums, &means)) {
    torch::NoGradGuard no_grad;
    const int64_t n = t.data.size(), chunk = std::max<int64_t>(2, 2 * ctx.recipe.train.micro_batch_size);
    for (int64_t first = 0; first < n; first += chunk) {
      std::vector<int64_t> examples;
      for (int64_t e = first; e < std::min(n, first + chunk); ++e) examples.push_back(e);
      const LMBatch batch = make_lm_batch(t.data, examples, t.tokenizer.pad_id());
      AdaptersDisabled as_base(reference);
      const ResponseLogProbs lp = response_logprobs(reference, batch, t.bf16_autocast);
      auto s = lp.sums.to(torch::kCPU, torch::kFloat64);
      auto m = lp.means.to(torch::kCPU, torch::kFloat64);
      for (int64_t k = 0; k < s.size(0); ++k) {
        sums.push_back(s[k].item<double>());
        means.push_back(m[k].item<double>());
      }
    }
    write_reference_logprobs(path, sums, means, base_sha);
    ctx.log_event("precomputed reference log-probs of " + std::to_string(n) + " examples into " + path);
  }
  ctx.dist->barrier();
  if (ctx.rank != 0 && !read_reference_logprobs(path, base_sha, &sums, &means))
    throw std::runtime_error("reference log-probs missing after rank 0 wrote them: " + path);
  ctx.manifest["reference_logprobs"] = path;
  return mean ? means : sums;
}

}  // namespace

void train_dpo(RunContext& ctx) {
  const TrainSpec& spec = ctx.recipe.train;
  YamlSection options(ctx.recipe.method_options, "dpo", ctx.recipe.file, ctx.recipe.overrides);
  const std::string loss_name = options.get<std::string>("loss", "sigmoid");
  PreferenceLossOptions loss_options;
  loss_options.beta = options.get<double>("beta", loss_options.beta);
  loss_options.label_smoothing = options.get<double>("label_smoothing", loss_options.label_smoothing);
  loss_options.gamma = options.get<double>("gamma", loss_options.gamma);
  loss_options.orpo_lambda = options.get<double>("orpo_lambda", loss_options.orpo_lambda);
  const std::string reference_mode = options.get<std::string>("reference", "model");
  if (reference_mode != "model" && reference_mode != "precompute")
    options.fail_at("reference", "must be model or precompute");
  const PreferenceLoss* loss_fn = find_preference_loss(loss_name);
  if (loss_fn == nullptr) {
    std::string names;
    for (const auto& n : preference_loss_names()) names += " " + n;
    options.fail_at("loss", "\"" + loss_name + "\" is not a registered preference loss (known:" + names + ")");
  }
  // An option the loss does not read would be ignored in silence: a value other than its default is
  // refused (the default itself changes nothing, so a shared recipe may keep it).
  if (!loss_fn->options.empty()) {
    std::string reads;
    for (const auto& key : loss_fn->options) reads += " " + key;
    const PreferenceLossOptions defaults;
    const std::vector<std::pair<std::string, bool>> changed = {
        {"beta", loss_options.beta != defaults.beta},
        {"label_smoothing", loss_options.label_smoothing != defaults.label_smoothing},
        {"gamma", loss_options.gamma != defaults.gamma},
        {"orpo_lambda", loss_options.orpo_lambda != defaults.orpo_lambda}};
    for (const auto& [key, differs] : changed)
      if (differs && std::find(loss_fn->options.begin(), loss_fn->options.end(), key) == loss_fn->options.end())
        options.fail_at(key, "is not used by dpo.loss " + loss_name + " (it reads:" + reads + ")");
    if (!loss_fn->needs_reference && reference_mode != "model")
      options.fail_at("reference", "is not used by dpo.loss " + loss_name + ", which has no reference model");
  }
  if (!(loss_options.beta > 0) || !std::isfinite(loss_options.beta)) options.fail_at("beta", "must be positive");
  if (loss_options.label_smoothing < 0 || loss_options.label_smoothing >= 0.5)
    options.fail_at("label_smoothing", "must be in [0, 0.5)");
  options.finish();
  if (ctx.only_check_options) return;
  const bool mean = loss_fn->aggregation == LogProbAggregation::kMean;

  LMTraining t = setup_lm_training(ctx, "preference");
  if (!t.data.preferences.empty() && loss_name != "sigmoid" && loss_name != "cdpo")
    throw UserError(ctx.recipe.data.train + ": its pairs carry soft labels (\"preference\"), which only the " +
                    "sigmoid and cdpo losses take; dpo.loss is " + loss_name);
  QwenForCausalLM reference{nullptr};
  std::vector<double> stored;  // precomputed reference log-probs per example (sums or means)
  if (loss_fn->needs_reference) {
    reference = reference_model(ctx, t);
    if (reference_mode == "precompute") {
      stored = precomputed_reference(ctx, t, *reference, mean);
      reference = nullptr;  // not needed in memory any more
    }
  }
  const int64_t pair_count = t.data.size() / 2;  // pair p is examples 2p (chosen) and 2p+1 (rejected)
  for (int64_t step = t.start_step; step < spec.steps; ++step) {
    StepStats stats;
    const std::vector<int64_t> pairs = rank_share(ctx, step_batch(ctx, pair_count, step));  // batch_size counts pairs
    for (const auto& micro_pairs : split_micro_batches(pairs, spec.micro_batch_size)) {
      const std::vector<int64_t> examples = pair_examples(micro_pairs);  // chosen, rejected, ...
      const LMBatch batch = make_lm_batch(t.data, examples, t.tokenizer.pad_id());
      const ResponseLogProbs policy_lp = response_logprobs(*t.model, batch, t.bf16_autocast);
      auto policy = (mean ? policy_lp.means : policy_lp.sums).view({-1, 2});  // [P, 2]: chosen, rejected
      PreferenceLogProbs lp{policy.select(1, 0), policy.select(1, 1), {}, {}, {}};
      if (!t.data.preferences.empty()) {
        std::vector<float> soft;
        for (int64_t p : micro_pairs) soft.push_back(t.data.preferences[static_cast<size_t>(p)]);
        lp.preference = torch::tensor(soft).to(policy.device());
      }
      if (reference) {
        torch::NoGradGuard no_grad;
        AdaptersDisabled as_base(*reference);
        const ResponseLogProbs ref_lp = response_logprobs(*reference, batch, t.bf16_autocast);
        auto ref = (mean ? ref_lp.means : ref_lp.sums).view({-1, 2});
        lp.reference_chosen = ref.select(1, 0);
        lp.reference_rejected = ref.select(1, 1);
      } else if (!stored.empty()) {
        std::vector<double> values;
        for (int64_t e : examples) values.push_back(stored[static_cast<size_t>(e)]);
        auto ref = torch::tensor(values, torch::kFloat64).to(policy.device(), torch::kFloat32).view({-1, 2});
        lp.reference_chosen = ref.select(1, 0);
        lp.reference_rejected = ref.select(1, 1);
      }
      // Sum over this micro-batch's pairs / pairs in the whole step: micro-steps and ranks add up.
      auto loss = loss_fn->loss(lp, loss_options).sum() / static_cast<double>(spec.batch_size);
      loss.backward();
      stats.loss += loss.item<double>();
      stats.tokens += batch.tokens;
      stats.head_rows += batch.loss_tokens;
      stats.sequence_length = std::max(stats.sequence_length, batch.input_ids.size(1));
      // Implicit rewards beta * (log pi - log ref) (reference-free: beta * log pi).
      torch::NoGradGuard no_grad;
      auto chosen = loss_options.beta *
                    (lp.policy_chosen -
                     (lp.reference_chosen.defined() ? lp.reference_chosen : torch::zeros_like(lp.policy_chosen)));
      auto rejected = loss_options.beta *
                      (lp.policy_rejected - (lp.reference_rejected.defined() ? lp.reference_rejected
                                                                             : torch::zeros_like(lp.policy_rejected)));
      add_pair_reward_metrics(stats, chosen, rejected);
    }
    finish_step(ctx, t, step, stats);
  }
  finish_training(ctx, t);
}

namespace {
const bool registered =
    (register_trainer("dpo", train_dpo, "preference optimisation: DPO, cDPO, IPO, hinge, SimPO, ORPO (dpo.loss)",
                      "preference"),
     true);
}

}  // namespace posttrain
