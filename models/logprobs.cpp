#include "models/logprobs.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

namespace posttrain {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The fused "linear + log-softmax + gather" as one autograd node, with
// d logp[i] / d logits[i] = onehot(target[i]) - softmax(logits[i]). Saving the softmax for backward
// costs N x V floats (8k tokens x 151,936 vocab = 5 GB), so above keep_softmax_bytes backward
// recomputes each chunk's logits instead: one more head matmul, a quarter of the head's training work.
// Every target is a real token (chunked_token_logprobs drops the ignored rows before).
struct ChunkedLogProbFunction : public torch::autograd::Function<ChunkedLogProbFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& targets, int64_t chunk_rows, int64_t keep_softmax_bytes) {
    ctx->save_for_backward({hidden, weight, targets});
    ctx->saved_data["chunk_rows"] = chunk_rows;
    const int64_t n = hidden.size(0), V = weight.size(0);
    // CPU only: on CUDA the logits come from an autocast (bf16) matmul, which a float32 buffer would
    // turn into a float32 one; the kept path is not measured there yet.
    const bool keep_softmax = hidden.device().is_cpu() && (hidden.requires_grad() || weight.requires_grad()) &&
                              n * V * 4 <= keep_softmax_bytes;
    torch::Tensor softmax;  // [n, V] float32, kept for backward
    if (keep_softmax) softmax = torch::empty({n, V}, hidden.options().dtype(torch::kFloat32));
    auto out = torch::zeros({n}, hidden.options().dtype(torch::kFloat32));
    auto weight32 = weight.to(torch::kFloat32);
    for (int64_t start = 0; start < n; start += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, n - start);
      auto h = hidden.narrow(0, start, rows).to(torch::kFloat32);
      auto t = targets.narrow(0, start, rows);
      torch::Tensor logits;  // [rows, V], written straight into the kept softmax's rows when kept
      if (keep_softmax) {
        logits = softmax.narrow(0, start, rows);
        torch::matmul_out(logits, h, weight32.t());
      } else {
        logits = torch::matmul(h, weight32.t());
      }
      auto log_normalizer = torch::logsumexp(logits, 1);  // [rows]
      out.narrow(0, start, rows).copy_(logits.gather(1, t.unsqueeze(1)).squeeze(1) - log_normalizer);
      if (keep_softmax) logits.sub_(log_normalizer.unsqueeze(1)).exp_();  // in place: the softmax rows
    }
    if (keep_softmax) ctx->saved_data["softmax"] = softmax;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    auto hidden = saved[0], weight = saved[1], targets = saved[2];
    const int64_t chunk_rows = ctx->saved_data["chunk_rows"].toInt();
    const auto kept = ctx->saved_data.find("softmax");
    const torch::Tensor softmax = kept != ctx->saved_data.end() ? kept->second.toTensor() : torch::Tensor();  // [N, V]
    auto grad_out = grad_outputs[0].to(torch::kFloat32);  // [N]
    const int64_t n = hidden.size(0);
    auto weight32 = weight.to(torch::kFloat32);
    auto grad_hidden = torch::zeros({n, hidden.size(1)}, hidden.options().dtype(torch::kFloat32));
    // A frozen head (LoRA) needs no weight gradient: skipping it saves a third of the head's backward.
    const bool weight_grad = ctx->needs_input_grad(1);
    auto grad_weight = weight_grad ? torch::zeros_like(weight32) : torch::Tensor();
    for (int64_t start = 0; start < n; start += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, n - start);
      auto h = hidden.narrow(0, start, rows).to(torch::kFloat32);
      auto t = targets.narrow(0, start, rows);
      auto g = grad_out.narrow(0, start, rows);  // [rows]
      auto probs =
          softmax.defined() ? softmax.narrow(0, start, rows) : torch::softmax(torch::matmul(h, weight32.t()), 1);
      auto grad_logits = -probs * g.unsqueeze(1);  // [rows, V]
      grad_logits.scatter_add_(1, t.unsqueeze(1), g.unsqueeze(1));
      grad_hidden.narrow(0, start, rows).copy_(torch::matmul(grad_logits, weight32));
      if (weight_grad) grad_weight.addmm_(grad_logits.t(), h);
    }
    return {grad_hidden.to(hidden.scalar_type()), weight_grad ? grad_weight.to(weight.scalar_type()) : torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

int64_t default_chunk_rows(int64_t vocab_size, const c10::Device& device) {
  // Every chunk multiplies by the whole [V, H] head, and the BLAS packs that operand afresh per call:
  // with few rows the packing, not the multiply, is the work (at 27 rows, 16 MB of logits for
  // Qwen's 151,936 tokens, packing took 20% of a CPU training step). 128 rows amortise it; past that
  // the gain is small while the chunk's logits, softmax and gradient grow by V floats per row.
  const int64_t bytes = device.is_cuda() ? (512ll << 20) : (64ll << 20);
  return std::max<int64_t>(128, bytes / (4 * std::max<int64_t>(1, vocab_size)));
}

torch::Tensor chunked_token_logprobs(const torch::Tensor& hidden, const torch::Tensor& weight,
                                     const torch::Tensor& targets, int64_t chunk_rows, int64_t keep_softmax_bytes) {
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && targets.dim() == 1, "chunked_token_logprobs: bad ranks");
  if (chunk_rows <= 0) chunk_rows = default_chunk_rows(weight.size(0), weight.device());
  const auto all_targets = targets.to(torch::kInt64);
  // The head only on rows with a target: prompt, padding and end-of-row positions need no logits,
  // and in chat or preference batches they are often half the rows.
  const auto rows = all_targets.ne(kIgnoreIndex).nonzero().squeeze(1);  // [M]
  if (rows.numel() == all_targets.numel())
    return ChunkedLogProbFunction::apply(hidden, weight, all_targets, chunk_rows, keep_softmax_bytes);
  auto picked = ChunkedLogProbFunction::apply(hidden.index_select(0, rows), weight, all_targets.index_select(0, rows),
                                              chunk_rows, keep_softmax_bytes);  // [M]
  return torch::zeros({all_targets.numel()}, picked.options()).index_copy(0, rows, picked);  // [N]
}

