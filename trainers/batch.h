// Turning dataset examples into padded model inputs, and the deterministic sampler that decides
// which examples make up each optimizer step.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "datasets/sft_data.h"

namespace posttrain {

struct LMBatch {
  torch::Tensor input_ids;    // [B, T] int64, right-padded with pad_id
  torch::Tensor positions;    // [B, T] int64
  torch::Tensor key_padding;  // [B, T] bool, false on padding
  torch::Tensor targets;      // [B, T-1] int64: next token where it carries loss, else kIgnoreIndex
  int64_t loss_tokens = 0;    // targets that are not ignored
  int64_t tokens = 0;         // real (non-pad) tokens
};

LMBatch make_lm_batch(const TokenizedDataset& data, const std::vector<int64_t>& indices, int32_t pad_id);

// Example indices for global sequence positions [first, first + count) of the training stream: epoch
// e visits every example once in an order drawn from (seed, e); positions run on across epochs.
// Every rank derives the same stream without communication.
std::vector<int64_t> sample_indices(int64_t dataset_size, uint64_t seed, int64_t first, int64_t count);

// Loss tokens in examples `indices` (for normalising by the global count of an optimizer step).
int64_t count_loss_tokens(const TokenizedDataset& data, const std::vector<int64_t>& indices);

}  // namespace posttrain
