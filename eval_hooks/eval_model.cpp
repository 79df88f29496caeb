#include "eval_hooks/eval_model.h"

#include <torch/torch.h>

#include <algorithm>

#include "models/chat.h"
#include "models/logprobs.h"

namespace posttrain {

EvalModel::EvalModel(QwenForCausalLMImpl& model, Tokenizer tokenizer, Distributed* dist, int64_t chunk_size)
    : model_(model), tokenizer_(std::move(tokenizer)), dist_(dist), chunk_size_(std::max<int64_t>(1, chunk_size)) {}

ScoringRequest EvalModel::text_request(const std::string& context, const std::string& continuation) const {
  const auto whole = tokenizer_.encode(context + continuation);
  const auto alone = tokenizer_.encode(context);
  size_t common = 0;
  while (common < alone.size() && common < whole.size() && alone[common] == whole[common]) ++common;
  ScoringRequest request;
  request.context.assign(whole.begin(), whole.begin() + static_cast<long>(common));
  request.continuation.assign(whole.begin() + static_cast<long>(common), whole.end());
  if (request.context.empty()) request.context.push_back(tokenizer_.pad_id());  // <|endoftext|> as a start
  return request;
}

std::vector<int32_t> EvalModel::chat_prompt(const std::string& user_text) const {
  return render_chat(tokenizer_, std::vector<ChatMessage>{{"user", user_text}}, /*add_generation_prompt=*/true).ids;
}

template <typename Compute>
std::vector<std::vector<double>> EvalModel::sharded(size_t count, int64_t width, Compute compute) {
  const int rank = dist_->rank(), world = dist_->world_size();
  auto table = torch::zeros({static_cast<int64_t>(count), width}, torch::kFloat64);  // [count, width]
  for (size_t first = 0, chunk = 0; first < count; first += static_cast<size_t>(chunk_size_), ++chunk) {
    if (static_cast<int>(chunk % static_cast<size_t>(world)) != rank) continue;
    const size_t last = std::min(count, first + static_cast<size_t>(chunk_size_));
    const std::vector<std::vector<double>> rows = compute(first, last);
    for (size_t i = first; i < last; ++i)
      for (int64_t j = 0; j < width && j < static_cast<int64_t>(rows[i - first].size()); ++j)
        table[static_cast<int64_t>(i)][j] = rows[i - first][static_cast<size_t>(j)];
  }
  if (world > 1) dist_->all_reduce_sum({table});
  std::vector<std::vector<double>> out(count, std::vector<double>(static_cast<size_t>(width)));
  auto a = table.accessor<double, 2>();
  for (size_t i = 0; i < count; ++i)
    for (int64_t j = 0; j < width; ++j) out[i][static_cast<size_t>(j)] = a[static_cast<int64_t>(i)][j];
  return out;
}

namespace {

// Right-padded rows of context + continuation: input ids [B, T], key padding [B, T], and targets
// [B, T-1] that are the continuation's tokens (kIgnoreIndex elsewhere).
struct PaddedRequests {
  torch::Tensor input_ids, key_padding, targets;
};

PaddedRequests pad_requests(const std::vector<ScoringRequest>& requests, size_t first, size_t last, int32_t pad_id) {
  int64_t T = 0;
  for (size_t i = first; i < last; ++i)
    T = std::max<int64_t>(T, static_cast<int64_t>(requests[i].context.size() + requests[i].continuation.size()));
  const int64_t B = static_cast<int64_t>(last - first);
  PaddedRequests out;
  out.input_ids = torch::full({B, T}, pad_id, torch::kInt64);
  out.key_padding = torch::zeros({B, T}, torch::kBool);
  out.targets = torch::full({B, std::max<int64_t>(1, T - 1)}, kIgnoreIndex, torch::kInt64);
  auto ids = out.input_ids.accessor<int64_t, 2>();
  auto real = out.key_padding.accessor<bool, 2>();
  auto targets = out.targets.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& r = requests[first + static_cast<size_t>(b)];
    std::vector<int32_t> row(r.context);
    row.insert(row.end(), r.continuation.begin(), r.continuation.end());
    for (size_t t = 0; t < row.size(); ++t) {
      ids[b][static_cast<int64_t>(t)] = row[t];
      real[b][static_cast<int64_t>(t)] = true;
      if (t >= r.context.size()) targets[b][static_cast<int64_t>(t) - 1] = row[t];
    }
  }
  return out;
}

}  // namespace

