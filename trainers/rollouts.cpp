#include "trainers/rollouts.h"

#include <torch/torch.h>

#include <cmath>

#include "core/rng.h"
#include "models/logprobs.h"
#include "models/lora.h"
#include "trainers/rl_math.h"

namespace posttrain {

std::vector<Rollout> sample_rollouts(QwenForCausalLMImpl& policy, const Tokenizer& tokenizer,
                                     const PromptDataset& prompts, const std::vector<int64_t>& prompt_indices,
                                     int64_t first_position, int64_t group, GenerationOptions options, uint64_t seed,
                                     int64_t step, int64_t prompts_per_call, std::vector<double>* entropies) {
  torch::NoGradGuard no_grad;
  uint64_t state = seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1));
  options.seed = splitmix64(state);
  options.stop_ids = {tokenizer.eos_id(), tokenizer.pad_id()};
  options.record_entropy = entropies != nullptr;
  options.vocab_limit = tokenizer.id_count();
  std::vector<Rollout> rollouts;
  const int64_t count = static_cast<int64_t>(prompt_indices.size());
  for (int64_t first = 0; first < count; first += prompts_per_call) {
    // One batched generate: row (i - first) * group + k is sample k of prompt i, drawing from stream
    // (first_position + i) * group + k.
    const int64_t last = std::min(count, first + prompts_per_call);
    std::vector<std::vector<int32_t>> rows;
    for (int64_t i = first; i < last; ++i)
      for (int64_t k = 0; k < group; ++k) rows.push_back(prompts.prompts[static_cast<size_t>(prompt_indices[i])]);
    options.first_stream = static_cast<uint64_t>((first_position + first) * group);
    const auto out = generate(policy, rows, options);
    for (size_t row = 0; row < rows.size(); ++row) {
      Rollout r;
      r.record = prompts.records[static_cast<size_t>(prompt_indices[first + static_cast<int64_t>(row) / group])];
      r.prompt_ids = rows[row];
      r.response_ids = out.new_ids[row];
      r.stopped = out.stopped[row];
      std::vector<int32_t> text_ids = r.response_ids;
      if (r.stopped && !text_ids.empty()) text_ids.pop_back();
      r.response_text = tokenizer.decode(text_ids);
      if (entropies != nullptr) {
        const auto& e = out.entropies[row];
        double sum = 0;
        for (float v : e) sum += v;
        entropies->push_back(e.empty() ? 0.0 : sum / static_cast<double>(e.size()));
      }
      rollouts.push_back(std::move(r));
    }
  }
  return rollouts;
}

std::vector<Rollout> step_rollouts(const RunContext& ctx, LMTraining& t, int64_t step, int64_t group,
                                   const GenerationOptions& sampling, int64_t prompts_per_call,
                                   std::vector<double>* entropies) {
  const auto mine = rank_share(ctx, step_batch(ctx, t.prompts.size(), step));
  return sample_rollouts(*t.model, t.tokenizer, t.prompts, mine, rank_offset(ctx), group, sampling, ctx.recipe.seed,
                         step, prompts_per_call, entropies);
}

int64_t read_generation_batch(YamlSection& options, const RunContext& ctx) {
  const int64_t per_rank = ctx.recipe.train.batch_size / ctx.world_size;  // batch_size counts prompts
  if (options.has("generation_batch")) {
    const int64_t value = options.get<int64_t>("generation_batch", 16);
    if (value < 1 || per_rank % value != 0)
      options.fail_at("generation_batch", "(" + std::to_string(value) + ") must divide each rank's " +
                                              std::to_string(per_rank) +
                                              " prompts (train.batch_size / world_size), so no generate call "
                                              "straddles two ranks");
    return value;
  }
  options.get<int64_t>("generation_batch", 16);  // known key
  int64_t value = std::min<int64_t>(16, per_rank);
  while (per_rank % value != 0) --value;
  return value;
}

GenerationOptions read_sampling_options(YamlSection& options) {
  GenerationOptions sampling;
  sampling.max_new_tokens = options.get<int64_t>("max_new_tokens", 32);
  sampling.temperature = options.get<double>("temperature", 1.0);
  sampling.top_k = options.get<int64_t>("top_k", 0);
  sampling.top_p = options.get<double>("top_p", 1.0);
  if (sampling.max_new_tokens < 1) options.fail_at("max_new_tokens", "must be at least 1");
  if (!(sampling.temperature > 0) || !std::isfinite(sampling.temperature))
    options.fail_at("temperature", "must be a positive number (sampling)");
  if (sampling.top_k < 0) options.fail_at("top_k", "must be >= 0 (0: off)");
  if (!(sampling.top_p > 0 && sampling.top_p <= 1)) options.fail_at("top_p", "must be in (0, 1]");
  return sampling;
}

