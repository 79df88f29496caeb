// Sampling rollouts from the policy for RL trainers (GRPO, PPO), and turning them into training rows.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/yaml_reader.h"
#include "datasets/sft_data.h"
#include "models/generate.h"
#include "models/qwen.h"
#include "models/tokenizer.h"
#include "trainers/batch.h"
#include "trainers/loop.h"
#include "trainers/rewards.h"

namespace posttrain {

// `group` sampled responses to each of `prompt_indices`, generated `prompts_per_call` prompts (x
// group rows) per batched generate. Sample k of the prompt at position p of the step's global batch
// draws from stream p * group + k of a generator seeded by (seed, step). A row's numbers depend on
// the other rows of its call (padding, the matmul's shape), so the calls hold consecutive positions
// of the global batch: the same calls, and the same rollouts, on any number of ranks whose share
// prompts_per_call divides. `entropies` (optional) receives the mean per-token entropy of each
// response's sampling distribution.
std::vector<Rollout> sample_rollouts(QwenForCausalLMImpl& policy, const Tokenizer& tokenizer,
                                     const PromptDataset& prompts, const std::vector<int64_t>& prompt_indices,
                                     int64_t first_position, int64_t group, GenerationOptions options, uint64_t seed,
                                     int64_t step, int64_t prompts_per_call, std::vector<double>* entropies = nullptr);

// This rank's rollouts for `step`: every rank draws the same global batch of train.batch_size prompts
// and samples `group` responses to each prompt of its own slice.
std::vector<Rollout> step_rollouts(const RunContext& ctx, LMTraining& t, int64_t step, int64_t group,
                                   const GenerationOptions& sampling, int64_t prompts_per_call,
                                   std::vector<double>* entropies);

// max_new_tokens, temperature, top_k, top_p of a method's options, checked.
GenerationOptions read_sampling_options(YamlSection& options);

// generation_batch of a method's options: prompts per batched generate (default 16, lowered to the
// largest divisor of each rank's prompt count); a value given must divide that count
// (batch_size / world_size), so that no call straddles two ranks.
int64_t read_generation_batch(YamlSection& options, const RunContext& ctx);

// The per-response metrics every RL method logs, as sums over this rank's rollouts (metric_count is
// set to their number): kl (sum over tokens of k1), entropy, response_length, stopped_fraction, and
// reward/<fn> from the reward mix's means; adds the rollouts' tokens.
void add_rollout_metrics(StepStats& stats, const std::vector<Rollout>& rollouts, const std::vector<double>& sequence_kl,
                         const std::vector<double>& entropies,
                         const std::vector<std::pair<std::string, double>>& reward_means);

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Rollouts as examples (prompt + response, loss mask on the response), so make_lm_batch builds rows
// and targets exactly as for SFT.
TokenizedDataset rollout_dataset(const std::vector<Rollout>& rollouts);

// One micro-batch of rollouts with what the update needs, all [B, T-1] over next-token positions.
struct RolloutBatch {
  std::vector<int64_t> rows;  // rollout indices
  LMBatch batch;
  torch::Tensor mask;  // 1 on response tokens (float)
  torch::Tensor old_logp;  // log pi_old(token): the policy that sampled (no grad)
  torch::Tensor ref_logp;  // log pi_ref(token); undefined without a reference model
};

// The no-grad pass over this rank's rollouts (`group` per prompt, prompts in order), in micro-batches
// of `micro_prompts` prompts: rows, mask, log-probs of the sampled tokens under the sampling policy
// and, when `reference` is given, under the reference, whose KL (sum over the rollout's tokens of k1)
// goes to `sequence_kl` (sized to the rollouts, 0 without a reference). Both log-probs are of
// softmax(logits / temperature), the sampling temperature, so the ratio and the KL are of the
// distribution that sampled. `policy_hidden` (optional) receives each micro-batch's policy hidden
// states [B, T-1, H] (for a critic sharing the body).
std::vector<RolloutBatch> score_rollouts(LMTraining& t, QwenForCausalLMImpl* reference,
                                         const std::vector<Rollout>& rollouts, int64_t group, int64_t micro_prompts,
                                         double temperature, std::vector<double>* sequence_kl,
                                         std::vector<torch::Tensor>* policy_hidden = nullptr);

// Per rollout (sized to `rollouts`): the sum over its response tokens of the KL estimator (k1 or k3)
// of the sampling policy against the reference; 0 for batches without reference log-probs.
std::vector<double> sequence_kl_estimate(const std::vector<RolloutBatch>& batches, size_t rollouts,
                                         const std::string& estimator);

}  // namespace posttrain
