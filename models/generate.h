// Batched autoregressive generation with a KV cache: left-padded prompts, greedy / temperature /
// top-k / top-p sampling, stop ids, and a seed that makes sampling reproducible.
#pragma once

#include <cstdint>
#include <vector>

#include "models/qwen.h"

namespace posttrain {

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0 = greedy (argmax)
  int64_t top_k = 0;  // 0 = no top-k filter
  double top_p = 1.0;  // 1 = no nucleus filter
  uint64_t seed = 0;  // sequence i draws from its own stream derived from (seed, first_stream + i)
  uint64_t first_stream = 0;  // lets separate calls (ranks, prompt groups) draw the streams of one batch
  // GenerationOutput::entropies: of softmax(logits / temperature), before top-k / top-p (greedy: T = 1)
  bool record_entropy = false;
  std::vector<int32_t> stop_ids;  // e.g. <|im_end|>, <|endoftext|>
  // > 0: ids >= this are never drawn. Qwen's embedding has rows past the tokenizer's last id
  // (151,936 vs 151,669) that decode to nothing; pass tokenizer.id_count().
  int64_t vocab_limit = 0;
  bool use_cache = true;  // false recomputes the whole prefix each step (for testing the cache)
};

struct GenerationOutput {
  std::vector<std::vector<int32_t>> new_ids;  // per prompt; ends with the stop id if one was hit
  std::vector<bool> stopped;  // true: ended by a stop id; false: hit max_new_tokens
  std::vector<std::vector<float>> entropies;  // per new token, nats (only with record_entropy)
};

GenerationOutput generate(QwenForCausalLMImpl& model, const std::vector<std::vector<int32_t>>& prompts,
                          const GenerationOptions& options);

// Picks the next token from one row of logits [vocab] with the options' temperature / top-k /
// top-p, drawing a uniform number from `state` (a splitmix64 stream). Exposed for tests.
int32_t sample_next_token(const float* logits, int64_t vocab, const GenerationOptions& options, uint64_t& state);

}  // namespace posttrain