std::vector<double> sequence_logprobs(QwenForCausalLMImpl& model, const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  if (ids.size() < 2) return {};
  const auto device = model.lm_head_weight().device();
  const int64_t n = static_cast<int64_t>(ids.size());
  auto input = torch::tensor(ids, torch::kInt64).to(device).unsqueeze(0);  // [1, n]
  auto positions = torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(device)).unsqueeze(0);
  auto hidden = model.hidden_states(input, positions);  // [1, n, H]
  auto logp =
      chunked_token_logprobs(hidden[0].narrow(0, 0, n - 1), model.lm_head_weight(), input[0].narrow(0, 1, n - 1));
  logp = logp.to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(logp.data_ptr<double>(), logp.data_ptr<double>() + logp.numel());
}

std::vector<double> continuation_logprobs(QwenForCausalLMImpl& model, const std::vector<int32_t>& prefix,
                                          const std::vector<std::vector<int32_t>>& continuations) {
  torch::NoGradGuard no_grad;
  const auto device = model.device();
  const auto as_ids = [&](const std::vector<int32_t>& ids) {  // [1, n] int64 on the model's device
    return torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).to(device).unsqueeze(0);
  };
  const auto positions = [&](int64_t first, int64_t n) {  // [1, n]
    return torch::arange(first, first + n, torch::TensorOptions().dtype(torch::kInt64).device(device)).unsqueeze(0);
  };
  const int64_t P = static_cast<int64_t>(prefix.size());
  size_t longest = 0;
  for (const auto& c : continuations) longest = std::max(longest, c.size());
  if (P == 0) throw std::invalid_argument("continuation_logprobs: empty prefix");
  KVCache cache = model.make_cache(1, P + static_cast<int64_t>(longest));
  auto prefix_hidden = model.hidden_states(as_ids(prefix), positions(0, P), {}, &cache);
  const auto last = prefix_hidden[0].narrow(0, P - 1, 1);  // [1, H]: predicts each continuation's first token

  std::vector<double> sums;
  for (const auto& c : continuations) {
    if (c.empty()) throw std::invalid_argument("continuation_logprobs: empty continuation");
    const int64_t n = static_cast<int64_t>(c.size());
    auto hidden = last;  // [n, H]: the states that predict c[0..n-1]
    if (n > 1) {
      cache.length = P;  // overwrite the previous continuation's keys and values
      const std::vector<int32_t> head(c.begin(), c.end() - 1);
      auto more = model.hidden_states(as_ids(head), positions(P, n - 1), {}, &cache);
      hidden = torch::cat({last, more[0]}, 0);
    }
    auto logp = chunked_token_logprobs(hidden, model.lm_head_weight(), as_ids(c)[0]);
    sums.push_back(logp.to(torch::kCPU, torch::kFloat64).sum().item<double>());
  }
  return sums;
}

}  // namespace posttrain
