// The model side of the eval suites: continuation log-likelihoods, reward-model scores and
// generations for lists of requests, sharded over ranks in fixed chunks (chunk c on rank
// c mod world) and gathered on every rank, so any world size gives the same numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "launch/distributed.h"
#include "models/generate.h"
#include "models/qwen.h"
#include "models/tokenizer.h"

namespace posttrain {

struct ScoringRequest {
  std::vector<int32_t> context;  // never empty (an empty text context starts from <|endoftext|>)
  std::vector<int32_t> continuation;  // the tokens scored
};

class EvalModel {
 public:
  EvalModel(QwenForCausalLMImpl& model, Tokenizer tokenizer, Distributed* dist, int64_t chunk_size = 8);

  QwenForCausalLMImpl& model() { return model_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  bool is_classifier() const { return model_.is_classifier(); }
  Distributed* distributed() const { return dist_; }

  // Text context + continuation tokenized together and split at the boundary: the continuation is
  // every token after the longest common prefix of encode(context) and encode(context +
  // continuation), so a token that merges across the boundary counts as continuation.
  ScoringRequest text_request(const std::string& context, const std::string& continuation) const;
  // A user turn rendered as ChatML with the assistant generation prompt.
  std::vector<int32_t> chat_prompt(const std::string& user_text) const;

  // sum_t log p(continuation_t | context, continuation_<t) per request (causal LM).
  std::vector<double> loglikelihoods(const std::vector<ScoringRequest>& requests);
  // The score head's first output on context + continuation (reward model).
  std::vector<double> classifier_scores(const std::vector<ScoringRequest>& requests);
  // Decoded new text per prompt (special tokens dropped), without a leading <think> block: the answer
  // (models/chat.h answer_after_reasoning).
  std::vector<std::string> generate(const std::vector<std::vector<int32_t>>& prompts, GenerationOptions options);

 private:
  // Runs `compute` on this rank's chunks of `count` items and sums the [count, width] results over
  // ranks (other ranks' rows are zero), so every rank returns the whole table.
  template <typename Compute>
  std::vector<std::vector<double>> sharded(size_t count, int64_t width, Compute compute);

  QwenForCausalLMImpl& model_;
  Tokenizer tokenizer_;
  Distributed* dist_;
  int64_t chunk_size_;
};

}  // namespace posttrain
