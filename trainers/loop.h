// Shared pieces of a language-model training loop, so each method's file reads top to bottom:
// setup (data, model, optimizer, resume), this rank's examples for a step, the per-token log-probs
// of a batch, and the end of a step (all-reduce, clipping, non-finite check, optimizer step,
// metrics, checkpoint), and the end of training (final checkpoint + HF model folder).
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/progress.h"
#include "datasets/sft_data.h"
#include "models/qwen.h"
#include "models/tokenizer.h"
#include "trainers/batch.h"
#include "trainers/optim.h"
#include "trainers/run.h"

namespace posttrain {

struct LMTraining {
  Tokenizer tokenizer;
  TokenizedDataset data;  // sft / preference examples
  PromptDataset prompts;  // RL prompts (data kind "prompts")
  QwenForCausalLM model{nullptr};
  std::vector<std::pair<std::string, torch::Tensor>> params;  // trainable, HF names
  std::unique_ptr<AdamW> optimizer;
  int64_t start_step = 0;  // > 0 when resumed from a checkpoint
  nlohmann::json method_state;  // saved with every checkpoint, restored on resume (e.g. PPO's KL coefficient)
  bool bf16_autocast = false;  // train.precision: bf16 (forwards in bf16, fp32 master weights)
  double peak_flops = 0;  // bare matmul FLOP/s on this device, measured at setup (for MFU)
  std::unique_ptr<Progress> progress;
};

// Tokenizes (or reuses) the recipe's data ("sft" or "preference" records; "prompts" for RL), loads the base, builds
// AdamW, resumes when asked. classifier_labels > 0 loads the base as a sequence classifier (reward
// model) with a fresh `score` head drawn from the recipe seed.
LMTraining setup_lm_training(RunContext& ctx, const std::string& data_kind = "sft", int64_t classifier_labels = 0);

// The frozen reference of the methods that pull towards or measure against the base (DPO, KTO, PPO,
// GRPO with a KL term): the base loaded once more in eval mode, or, when the recipe trains LoRA
// adapters, the policy itself (no second copy of the weights). Run every reference forward under
// AdaptersDisabled (models/lora.h), which bypasses the adapters and leaves a plain model as it is.
QwenForCausalLM reference_model(RunContext& ctx, LMTraining& training);

// The step's global batch: train.batch_size indices into `size` items, drawn from (seed, step), the
// same on every rank without communication.
// Every trainer calls it first in each step; it also seeds the step's adapter dropout (lora.dropout).
std::vector<int64_t> step_batch(const RunContext& ctx, int64_t size, int64_t step);

// Drops the lines of metrics.jsonl logged after `step` (and a torn last line): on a resume from a
// step-`step` checkpoint those steps run again.
void keep_metrics_through(const std::string& run_dir, int64_t step);

// This rank's contiguous slice of a global batch, which starts at position rank_offset(ctx).
std::vector<int64_t> rank_share(const RunContext& ctx, const std::vector<int64_t>& global);
int64_t rank_offset(const RunContext& ctx);

// This rank's example indices for `step`, and the loss-token count of the whole global batch.
std::vector<int64_t> rank_examples(const RunContext& ctx, const TokenizedDataset& data, int64_t step,
                                   int64_t* global_loss_tokens);

// log p(target) for every position of the batch, [B * (T-1)], kIgnoreIndex targets give 0.
// bf16_autocast: run the forward under CUDA autocast to bfloat16 (train.precision: bf16).
// hidden_out (optional) receives the final hidden states [B, T-1, H] the log-probs came from, for a
// value head that shares the policy's body. temperature: log-probs of softmax(logits / T), the
// distribution RL rollouts sample from (as TRL computes them for the ratio and the KL).
torch::Tensor batch_token_logprobs(QwenForCausalLMImpl& model, const LMBatch& batch, bool bf16_autocast = false,
                                   torch::Tensor* hidden_out = nullptr, double temperature = 1.0);

struct StepStats {
  double loss = 0;  // this rank's share of the step's loss (sums to the global loss across ranks)
  int64_t tokens = 0;  // real tokens processed on this rank
  // Positions the LM head ran on (chunked_token_logprobs: only those with a target), for the MFU
  // estimate; 0 = not counted by the trainer (the reward model), taken as every token.
  int64_t head_rows = 0;
  int64_t sequence_length = 0;
  // Method metrics as sums over this rank's items (e.g. pairs): finish_step sums them over ranks and
  // logs each divided by metric_count (summed likewise), e.g. "rewards/margins".
  std::map<std::string, double> metric_sums;
  double metric_count = 0;
  std::map<std::string, double> rank0_values;  // logged as rank 0 has them (e.g. the time breakdown)
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracy of a micro-batch's pairs
// (rewards [P] each), added to the step's metric sums; metric_count counts pairs. No gradient.
void add_pair_reward_metrics(StepStats& stats, const torch::Tensor& chosen, const torch::Tensor& rejected);

// One optimizer update after the backward passes that make it up: all-reduce the gradients, clip, check
// the global loss and gradient norm are finite, AdamW at the step's learning rate. Returns the
// gradient norm, or NaN when the update was skipped (on_nonfinite=skip); throws for on_nonfinite=stop.
// For methods that update several times per step (PPO / GRPO epochs); finish_step does the last.
// lr_scale multiplies the schedule's learning rate (e.g. PPO's critic).
double apply_update(RunContext& ctx, LMTraining& training, int64_t step, double rank_loss, double lr_scale = 1.0);

// Everything after the last backward of a step. Returns false if the step was skipped
// (non-finite, train.on_nonfinite=skip); throws UserError naming the step for on_nonfinite=stop.
bool finish_step(RunContext& ctx, LMTraining& training, int64_t step, StepStats stats);

// Mean and population variance of values spread over the ranks, from this rank's sum, sum of
// squares and count (all-reduced here, so every rank gets the same numbers).
struct Moments {
  double mean = 0, variance = 0, count = 0;
};
Moments global_moments(RunContext& ctx, double sum, double sum_sq, double count);

// Final checkpoint and the HF model folder <run>/final (rank 0), then the after_run policy hook (every rank).
void finish_training(RunContext& ctx, LMTraining& training);

}  // namespace posttrain
