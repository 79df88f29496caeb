#include "models/generate.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "models/matvec.h"

namespace posttrain {

int32_t sample_next_token(const float* logits, int64_t vocab, const GenerationOptions& options, uint64_t& state) {
  if (options.temperature <= 0.0) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);  // first maximum
  }
  std::vector<int32_t> candidates(static_cast<size_t>(vocab));
  std::iota(candidates.begin(), candidates.end(), 0);
  // Higher logit first; ties by lower id, so the order (and the sample) is fully determined.
  auto before = [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
  if (options.top_k > 0 && options.top_k < vocab) {
    std::partial_sort(candidates.begin(), candidates.begin() + options.top_k, candidates.end(), before);
    candidates.resize(static_cast<size_t>(options.top_k));
  } else if (options.top_p < 1.0) {
    std::sort(candidates.begin(), candidates.end(), before);
  }
  const double max_logit = logits[*std::max_element(candidates.begin(), candidates.end(),
                                                    [&](int32_t a, int32_t b) { return logits[a] < logits[b]; })];
  std::vector<double> weights(candidates.size());
  double total = 0.0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    weights[i] = std::exp((logits[candidates[i]] - max_logit) / options.temperature);
    total += weights[i];
  }
  if (options.top_p < 1.0) {
    // Smallest prefix (in sorted order) whose probability mass reaches top_p; at least one token.
    double mass = 0.0;
    size_t keep = 0;
    while (keep < weights.size()) {
      mass += weights[keep] / total;
      ++keep;
      if (mass >= options.top_p) break;
    }
    candidates.resize(keep);
    weights.resize(keep);
    total = std::accumulate(weights.begin(), weights.end(), 0.0);
  }
  double u = uniform01(state) * total;
  for (size_t i = 0; i < candidates.size(); ++i) {
    u -= weights[i];
    if (u < 0.0) return candidates[i];
  }
  return candidates.back();
}