void add_rollout_metrics(StepStats& stats, const std::vector<Rollout>& rollouts, const std::vector<double>& sequence_kl,
                         const std::vector<double>& entropies,
                         const std::vector<std::pair<std::string, double>>& reward_means) {
  for (size_t i = 0; i < rollouts.size(); ++i) {
    stats.metric_sums["kl"] += sequence_kl[i];
    stats.metric_sums["entropy"] += entropies[i];
    stats.metric_sums["response_length"] += static_cast<double>(rollouts[i].response_ids.size());
    stats.metric_sums["stopped_fraction"] += rollouts[i].stopped ? 1.0 : 0.0;
    stats.tokens += static_cast<int64_t>(rollouts[i].prompt_ids.size() + rollouts[i].response_ids.size());
    stats.head_rows += static_cast<int64_t>(rollouts[i].response_ids.size());  // the LM head's rows
  }
  for (const auto& [name, value] : reward_means)
    stats.metric_sums["reward/" + name] += value * static_cast<double>(rollouts.size());
  stats.metric_count = static_cast<double>(rollouts.size());
}

TokenizedDataset rollout_dataset(const std::vector<Rollout>& rollouts) {
  TokenizedDataset data;
  for (const auto& r : rollouts) {
    data.tokens.insert(data.tokens.end(), r.prompt_ids.begin(), r.prompt_ids.end());
    data.loss_mask.insert(data.loss_mask.end(), r.prompt_ids.size(), 0);
    data.tokens.insert(data.tokens.end(), r.response_ids.begin(), r.response_ids.end());
    data.loss_mask.insert(data.loss_mask.end(), r.response_ids.size(), 1);
    data.offsets.push_back(static_cast<int64_t>(data.tokens.size()));
  }
  return data;
}

std::vector<RolloutBatch> score_rollouts(LMTraining& t, QwenForCausalLMImpl* reference,
                                         const std::vector<Rollout>& rollouts, int64_t group, int64_t micro_prompts,
                                         double temperature, std::vector<double>* sequence_kl,
                                         std::vector<torch::Tensor>* policy_hidden) {
  torch::NoGradGuard no_grad;
  const TokenizedDataset rows = rollout_dataset(rollouts);
  const int64_t prompts = static_cast<int64_t>(rollouts.size()) / group;
  std::vector<RolloutBatch> batches;
  for (int64_t first = 0; first < prompts; first += micro_prompts) {
    RolloutBatch mb;
    for (int64_t p = first; p < std::min(prompts, first + micro_prompts); ++p)
      for (int64_t k = 0; k < group; ++k) mb.rows.push_back(p * group + k);
    mb.batch = make_lm_batch(rows, mb.rows, t.tokenizer.pad_id());
    const int64_t B = static_cast<int64_t>(mb.rows.size());
    mb.mask = mb.batch.targets.ne(kIgnoreIndex).to(t.model->device(), torch::kFloat32);  // [B, T-1]
    torch::Tensor hidden;
    mb.old_logp =
        batch_token_logprobs(*t.model, mb.batch, t.bf16_autocast, policy_hidden ? &hidden : nullptr, temperature)
            .view({B, -1});
    if (policy_hidden != nullptr) policy_hidden->push_back(hidden);
    if (reference != nullptr) {
      AdaptersDisabled as_base(*reference);
      mb.ref_logp = batch_token_logprobs(*reference, mb.batch, t.bf16_autocast, nullptr, temperature).view({B, -1});
    }
    batches.push_back(std::move(mb));
  }
  *sequence_kl = sequence_kl_estimate(batches, rollouts.size(), "k1");
  return batches;
}

std::vector<double> sequence_kl_estimate(const std::vector<RolloutBatch>& batches, size_t rollouts,
                                         const std::string& estimator) {
  torch::NoGradGuard no_grad;
  std::vector<double> out(rollouts, 0.0);
  for (const auto& mb : batches) {
    if (!mb.ref_logp.defined()) continue;
    auto kl = (kl_estimate(estimator, mb.old_logp, mb.ref_logp) * mb.mask).sum(1).to(torch::kCPU, torch::kFloat64);
    for (size_t b = 0; b < mb.rows.size(); ++b)
      out[static_cast<size_t>(mb.rows[b])] = kl[static_cast<int64_t>(b)].item<double>();
  }
  return out;
}

}  // namespace posttrain
