#include "trainers/batch.h"

#include <torch/torch.h>

#include <numeric>

#include "core/rng.h"
#include "models/logprobs.h"

namespace posttrain {

namespace {

// Fisher-Yates with splitmix64: the same permutation on every platform (std::shuffle is not).
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  uint64_t state = seed ^ (0xA0761D6478BD642Full * static_cast<uint64_t>(epoch + 1));
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[splitmix64(state) % static_cast<uint64_t>(i + 1)]);
  return order;
}

}  // namespace

std::vector<int64_t> sample_indices(int64_t dataset_size, uint64_t seed, int64_t first, int64_t count) {
  std::vector<int64_t> out;
  int64_t cached_epoch = -1;
  std::vector<int64_t> order;
  for (int64_t p = first; p < first + count; ++p) {
    const int64_t epoch = p / dataset_size;
    if (epoch != cached_epoch) {
      order = epoch_order(dataset_size, seed, epoch);
      cached_epoch = epoch;
    }
    out.push_back(order[static_cast<size_t>(p % dataset_size)]);
  }
  return out;
}

std::vector<std::vector<int64_t>> split_micro_batches(const std::vector<int64_t>& indices, int64_t size) {
  std::vector<std::vector<int64_t>> out;
  for (size_t first = 0; first < indices.size(); first += static_cast<size_t>(size))
    out.emplace_back(indices.begin() + static_cast<long>(first),
                     indices.begin() + static_cast<long>(std::min(indices.size(), first + static_cast<size_t>(size))));
  return out;
}

std::vector<int64_t> pair_examples(const std::vector<int64_t>& pairs) {
  std::vector<int64_t> examples;
  for (int64_t p : pairs) {
    examples.push_back(2 * p);
    examples.push_back(2 * p + 1);
  }
  return examples;
}

int64_t count_loss_tokens(const TokenizedDataset& data, const std::vector<int64_t>& indices) {
  int64_t count = 0;
  for (int64_t i : indices)  // the first token is never a target
    for (int64_t t = data.offsets[i] + 1; t < data.offsets[i + 1]; ++t) count += data.loss_mask[t];
  return count;
}

LMBatch make_lm_batch(const TokenizedDataset& data, const std::vector<int64_t>& indices, int32_t pad_id) {
  const int64_t B = static_cast<int64_t>(indices.size());
  int64_t T = 2;
  for (int64_t i : indices) T = std::max(T, data.length(i));
  LMBatch batch;
  batch.input_ids = torch::full({B, T}, pad_id, torch::kInt64);
  batch.key_padding = torch::zeros({B, T}, torch::kBool);
  batch.targets = torch::full({B, T - 1}, kIgnoreIndex, torch::kInt64);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto pad = batch.key_padding.accessor<bool, 2>();
  auto targets = batch.targets.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t start = data.offsets[indices[b]], n = data.length(indices[b]);
    for (int64_t t = 0; t < n; ++t) {
      ids[b][t] = data.tokens[start + t];
      pad[b][t] = true;
      if (t > 0 && data.loss_mask[start + t]) {
        targets[b][t - 1] = data.tokens[start + t];
        ++batch.loss_tokens;
      }
    }
    batch.tokens += n;
  }
  batch.positions = torch::arange(T, torch::kInt64).unsqueeze(0).expand({B, T}).contiguous();
  return batch;
}

}  // namespace posttrain

namespace posttrain {

LMBatch make_packed_lm_batch(const TokenizedDataset& data, const std::vector<int64_t>& indices, int32_t pad_id,
                             int64_t row_length) {
  // Greedy, in order: an example goes on the current row if it fits, else starts a new one.
  std::vector<std::vector<int64_t>> rows;
  int64_t used = row_length;
  for (int64_t i : indices) {
    if (used + data.length(i) > row_length) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(i);
    used += data.length(i);
  }
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 2;
  for (const auto& row : rows) {
    int64_t n = 0;
    for (int64_t i : row) n += data.length(i);
    T = std::max(T, n);
  }
  LMBatch batch;
  batch.input_ids = torch::full({B, T}, pad_id, torch::kInt64);
  batch.positions = torch::zeros({B, T}, torch::kInt64);
  batch.key_padding = torch::zeros({B, T}, torch::kBool);
  batch.targets = torch::full({B, T - 1}, kIgnoreIndex, torch::kInt64);
  auto segment = torch::full({B, T}, -1, torch::kInt64);  // which example each column holds
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto pos = batch.positions.accessor<int64_t, 2>();
  auto pad = batch.key_padding.accessor<bool, 2>();
  auto targets = batch.targets.accessor<int64_t, 2>();
  auto seg = segment.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    int64_t column = 0;
    for (size_t k = 0; k < rows[b].size(); ++k) {
      const int64_t i = rows[b][k], start = data.offsets[i], n = data.length(i);
      for (int64_t t = 0; t < n; ++t, ++column) {
        ids[b][column] = data.tokens[start + t];
        pos[b][column] = t;
        pad[b][column] = true;
        seg[b][column] = static_cast<int64_t>(k);
        if (t > 0 && data.loss_mask[start + t]) {  // never across an example boundary
          targets[b][column - 1] = data.tokens[start + t];
          ++batch.loss_tokens;
        }
      }
      batch.tokens += n;
    }
  }
  auto causal = torch::ones({T, T}, torch::kBool).tril();  // [T, T]
  auto same = segment.unsqueeze(2).eq(segment.unsqueeze(1)).logical_and(segment.unsqueeze(1).ge(0));  // [B, T, T]
  batch.attention = same.logical_and(causal.unsqueeze(0)).unsqueeze(1);  // [B, 1, T, T]
  return batch;
}

}  // namespace posttrain