std::vector<double> EvalModel::loglikelihoods(const std::vector<ScoringRequest>& requests) {
  torch::NoGradGuard no_grad;
  const auto device = model_.device();
  const auto table = sharded(requests.size(), 1, [&](size_t first, size_t last) {
    const PaddedRequests batch = pad_requests(requests, first, last, tokenizer_.pad_id());
    const int64_t B = batch.input_ids.size(0), T = batch.input_ids.size(1);
    auto real = batch.key_padding.to(device);  // [B, T]
    auto positions = torch::arange(T, torch::TensorOptions().dtype(torch::kInt64).device(device)).expand({B, T});
    auto hidden = model_.hidden_states(batch.input_ids.to(device), positions, causal_mask(real, B, T, 0, device));
    auto flat_hidden = hidden.narrow(1, 0, T - 1).reshape({-1, hidden.size(2)});  // [B * (T-1), H]
    auto flat_targets = batch.targets.reshape({-1}).to(device);  // [B * (T-1)]
    // 0 off the continuation, where the head does not run
    auto token_logprobs = chunked_token_logprobs(flat_hidden, model_.lm_head_weight(), flat_targets);
    auto per_row = token_logprobs.to(torch::kFloat64).view({B, T - 1}).sum(1).cpu();  // [B]
    std::vector<std::vector<double>> out;
    for (int64_t b = 0; b < B; ++b) out.push_back({per_row[b].item<double>()});
    return out;
  });
  std::vector<double> out;
  for (const auto& row : table) out.push_back(row[0]);
  return out;
}

std::vector<double> EvalModel::classifier_scores(const std::vector<ScoringRequest>& requests) {
  torch::NoGradGuard no_grad;
  const auto table = sharded(requests.size(), 1, [&](size_t first, size_t last) {
    const PaddedRequests batch = pad_requests(requests, first, last, tokenizer_.pad_id());
    auto scores = last_token_scores(model_, batch.input_ids, batch.key_padding).select(1, 0).to(torch::kFloat64).cpu();
    std::vector<std::vector<double>> out;
    for (int64_t b = 0; b < scores.size(0); ++b) out.push_back({scores[b].item<double>()});
    return out;
  });
  std::vector<double> out;
  for (const auto& row : table) out.push_back(row[0]);
  return out;
}

std::vector<std::string> EvalModel::generate(const std::vector<std::vector<int32_t>>& prompts,
                                             GenerationOptions options) {
  torch::NoGradGuard no_grad;
  options.vocab_limit = tokenizer_.id_count();
  // Row layout: [length, id_0, ..., id_{max_new-1}]; ids are exact in float64.
  const int64_t width = 1 + options.max_new_tokens;
  const auto table = sharded(prompts.size(), width, [&](size_t first, size_t last) {
    GenerationOptions chunk_options = options;
    chunk_options.first_stream = options.first_stream + first;  // the same streams on any world size
    const auto output =
        posttrain::generate(model_,
                            std::vector<std::vector<int32_t>>(prompts.begin() + static_cast<long>(first),
                                                              prompts.begin() + static_cast<long>(last)),
                            chunk_options);
    std::vector<std::vector<double>> out;
    for (const auto& ids : output.new_ids) {
      std::vector<double> row{static_cast<double>(ids.size())};
      for (int32_t id : ids) row.push_back(id);
      out.push_back(row);
    }
    return out;
  });
  std::vector<std::string> texts;
  for (const auto& row : table) {
    std::vector<int32_t> ids;
    for (int64_t t = 0; t < static_cast<int64_t>(row[0]); ++t) ids.push_back(static_cast<int32_t>(row[1 + t]));
    texts.push_back(answer_after_reasoning(tokenizer_.decode(ids, /*skip_special_tokens=*/true)));
  }
  return texts;
}

}  // namespace posttrain
