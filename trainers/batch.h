// Turning dataset examples into padded model inputs, and the deterministic sampler that decides
// which examples make up each optimizer step.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "datasets/sft_data.h"

namespace posttrain {

struct LMBatch {
  torch::Tensor input_ids;  // [B, T] int64, right-padded with pad_id
  torch::Tensor positions;  // [B, T] int64
  torch::Tensor key_padding;  // [B, T] bool, false on padding
  torch::Tensor targets;  // [B, T-1] int64: next token where it carries loss, else kIgnoreIndex
  torch::Tensor attention;  // [B, 1, T, T] bool, only for packed rows (block-diagonal causal); else undefined
  int64_t loss_tokens = 0;  // targets that are not ignored
  int64_t tokens = 0;  // real (non-pad) tokens
};

// One example per row, right-padded.
LMBatch make_lm_batch(const TokenizedDataset& data, const std::vector<int64_t>& indices, int32_t pad_id);

// Examples packed in order into rows of at most row_length tokens. Each example keeps its own
// positions (restarting at 0) and attends only within itself: a block-diagonal causal mask, so the
// per-token log-probs equal those of make_lm_batch, with less padding.
LMBatch make_packed_lm_batch(const TokenizedDataset& data, const std::vector<int64_t>& indices, int32_t pad_id,
                             int64_t row_length);

// Example indices for global sequence positions [first, first + count) of the training stream: epoch
// e visits every example once in an order drawn from (seed, e); positions run on across epochs.
// Every rank derives the same stream without communication.
std::vector<int64_t> sample_indices(int64_t dataset_size, uint64_t seed, int64_t first, int64_t count);

// Consecutive slices of at most `size` indices (the micro-batches of a rank's share of a step).
std::vector<std::vector<int64_t>> split_micro_batches(const std::vector<int64_t>& indices, int64_t size);

// Preference data stores pair p as examples 2p (chosen) and 2p+1 (rejected): the example indices of
// `pairs`, chosen then rejected for each.
std::vector<int64_t> pair_examples(const std::vector<int64_t>& pairs);

// Loss tokens in examples `indices` (for normalising by the global count of an optimizer step).
int64_t count_loss_tokens(const TokenizedDataset& data, const std::vector<int64_t>& indices);

}  // namespace posttrain
