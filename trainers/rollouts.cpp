#include "trainers/rollouts.h"

#include <torch/torch.h>

#include "core/rng.h"

namespace posttrain {

std::vector<Rollout> sample_rollouts(QwenForCausalLMImpl& policy, const Tokenizer& tokenizer,
                                     const PromptDataset& prompts, const std::vector<int64_t>& prompt_indices,
                                     int64_t first_position, int64_t group, GenerationOptions options, uint64_t seed,
                                     int64_t step, std::vector<double>* entropies) {
  torch::NoGradGuard no_grad;
  uint64_t state = seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1));
  options.seed = splitmix64(state);
  options.stop_ids = {tokenizer.eos_id(), tokenizer.pad_id()};
  options.record_entropy = entropies != nullptr;
  options.vocab_limit = tokenizer.id_count();
  std::vector<Rollout> rollouts;
  for (size_t i = 0; i < prompt_indices.size(); ++i) {
    const auto& prompt = prompts.prompts[static_cast<size_t>(prompt_indices[i])];
    // One call per prompt: the same batch shape whatever the rank split, so the same numbers.
    options.first_stream = static_cast<uint64_t>((first_position + static_cast<int64_t>(i)) * group);
    const auto out = generate(policy, std::vector<std::vector<int32_t>>(static_cast<size_t>(group), prompt), options);
    for (int64_t k = 0; k < group; ++k) {
      Rollout r;
      r.record = prompts.records[static_cast<size_t>(prompt_indices[i])];
      r.prompt_ids = prompt;
      r.response_ids = out.new_ids[static_cast<size_t>(k)];
      r.stopped = out.stopped[static_cast<size_t>(k)];
      std::vector<int32_t> text_ids = r.response_ids;
      if (r.stopped && !text_ids.empty()) text_ids.pop_back();
      r.response_text = tokenizer.decode(text_ids);
      if (entropies != nullptr) {
        const auto& e = out.entropies[static_cast<size_t>(k)];
        double sum = 0;
        for (float v : e) sum += v;
        entropies->push_back(e.empty() ? 0.0 : sum / static_cast<double>(e.size()));
      }
      rollouts.push_back(std::move(r));
    }
  }
  return rollouts;
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

}  // namespace posttrain
