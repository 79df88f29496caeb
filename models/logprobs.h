// Per-token log-probabilities through the LM head without materialising [tokens x vocab] logits:
// the head is applied chunk by chunk, in forward and again (recomputed) in backward.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "models/qwen.h"

namespace posttrain {

constexpr int64_t kIgnoreIndex = -100;

// Default for chunked_token_logprobs' keep_softmax_bytes: 1 GB holds the softmax of 1,765 tokens
// over Qwen's 151,936-token vocabulary (a CPU micro-batch).
constexpr int64_t kKeepSoftmaxBytes = 1ll << 30;

// hidden [N, H], weight [V, H], targets [N] int64 -> log p(target) [N] float32, differentiable with
// respect to hidden and weight. Targets equal to kIgnoreIndex give 0 and no gradient, and their rows
// never reach the head (prompt and padding positions cost no head FLOPs). Peak extra
// memory is a few chunk_rows x V floats whatever N is, plus, on the CPU when a gradient is wanted and
// it fits in keep_softmax_bytes, the N x V softmax, kept so backward need not recompute the logits
// (one head matmul in four). chunk_rows <= 0: default_chunk_rows.
torch::Tensor chunked_token_logprobs(const torch::Tensor& hidden, const torch::Tensor& weight,
                                     const torch::Tensor& targets, int64_t chunk_rows = 0,
                                     int64_t keep_softmax_bytes = kKeepSoftmaxBytes);

// Rows per LM-head chunk: at least 128, more while a chunk of logits stays under 64 MB (CPU) or
// 512 MB (CUDA). E.g. 128 rows (78 MB) for Qwen's 151,936 tokens, 15,420 for the testbed's 1,088.
int64_t default_chunk_rows(int64_t vocab_size, const c10::Device& device);

// log p(ids[t] | ids[<t]) for t = 1..n-1 of one sequence, in float32 (no gradient).
std::vector<double> sequence_logprobs(QwenForCausalLMImpl& model, const std::vector<int64_t>& ids);

// log p(c | prefix) summed over the tokens of each continuation c (each non-empty), float32, no
// gradient. The prefix runs through the model once; each continuation then reuses its KV cache, so
// k continuations cost one prefix pass, not k (e.g. a judge scoring " (A)" against " (B)").
std::vector<double> continuation_logprobs(QwenForCausalLMImpl& model, const std::vector<int32_t>& prefix,
                                          const std::vector<std::vector<int32_t>>& continuations);

}  // namespace posttrain