GenerationOutput generate(QwenForCausalLMImpl& model, const std::vector<std::vector<int32_t>>& prompts,
                          const GenerationOptions& options) {
  // Inference mode, not just no-grad: tensors made here skip version counters and autograd
  // dispatch, a per-op saving that matters when a batch-1 step is ~1000 small ops. Only token ids
  // and floats leave this function, so no inference tensor escapes into autograd.
  c10::InferenceMode inference;
  if (prompts.empty()) return {};
  if (options.max_new_tokens < 0) throw UserError("max_new_tokens must be >= 0");
  // NaN compares false with everything: each test is written so that NaN fails it.
  if (!(options.temperature >= 0) || !std::isfinite(options.temperature))
    throw UserError("temperature must be a finite number >= 0 (0: greedy), got " + std::to_string(options.temperature));
  if (!(options.top_p > 0.0 && options.top_p <= 1.0)) throw UserError("top_p must be in (0, 1]");
  if (options.top_k < 0) throw UserError("top_k must be >= 0");
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t L = 0;
  for (const auto& p : prompts) {
    if (p.empty()) throw UserError("generate: empty prompt");
    for (int32_t id : p)
      if (id < 0 || id >= model.config.vocab_size)
        throw UserError("generate: token id " + std::to_string(id) + " is outside the model's vocabulary (" +
                        std::to_string(model.config.vocab_size) + ")");
    L = std::max<int64_t>(L, static_cast<int64_t>(p.size()));
  }
  // Positions past max_position_embeddings were never trained; the KV cache is sized to the capacity.
  if (options.max_new_tokens > model.config.max_position_embeddings - L)
    throw UserError("generate: the prompt (" + std::to_string(L) + " tokens) + max_new_tokens (" +
                    std::to_string(options.max_new_tokens) + ") exceed the model's max_position_embeddings (" +
                    std::to_string(model.config.max_position_embeddings) + ")");
  const int64_t capacity = L + options.max_new_tokens;
  const auto device = model.lm_head_weight().device();
  const auto on_device = torch::TensorOptions().device(device);

  // Left padding: every prompt ends at column L-1, so one new column serves the whole batch.
  auto tokens = torch::zeros({B, capacity}, torch::kInt64);  // [B, capacity]
  auto key_padding = torch::ones({B, capacity}, torch::kBool);  // [B, capacity] false = padding
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pad = L - static_cast<int64_t>(prompts[b].size());
    key_padding[b].narrow(0, 0, pad).fill_(false);
    for (size_t i = 0; i < prompts[b].size(); ++i) tokens[b][pad + static_cast<int64_t>(i)] = prompts[b][i];
  }
  tokens = tokens.to(device);
  key_padding = key_padding.to(device);
  // Positions count real tokens only, so a padded prompt sees the same positions as an unpadded one.
  auto positions = (key_padding.to(torch::kInt64).cumsum(1) - 1).clamp_min(0);  // [B, capacity]

  GenerationOutput out;
  out.new_ids.resize(static_cast<size_t>(B));
  out.stopped.assign(static_cast<size_t>(B), false);
  if (options.record_entropy) out.entropies.resize(static_cast<size_t>(B));
  std::vector<uint64_t> rng(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    uint64_t s = options.seed ^ (0xD1B54A32D192ED03ull * (options.first_stream + static_cast<uint64_t>(b) + 1));
    rng[static_cast<size_t>(b)] = splitmix64(s);
  }

  KVCache cache;
  if (options.use_cache) cache = model.make_cache(B, capacity);
  const auto head = model.lm_head_weight().to(torch::kFloat32);  // [V, H], cast once, not per step
  int64_t length = L;  // columns filled
  int64_t active = B;
  for (int64_t step = 0; step < options.max_new_tokens && active > 0; ++step) {
    torch::Tensor hidden;
    if (options.use_cache) {
      const int64_t past = cache.length;
      auto mask = causal_mask(key_padding.narrow(1, 0, length), B, length - past, past, device);
      hidden = model.hidden_states(tokens.narrow(1, past, length - past), positions.narrow(1, past, length - past),
                                   mask, &cache);
    } else {
      auto mask = causal_mask(key_padding.narrow(1, 0, length), B, length, 0, device);
      hidden = model.hidden_states(tokens.narrow(1, 0, length), positions.narrow(1, 0, length), mask, nullptr);
    }
    auto last = hidden.select(1, hidden.size(1) - 1);  // [B, hidden]
    // Sampling reads float32 on the CPU (under bf16 autocast the matmul itself returns bf16).
    auto logits = linear_rows(last.to(torch::kFloat32), head).to(torch::kCPU, torch::kFloat32).contiguous();  // [B, V]
    const int64_t V = logits.size(1);
    const int64_t drawable = options.vocab_limit > 0 ? std::min(V, options.vocab_limit) : V;
    torch::Tensor entropy;  // [B]: -sum p log p of softmax(logits / T), the distribution sampled from
    if (options.record_entropy) {
      auto logp = torch::log_softmax(options.temperature > 0 ? logits / options.temperature : logits, 1);
      entropy = -(logp.exp() * logp).sum(1).contiguous();
    }
    auto next = torch::zeros({B}, torch::kInt64);
    for (int64_t b = 0; b < B; ++b) {
      if (out.stopped[static_cast<size_t>(b)]) continue;
      const int32_t id =
          sample_next_token(logits.data_ptr<float>() + b * V, drawable, options, rng[static_cast<size_t>(b)]);
      next[b] = id;
      out.new_ids[static_cast<size_t>(b)].push_back(id);
      if (options.record_entropy) out.entropies[static_cast<size_t>(b)].push_back(entropy[b].item<float>());
      if (std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end()) {
        out.stopped[static_cast<size_t>(b)] = true;
        --active;
      }
    }
    tokens.select(1, length).copy_(next.to(device));
    ++length;
  }
  return out;
}

}  // namespace posttrain
