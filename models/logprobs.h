// Per-token log-probabilities through the LM head without materialising [tokens x vocab] logits:
// the head is applied chunk by chunk, in forward and again (recomputed) in backward.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "models/qwen.h"

namespace posttrain {

constexpr int64_t kIgnoreIndex = -100;

// hidden [N, H], weight [V, H], targets [N] int64 -> log p(target) [N] float32, differentiable with
// respect to hidden and weight. Targets equal to kIgnoreIndex give 0 and no gradient. Peak extra
// memory is chunk_rows x V floats, whatever N is. chunk_rows <= 0 picks rows so one chunk of logits
// is ~16 MB: below glibc's largest mmap threshold (32 MB), so chunk buffers are reused from the heap
// instead of being mapped and page-faulted afresh each time (2x faster end to end on CPU).
torch::Tensor chunked_token_logprobs(const torch::Tensor& hidden, const torch::Tensor& weight,
                                     const torch::Tensor& targets, int64_t chunk_rows = 0);

// log p(ids[t] | ids[<t]) for t = 1..n-1 of one sequence, in float32 (no gradient).
std::vector<double> sequence_logprobs(QwenForCausalLMImpl& model, const std::vector<int64_t>& ids);

// log p(c | prefix) summed over the tokens of each continuation c (each non-empty), float32, no
// gradient. The prefix runs through the model once; each continuation then reuses its KV cache, so
// k continuations cost one prefix pass, not k (e.g. a judge scoring " (A)" against " (B)").
std::vector<double> continuation_logprobs(QwenForCausalLMImpl& model, const std::vector<int32_t>& prefix,
                                          const std::vector<std::vector<int32_t>>& continuations);

}  // namespace posttrain
